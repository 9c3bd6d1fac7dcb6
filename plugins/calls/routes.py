"""The calls API under ``/api/calls``: invite, answer, hang up, ICE servers, history."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncstream.sdk import Call as ApiCall
from syncstream.sdk import ScopedApi

from .ice import ice_servers
from .service import CallService

CALL = "/{call_id:[0-9a-f]{32}}"


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    usernames: list[str] = Field(min_length=1, max_length=63)
    kind: Literal["direct", "group"] = "direct"
    route: Literal["p2p", "sfu"] | None = Field(
        None, description="Default: sfu for group and recorded calls, p2p for direct ones"
    )
    record: bool = Field(False, description="Record from the start (the host's file)")


class HistoryQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    before: float | None = Field(None, description="created_at of the last call you have")


def register(api: ScopedApi, service: CallService) -> None:
    @api.route("POST", "", body=InviteIn, status=201)
    async def invite(call: ApiCall[InviteIn]) -> dict[str, Any]:
        """Ring a user (direct) or several (group); they get ``call.invite`` on user:<id>."""
        body = call.body
        return await service.invite(call.user, body.usernames, body.kind, body.route, body.record)

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

    @api.route("POST", CALL + "/recording", status=201)
    async def start_recording(call: ApiCall[None]) -> dict[str, Any]:
        """Start recording (the host, calls through the SFU); everyone gets
        ``call.recording`` on call:<id>."""
        return await service.record(call.user, call.param("call_id"), True)

    @api.route("DELETE", CALL + "/recording")
    async def stop_recording(call: ApiCall[None]) -> dict[str, Any]:
        """Stop recording: the file lands in the host's Recordings/Calls folder."""
        return await service.record(call.user, call.param("call_id"), False)

    @api.route("GET", "/live", auth="admin")
    async def live_calls(call: ApiCall[None]) -> dict[str, Any]:
        """Calls in progress on this node, with their participants (admin)."""
        calls = [c.view() for c in service.calls.values() if c.status != "ended"]
        return {"calls": sorted(calls, key=lambda c: -c["created_at"])}

    @api.route("POST", CALL + "/end", auth="admin")
    async def end(call: ApiCall[None]) -> dict[str, Any]:
        """End a call for everyone (admin; audited)."""
        return await service.end_call(call.param("call_id"), call.user, call.ip)

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
