"""The file store interface: how plugins keep files for users (provided by the files plugin).

Media jobs read their inputs and store their outputs through it, chat checks attachments with
it, the live core's recordings become files through it (on the ``stream.recorded`` event).
Look it up with ``ctx.services.get(FileStore)`` in a plugin whose manifest lists the
provider in ``dependencies``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol


class FileStore(Protocol):
    async def add(
        self,
        *,
        owner_id: str,
        source: Path,
        name: str,
        folder: str = "",
        created_by: str | None = None,
    ) -> dict[str, Any]:
        """Adopt the local file ``source`` (moved, not copied) as a file of ``owner_id``.

        ``folder`` is a folder id of the owner, or a ``/``-separated path of folder names
        created as needed (``"Recordings/2026"``); '' is the root. A taken name is numbered.
        Returns the file as the API shows it. Raises ``Problem`` (quota, name, folder).
        """
        ...

    async def readable(self, user_id: str, file_id: str) -> dict[str, Any]:
        """The file if ``user_id`` may read it, else a 404 ``Problem``."""
        ...

    def local_copy(self, file_id: str) -> AbstractAsyncContextManager[Path]:
        """``async with``: a local file with the file's bytes (FFmpeg input, say).

        On local storage it is the stored file itself (read it, never change it); on S3 a
        scratch copy removed when the block ends.
        """
        ...
