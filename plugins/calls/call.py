"""One call's lifecycle, without I/O: who was invited, who answered, and when it ends.

A call starts ``ringing`` with its host joined; it becomes ``active`` when someone else
joins and ``ended`` when nobody is left to talk to (a direct call: when either side hangs
up; a group call: when the last participant leaves), or when every invitation was declined,
missed or busy, or when the host cancels before anyone answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from syncstream.sdk import Problem

State = Literal["ringing", "joined", "declined", "missed", "busy", "left", "removed"]


@dataclass
class Participant:
    user_id: str
    username: str
    state: State
    joined_at: float | None = None
    left_at: float | None = None
    media: dict[str, bool] = field(
        default_factory=lambda: {"audio": True, "video": True, "screen": False}
    )
    tracks: dict[str, str] = field(default_factory=dict)  # track id -> camera, screen, ...
    locked: set[str] = field(default_factory=set)  # media the host muted: only it unmutes

    def view(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "username": self.username, "state": self.state,
                "joined_at": self.joined_at, "left_at": self.left_at,
                "media": dict(self.media), "tracks": dict(self.tracks),
                "locked": sorted(self.locked)}  # fmt: skip


@dataclass
class PhoneCall:
    id: str
    kind: Literal["direct", "group"]
    host_id: str
    participants: dict[str, Participant]
    status: Literal["ringing", "active", "ended"] = "ringing"
    created_at: float = field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    route: Literal["p2p", "sfu"] = "p2p"  # sfu: media goes through the server
    recording: dict[str, Any] | None = None

    def joined(self) -> list[str]:
        return [p.user_id for p in self.participants.values() if p.state == "joined"]

    def ringing(self) -> list[str]:
        return [p.user_id for p in self.participants.values() if p.state == "ringing"]

    def member(self, user_id: str) -> Participant:
        participant = self.participants.get(user_id)
        if participant is None:
            raise Problem(403, "not_in_call", "you are not part of this call")
        return participant

    def _live(self) -> None:
        if self.status == "ended":
            raise Problem(409, "call_ended", f"the call has ended ({self.end_reason})")

    def accept(self, user_id: str, now: float) -> None:
        """Answer an invitation — or, in a group call that is on, join (again)."""
        self._live()
        participant = self.member(user_id)
        rejoin = self.kind == "group" and self.status == "active"
        if participant.state == "removed":
            raise Problem(403, "removed_from_call", "the host removed you from this call")
        if participant.state == "joined":
            raise Problem(409, "already_joined", "you are in this call")
        if participant.state != "ringing" and not rejoin:
            raise Problem(409, "not_ringing", f"the invitation is {participant.state}")
        participant.state, participant.joined_at, participant.left_at = "joined", now, None
        if self.status == "ringing":
            self.status, self.answered_at = "active", now

    def decline(self, user_id: str, now: float) -> None:
        self._live()
        participant = self.member(user_id)
        if participant.state != "ringing":
            raise Problem(409, "not_ringing", f"the invitation is {participant.state}")
        participant.state = "declined"
        self._settle(now)

    def leave(self, user_id: str, now: float) -> None:
        """Hang up."""
        self._live()
        participant = self.member(user_id)
        if participant.state != "joined":
            raise Problem(409, "not_joined", "you are not in the call")
        participant.state, participant.left_at = "left", now
        self._settle(now)

    def remove(self, user_id: str, now: float) -> None:
        """The host takes a participant (or an invitation) out of the call for good."""
        self._live()
        participant = self.member(user_id)
        if participant.state == "removed":
            raise Problem(409, "already_removed", "that participant was removed already")
        if participant.state == "joined":
            participant.left_at = now
        participant.state = "removed"
        self._settle(now)

    def cancel(self, user_id: str, now: float) -> None:
        """The host calls off an invitation nobody answered yet."""
        self._live()
        if user_id != self.host_id:
            raise Problem(403, "not_host", "only the caller can cancel")
        if self.status != "ringing":
            raise Problem(409, "already_answered", "the call was answered: hang up instead")
        self._end("cancelled", now)

    def ring_out(self, now: float) -> list[str]:
        """The ring timer ran out: who was still ringing missed it (returned)."""
        missed = self.ringing()
        for user_id in missed:
            self.participants[user_id].state = "missed"
        if self.status != "ended":
            self._settle(now)
        return missed

    def end(self, reason: str, now: float) -> None:
        """End the call for everyone (an operator's order, say)."""
        self._live()
        self._end(reason, now)

    def _settle(self, now: float) -> None:
        joined, ringing = self.joined(), self.ringing()
        if self.status == "ringing":
            if not ringing:  # nobody answered: why not, from the last invitation
                states = {p.state for p in self.participants.values() if p.user_id != self.host_id}
                reason = next(s for s in ("missed", "busy", "declined", "removed") if s in states)
                self._end(reason, now)
            elif self.host_id not in joined:
                self._end("cancelled", now)
        elif len(joined) == 0 or (self.kind == "direct" and len(joined) < 2):
            self._end("completed", now)

    def _end(self, reason: str, now: float) -> None:
        self.status, self.end_reason, self.ended_at = "ended", reason, now
        for participant in self.participants.values():
            if participant.state == "joined":
                participant.state, participant.left_at = "left", now
            elif participant.state == "ringing":
                participant.state = "missed"

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "host_id": self.host_id,
            "status": self.status,
            "participants": [p.view() for p in self.participants.values()],
            "created_at": self.created_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "route": self.route,
            "recording": self.recording,
        }
