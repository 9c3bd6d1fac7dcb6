"""What every route module of the files plugin shares: the id pattern, downloads, owners."""

from __future__ import annotations

from pydantic import BaseModel, Field

from syncstream.sdk import Problem, Row, User

from .download import Served
from .service import FilesService

ID = r"{file_id:[0-9a-f]{32}}"


class ContentQuery(BaseModel):
    inline: bool = Field(False, description="Show in the browser (safe types only)")


def served(node: Row, service: FilesService) -> Served:
    """What :func:`.download.send` needs to send a stored file."""
    return Served(
        blobs=service.blobs,
        key=node["id"],
        size=int(node["size"]),
        mime=node["mime"],
        name=node["name"],
        sha256=node["sha256"],
        modified=float(node["modified_at"]),
    )


async def owned_node(service: FilesService, user: User, file_id: str) -> Row:
    """The node if ``user`` owns it; 404 if they cannot see it, 403 if they only may."""
    node, level = await service.access.node(user, file_id, "read")
    if level != "owner":
        raise Problem(403, "owner_only", "only the owner may do this")
    return node
