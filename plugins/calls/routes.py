"""The calls API under ``/api/calls``: invite, answer, hang up, ICE servers, history."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncstream import Call as ApiCall
from syncstream.api import ScopedApi

from .ice import ice_servers
from .service import CallService

CALL = "/{call_id:[0-9a-f]{32}}"


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    usernames: list[str] = Field(min_length=1, max_length=63)
    kind: Literal["direct", "group"] = "direct"


class HistoryQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    before: float | None = Field(None, description="created_at of the last call you have")


def register(api: ScopedApi, service: CallService) -> None:
    @api.route("POST", "", body=InviteIn, status=201)
    async def invite(call: ApiCall[InviteIn]) -> dict[str, Any]:
        """Ring a user (direct) or several (group); they get ``call.invite`` on user:<id>."""
        return await service.invite(call.user, call.body.usernames, call.body.kind)

    @api.route("GET", "/ice")
    async def ice(call: ApiCall[None]) -> dict[str, Any]:
        """STUN/TURN servers for you, TURN credentials included (they expire)."""
        return {"ice_servers": ice_servers(service.config, call.user.id)}

    @api.route("GET", "", query=HistoryQuery)
    async def history(call: ApiCall[None]) -> dict[str, Any]:
        """Your calls, newest first: who, how each participant answered, how it ended."""
        q: HistoryQuery = call.query
        return {"calls": await service.history(call.user, q.limit, q.before)}

    @api.route("GET", CALL)
    async def get_call(call: ApiCall[None]) -> dict[str, Any]:
        """A call in progress (participants only)."""
        return service.call_of(call.user, call.param("call_id")).view()

    for how in ("accept", "decline", "leave", "cancel"):
        register_answer(api, service, how)


def register_answer(
    api: ScopedApi, service: CallService, how: Literal["accept", "decline", "leave", "cancel"]
) -> None:
    doc = {
        "accept": "Answer (or join a group call that is on); you get the ICE servers.",
        "decline": "Decline the invitation.",
        "leave": "Hang up.",
        "cancel": "Call off an invitation nobody answered yet (the caller).",
    }[how]

    async def handler(call: ApiCall[None]) -> dict[str, Any]:
        return await service.answer(call.user, call.param("call_id"), how)

    handler.__doc__ = doc
    handler.__name__ = how
    api.route("POST", CALL + f"/{how}")(handler)
