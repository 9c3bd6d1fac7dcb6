"""Calls on this node: invitations that ring and time out, answers, hang-ups, and the relay
of signaling (SDP offers and answers, trickled ICE candidates, ICE restarts) between the
participants of a call.

Each participant hears about the call on its own ``user:<id>`` topic: ``call.invite`` (with
the ICE servers to use), ``call.state`` after every change, and ``call.signal`` from a peer.
Peers send signals by publishing ``{"to": user id, "signal": {...}}`` on ``call:<id>``
(``offer``, ``answer``, ``candidate``, ``restart``, ``bye``, and ``ready``: "my page is
listening", so that of two peers the one that offers knows when to; an optional ``session``
string says which connection attempt a signal belongs to), and
their microphone/camera/screen state as ``{"media": {...}}`` and what each of their tracks
is as ``{"tracks": {track id: "camera" | "screen" | ...}}``; nothing they publish is
broadcast as is: the server checks it and forwards it. A participant stays subscribed to
``call:<id>`` while in the call: one whose sockets are all gone for ``leave_after_seconds``
is taken out of it. Who leaves the call (hangs up, is lost, banned, or removed by the host)
loses ``call:<id>`` on every node at once (an ``unsubscribe`` frame: ``left`` or
``removed``), and everyone does when the call ends (``call_ended``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import structlog

from syncstream.sdk import (
    Absence,
    Audit,
    Auth,
    EventBus,
    FileStore,
    Gateway,
    Problem,
    Store,
    User,
    new_id,
    sfu_problem,
)

from .call import Participant, PhoneCall
from .config import Config
from .ice import ice_servers
from .sfu.rooms import Rooms

log = structlog.get_logger(__name__)
SIGNALS = ("offer", "answer", "candidate", "restart", "bye", "ready")
MAX_SESSION_CHARS = 64  # a peer-to-peer signal's "session": which connection attempt it is for
SFU_SIGNALS = ("offer", "answer", "candidate", "restart", "bye", "subscribe")
MEDIA = ("audio", "video", "screen")
MAX_CANDIDATE_CHARS = 1024
TRACK_LABELS = ("microphone", "camera", "screen", "screen-audio")
MAX_TRACKS = 8


class CallService:
    def __init__(
        self, store: Store, auth: Auth, audit: Audit, bus: EventBus, gateway: Gateway,
        config: Config, files: Callable[[], FileStore | None], scratch: Path,
    ) -> None:  # fmt: skip
        self.store, self.auth, self.audit, self.bus, self.gateway = store, auth, audit, bus, gateway
        self.config = config
        self.rooms = Rooms(gateway, bus, config, files, scratch)
        self.calls: dict[str, PhoneCall] = {}
        self.ring_timers: dict[str, asyncio.Task[None]] = {}
        self.absence = Absence(gateway, config.leave_after_seconds)
        self._sweeper = asyncio.get_running_loop().create_task(
            self.absence.patrol(self._joined, self._hang_up)
        )

    async def close(self) -> None:
        for task in [*self.ring_timers.values(), self._sweeper]:
            task.cancel()
        await self.rooms.close(self.calls)

    def _joined(self) -> list[tuple[str, list[str]]]:
        return [(f"call:{call.id}", call.joined()) for call in self.calls.values()]

    async def _hang_up(self, call_topic: str, gone: list[str]) -> None:
        """Participants whose sockets on ``call:<id>`` all vanished ``leave_after_seconds``
        ago leave the call, so it ends when nobody is left."""
        call = self.calls.get(call_topic.split(":", 1)[1])
        for user_id in gone:
            if call is None or call.status == "ended":
                return
            self.absence.forget(call_topic, user_id)
            await self._leave(call, user_id, time.time())
            await self.bus.fire("call.lost", {"call_id": call.id, "user_id": user_id})
            await self._changed(call)

    # -- lifecycle --------------------------------------------------------------------------

    def in_call(self, user_id: str) -> PhoneCall | None:
        """The call a user is talking in now, if any (they are busy)."""
        return next(
            (c for c in self.calls.values() if c.status != "ended" and user_id in c.joined()),
            None,
        )

    async def invite(
        self, user: User, usernames: list[str], kind: Literal["direct", "group"],
        route: Literal["p2p", "sfu"] | None = None, record: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Ring users. Group calls and recorded calls go through the SFU; a direct call is
        peer to peer unless ``route`` says otherwise."""
        if route is None:
            route = "sfu" if kind == "group" or record else "p2p"
        elif record and route == "p2p":
            raise Problem(422, "record_needs_sfu", "a recorded call goes through the server")
        if route == "sfu" and (reason := sfu_problem()) is not None:
            raise Problem(503, "sfu_unavailable", f"calls through the server are off: {reason}")
        if self.in_call(user.id) is not None:
            raise Problem(409, "already_in_call", "hang up your current call first")
        names = list(dict.fromkeys(usernames))
        if kind == "direct" and len(names) != 1:
            raise Problem(422, "direct_is_one_to_one", "a direct call invites one user")
        if len(names) + 1 > self.config.max_participants:
            raise Problem(
                409, "call_full", f"at most {self.config.max_participants} participants a call"
            )
        now = time.time()
        host = Participant(user.id, user.username, "joined", joined_at=now)
        participants = {user.id: host}
        for name in names:
            target = await self.auth.find_user(name)
            if target is None:
                raise Problem(404, "user_not_found", f"no user {name[:64]!r}")
            if target.id == user.id:
                raise Problem(422, "call_self", "you cannot call yourself")
            busy = self.in_call(target.id) is not None
            participants[target.id] = Participant(
                target.id, target.username, "busy" if busy else "ringing"
            )
        call = PhoneCall(new_id(), kind, user.id, participants, created_at=now, route=route)
        await self.store.execute(
            "INSERT INTO calls (id, kind, host_id, status, created_at, route)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            call.id, call.kind, call.host_id, call.status, call.created_at, call.route,
        )  # fmt: skip
        if not call.ringing():  # everyone was busy
            call.ring_out(now)
        else:
            self.calls[call.id] = call
            self.ring_timers[call.id] = asyncio.get_running_loop().create_task(self._ring_out(call))
            if record:
                call.recording = await self.rooms.start_recording(call, user.id)
        for user_id in call.ringing():
            await self.gateway.publish(
                f"user:{user_id}",
                {"type": "call.invite", "call": call.view(), "from": user.public(),
                 "ice_servers": ice_servers(self.config, user_id)},
            )  # fmt: skip
        await self.bus.fire("call.invited", {"call_id": call.id, "host_id": user.id,
                                             "invited": call.ringing()})  # fmt: skip
        for p in participants.values():
            if p.state == "busy":
                await self.bus.fire("call.busy", {"call_id": call.id, "user_id": p.user_id})
        await self._changed(call)
        return {**call.view(), "ice_servers": ice_servers(self.config, user.id)}

    async def _ring_out(self, call: PhoneCall) -> None:
        await asyncio.sleep(self.config.ring_seconds)
        missed = call.ring_out(time.time())
        for user_id in missed:
            await self.bus.fire("call.missed", {"call_id": call.id, "user_id": user_id})
        await self._changed(call)

    def may_listen(self, user: User, call_id: str) -> bool:
        """Whether ``user`` may subscribe to ``call:<id>``: while invited or in the call."""
        call = self.calls.get(call_id)
        participant = None if call is None else call.participants.get(user.id)
        return participant is not None and participant.state in ("ringing", "joined")

    def call_of(self, user: User, call_id: str) -> PhoneCall:
        call = self.calls.get(call_id)
        if call is None:
            raise Problem(404, "call_not_found", "no such call (or it has ended)")
        call.member(user.id)
        return call

    async def answer(
        self, user: User, call_id: str, how: Literal["accept", "decline", "leave", "cancel"]
    ) -> dict[str, Any]:
        call = self.call_of(user, call_id)
        now = time.time()
        if how == "accept":
            other = self.in_call(user.id)
            if other is not None and other is not call:
                raise Problem(409, "already_in_call", "hang up your current call first")
            if len(call.joined()) >= self.config.max_participants:
                raise Problem(409, "call_full", "the call is full")
            call.accept(user.id, now)
        elif how == "decline":
            call.decline(user.id, now)
        elif how == "leave":
            await self._leave(call, user.id, now)
        else:
            call.cancel(user.id, now)
        await self.bus.fire(f"call.{how}", {"call_id": call.id, "user_id": user.id})
        await self._changed(call)
        view = call.view()
        if how == "accept":
            view["ice_servers"] = ice_servers(self.config, user.id)
        return view

    async def _leave(self, call: PhoneCall, user_id: str, now: float) -> None:
        """Hang up: out of the call, and out of its SFU room (connections closed)."""
        call.leave(user_id, now)
        await self.rooms.leave(call.id, user_id)
        await self.gateway.revoke(user_id, f"call:{call.id}", "left")

    async def _changed(self, call: PhoneCall) -> None:
        """Store the call, tell every participant, and forget it once it has ended."""
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE calls SET status = ?, end_reason = ?, answered_at = ?, ended_at = ?"
                " WHERE id = ?",
                call.status, call.end_reason, call.answered_at, call.ended_at, call.id,
            )  # fmt: skip
            for p in call.participants.values():
                await tx.execute(
                    "INSERT INTO call_participants (call_id, user_id, username, state,"
                    " joined_at, left_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT"
                    " (call_id, user_id) DO UPDATE SET state = excluded.state,"
                    " joined_at = excluded.joined_at, left_at = excluded.left_at",
                    call.id, p.user_id, p.username, p.state, p.joined_at, p.left_at,
                )  # fmt: skip
        for user_id in call.participants:
            await self.gateway.publish(
                f"user:{user_id}", {"type": "call.state", "call": call.view()}
            )
        if call.status == "ended":
            await self.rooms.end(call)
            await self.gateway.revoke(None, f"call:{call.id}", "call_ended")
            call.recording = None
            self.calls.pop(call.id, None)
            timer = self.ring_timers.pop(call.id, None)
            if timer is not None and timer is not asyncio.current_task():
                timer.cancel()
            await self.bus.fire("call.ended", {"call_id": call.id, "reason": call.end_reason,
                                               "duration": _duration(call)})  # fmt: skip

    # -- signaling --------------------------------------------------------------------------

    async def signal(self, user: User, call_id: str, data: Any) -> dict[str, Any]:
        """A participant's signal for a peer (or the SFU), its media state for everyone, or
        the host's moderation."""
        call = self.call_of(user, call_id)
        if call.member(user.id).state != "joined":
            raise Problem(409, "not_joined", "answer the call before signaling")
        if not isinstance(data, dict):
            raise Problem(422, "invalid_message", "publish {to, signal}, {media} or {moderate}")
        if "moderate" in data:
            return await self._moderate(call, user, data["moderate"])
        if "media" in data or "tracks" in data:
            participant = call.participants[user.id]
            media = _checked_media(data.get("media", {}))
            locked = [k for k, on in media.items() if on and k in participant.locked]
            if locked:
                raise Problem(403, "muted_by_host", f"the host muted your {', '.join(locked)}")
            participant.media.update(media)
            if "tracks" in data:
                participant.tracks = _checked_tracks(data["tracks"])
            self._enforce(call, participant)
            await self._changed(call)
            return {"media": participant.media, "tracks": participant.tracks}
        to = data.get("to")
        if to == "sfu":
            if call.route != "sfu":
                raise Problem(409, "not_routed_via_sfu", "a peer-to-peer call: signal the peer")
            signal = self._checked(data.get("signal"), SFU_SIGNALS)
            await self.rooms.room(call).signal(user.id, user.username, signal)
            self._hold_locked(call, call.participants[user.id])
            return {"delivered": True}
        signal = self._checked(data.get("signal"), SIGNALS)
        if call.route == "sfu":
            raise Problem(409, "routed_via_sfu", 'this call goes through the server: "to": "sfu"')
        if not isinstance(to, str) or to == user.id or to not in call.participants:
            raise Problem(422, "invalid_peer", "to: the user id of another participant")
        if call.participants[to].state != "joined":
            raise Problem(409, "peer_not_joined", "that participant is not in the call")
        await self.gateway.publish(
            f"user:{to}",
            {"type": "call.signal", "call_id": call.id, "from": user.id, "signal": signal},
        )
        return {"delivered": True}

    def _hold_locked(self, call: PhoneCall, participant: Participant) -> None:
        """What the host locked stays held back on feeds published since (a client that
        ignores the lock and shares anew is not forwarded either)."""
        if participant.locked and call.id in self.rooms.rooms:
            locked = {media: False for media in participant.locked}
            self.rooms.rooms[call.id].set_media(participant.user_id, locked)

    def _enforce(self, call: PhoneCall, participant: Participant) -> None:
        """The SFU forwards only what a participant has switched on (and the host allows)."""
        if call.route == "sfu" and call.id in self.rooms.rooms:
            self.rooms.rooms[call.id].set_media(participant.user_id, participant.media)

    async def _moderate(self, call: PhoneCall, user: User, order: Any) -> dict[str, Any]:
        """The host mutes a participant's (or everyone's) audio, video or screen — with
        ``lock`` they cannot unmute it themselves — or unlocks it again."""
        if user.id != call.host_id:
            raise Problem(403, "not_host", "only the host moderates the call")
        if isinstance(order, dict) and order.get("action") == "remove":
            return await self._remove(call, user, order.get("user"))
        if (
            not isinstance(order, dict)
            or order.get("action") not in ("mute", "unlock")
            or order.get("media") not in MEDIA
            or not isinstance(order.get("lock", False), bool)
            or not isinstance(order.get("user"), str)
        ):
            raise Problem(
                422, "invalid_moderation",
                f"moderate is {{action: mute | unlock, media: {' | '.join(MEDIA)},"
                " user: a user id | all, lock: bool} or {action: remove, user: a user id}",
            )  # fmt: skip
        media: str = order["media"]
        if order["user"] == "all":
            targets = [p for p in call.participants.values() if p.user_id != user.id]
        else:
            target = call.participants.get(order["user"])
            if target is None:
                raise Problem(404, "not_in_call", "that user is not part of this call")
            targets = [target]
        for participant in targets:
            if order["action"] == "unlock":
                participant.locked.discard(media)
                continue
            participant.media[media] = False
            if order.get("lock", False):
                participant.locked.add(media)
            self._enforce(call, participant)
        await self.bus.fire(
            "call.moderated",
            {"call_id": call.id, "by": user.id, "action": order["action"], "media": media,
             "users": [p.user_id for p in targets]},
        )  # fmt: skip
        await self._changed(call)
        return {"moderated": [p.user_id for p in targets]}

    async def _remove(self, call: PhoneCall, host: User, user_id: Any) -> dict[str, Any]:
        """The host takes a participant out of the call for good: out of its SFU room and
        off ``call:<id>`` on every node before anyone hears of it."""
        if not isinstance(user_id, str) or user_id == host.id:
            raise Problem(422, "invalid_moderation", "remove: the user id of another participant")
        participant = call.participants.get(user_id)
        if participant is None:
            raise Problem(404, "not_in_call", "that user is not part of this call")
        joined = participant.state == "joined"
        call.remove(user_id, time.time())
        if joined:
            await self.rooms.leave(call.id, user_id)
        await self.gateway.revoke(user_id, f"call:{call.id}", "removed")
        await self.bus.fire("call.removed", {"call_id": call.id, "by": host.id, "user_id": user_id})
        await self._changed(call)
        return {"removed": user_id}

    # -- recording --------------------------------------------------------------------------

    async def record(self, user: User, call_id: str, on: bool) -> dict[str, Any]:
        """The host starts or stops recording; everyone in the call is told."""
        call = self.call_of(user, call_id)
        if user.id != call.host_id:
            raise Problem(403, "not_host", "only the host records the call")
        if call.route != "sfu":
            raise Problem(409, "not_routed_via_sfu", "only calls through the server record")
        if on:
            call.recording = await self.rooms.start_recording(call, user.id)
            await self._changed(call)
            return call.recording
        call.recording = None
        notice = await self.rooms.stop_recording(call)
        await self._changed(call)
        return notice

    def _checked(self, signal: Any, types: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(signal, dict) or signal.get("type") not in types:
            raise Problem(422, "invalid_signal", f"signal types: {', '.join(types)}")
        kind = signal["type"]
        # To the SFU: which of its two connections, what it carries; to a peer: which attempt.
        sfu: dict[str, Any] = {}
        if types is SIGNALS and "session" in signal:
            session = signal["session"]
            if not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION_CHARS:
                raise Problem(422, "invalid_signal", "session: a string of 1-64 characters")
            sfu["session"] = session
        if types is SFU_SIGNALS:
            sfu["pc"] = signal.get("pc", "publish")
            if sfu["pc"] not in ("publish", "subscribe"):
                raise Problem(422, "invalid_signal", "pc: publish or subscribe")
            if kind == "offer" and "tracks" in signal:
                sfu["tracks"] = _checked_tracks(signal["tracks"])
        if kind in ("offer", "answer"):
            sdp = signal.get("sdp")
            if not isinstance(sdp, str) or len(sdp.encode()) > self.config.max_sdp_bytes:
                raise Problem(422, "invalid_sdp", "sdp: a session description within the limit")
            if not sdp.startswith("v=0") or "\nm=" not in sdp or "\no=" not in sdp:
                raise Problem(422, "invalid_sdp", "that is not an SDP session description")
            return {"type": kind, "sdp": sdp, **sfu}
        if kind == "candidate":
            candidate = signal.get("candidate")
            if not (
                isinstance(candidate, dict)
                and isinstance(candidate.get("candidate"), str)
                and len(candidate["candidate"]) <= MAX_CANDIDATE_CHARS
            ):
                raise Problem(422, "invalid_candidate", "candidate: {candidate, sdpMid, ...}")
            allowed = ("candidate", "sdpMid", "sdpMLineIndex", "usernameFragment")
            return {"type": kind, "candidate": {k: candidate.get(k) for k in allowed}, **sfu}
        return {"type": kind, **sfu}

    # -- the operator -----------------------------------------------------------------------

    async def end_call(self, call_id: str, admin: User, ip: str | None) -> dict[str, Any]:
        """An admin ends a call for everyone (audited)."""
        call = self.calls.get(call_id)
        if call is None:
            raise Problem(404, "call_not_found", "no such call (or it has ended)")
        call.end("ended_by_admin", time.time())
        await self.audit.record("call.ended_by_admin", actor_id=admin.id, target=call.id, ip=ip)
        await self._changed(call)
        return call.view()

    async def hang_up_user(self, user_id: str) -> None:
        """A banned user leaves every call at once."""
        for call in list(self.calls.values()):
            if user_id in call.joined():
                await self._leave(call, user_id, time.time())
                await self._changed(call)

    async def figures(self) -> dict[str, float]:
        live = [c for c in self.calls.values() if c.status != "ended"]
        return {
            "active": len(live),
            "participants": sum(len(c.joined()) for c in live),
            "sfu_feeds": sum(len(r.feeds()) for r in self.rooms.rooms.values()),
            "recording": len(self.rooms.recordings),
        }

    async def user_facts(self, user_id: str) -> dict[str, Any]:
        calls = await self.store.fetchval(
            "SELECT COUNT(*) FROM call_participants WHERE user_id = ?", user_id
        )
        now = self.in_call(user_id)
        return {"calls": int(calls), "in_call": now.id if now else None}

    # -- history ----------------------------------------------------------------------------

    async def history(self, user: User, limit: int, before: float | None) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT c.id, c.kind, c.host_id, c.status, c.end_reason, c.created_at,"
            " c.answered_at, c.ended_at, p.state AS my_state FROM calls c"
            " JOIN call_participants p ON p.call_id = c.id AND p.user_id = ?"
            " WHERE c.created_at < ? ORDER BY c.created_at DESC LIMIT ?",
            user.id, before if before is not None else float("inf"), limit,
        )  # fmt: skip
        for row in rows:
            row["participants"] = await self.store.fetchall(
                "SELECT user_id, username, state, joined_at, left_at FROM call_participants"
                " WHERE call_id = ?",
                row["id"],
            )
        return rows


def _checked_media(media: Any) -> dict[str, bool]:
    if not isinstance(media, dict) or any(
        k not in MEDIA or not isinstance(v, bool) for k, v in media.items()
    ):
        raise Problem(422, "invalid_media", f"media is {{{', '.join(MEDIA)}: bool}}")
    return media


def _checked_tracks(tracks: Any) -> dict[str, str]:
    """What each of a participant's tracks is (by MediaStreamTrack id, or by mid in an offer
    to the SFU): the peers tell a screen share from a camera by it."""
    if (
        not isinstance(tracks, dict)
        or len(tracks) > MAX_TRACKS
        or any(
            not isinstance(k, str) or not 0 < len(k) <= 128 or v not in TRACK_LABELS
            for k, v in tracks.items()
        )
    ):
        raise Problem(
            422, "invalid_tracks",
            f"tracks maps up to {MAX_TRACKS} track ids to {', '.join(TRACK_LABELS)}",
        )  # fmt: skip
    return dict(tracks)


def _duration(call: PhoneCall) -> float | None:
    if call.answered_at is None or call.ended_at is None:
        return None
    return round(call.ended_at - call.answered_at, 3)
