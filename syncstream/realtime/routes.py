"""HTTP side of the realtime gateway: server-side publish and presence look-ups."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..api import Api, Call
from .gateway import Gateway


class PublishIn(BaseModel):
    topic: str = Field(max_length=256)
    data: Any = None


class PresenceQuery(BaseModel):
    topic: str = Field(max_length=256)


def register_realtime_routes(api: Api, gateway: Gateway) -> None:
    @api.route("POST", "/api/realtime/publish", body=PublishIn)
    async def publish(call: Call[PublishIn]) -> dict[str, Any]:
        """Publish to a topic over HTTP, with the same permission checks as the WebSocket."""
        return await gateway.publish_as(call.user, call.body.topic, call.body.data)

    @api.route("GET", "/api/realtime/presence", query=PresenceQuery)
    async def presence(call: Call[None]) -> dict[str, Any]:
        """Who is subscribed to a topic (namespaces that track presence)."""
        return await gateway.presence_for(call.user, call.query.topic)
