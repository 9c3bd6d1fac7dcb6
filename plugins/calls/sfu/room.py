"""One call's SFU room: each participant sends its tracks once over a *publish* connection
(the participant offers) and receives everyone else's over a *subscribe* connection (the
server offers, again whenever the set of tracks changes). Encoded frames are forwarded as
they arrive — no decoding, no encoding — so a room costs packet copying, not codec time.

Signals are exchanged with ``"to": "sfu"`` through the call's signaling (see the service):
the participant sends ``offer`` (``pc: "publish"``, with ``tracks``: mid → label),
``answer`` (``pc: "subscribe"``), ``candidate`` (either pc), ``subscribe`` (receive without
sending) and ``restart`` (network changed: both connections are dropped; offer again); the
server sends ``answer`` (publish), ``offer`` (subscribe, with ``tracks``: mid → feed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from syncstream.sdk import Problem, on_keyframe_request, tap_receiver

from .feed import Feed, ForwardTrack, Output
from .sdp import SdpError, forwardable_offer, with_video_cap

log = structlog.get_logger(__name__)
Notify = Callable[[str, dict[str, Any]], Awaitable[None]]
DEFAULT_LABELS = {"audio": "microphone", "video": "camera"}
MEDIA_LABELS = {
    "audio": ("microphone",),
    "video": ("camera",),
    "screen": ("screen", "screen-audio"),
}


class Outlet:
    """A sending slot on a subscribe connection, with one long-lived track; once its feed
    is gone it idles (inactive) until another feed of its kind takes it. The far side
    learns which feed a slot carries from the ``tracks`` (mid -> feed) of each offer."""

    def __init__(self, pc: RTCPeerConnection, feed: Feed) -> None:
        self.feed: Feed | None = None
        self.track = ForwardTrack(feed.kind, self._want_keyframe)
        self.transceiver = pc.addTransceiver(self.track, direction="sendonly")
        on_keyframe_request(self.transceiver.sender, self._keyframe_requested)
        self.assign(feed)

    def assign(self, feed: Feed) -> None:
        self.feed = feed
        feed.outputs[self.track.id] = self.track
        self.transceiver.direction = "sendonly"
        self.track.restart()
        if self.track.pulling:
            feed.want_keyframe()

    def release(self) -> None:
        if self.feed is not None:
            self.feed.outputs.pop(self.track.id, None)
            self.feed = None
        self.transceiver.direction = "inactive"

    def _want_keyframe(self) -> None:
        if self.feed is not None:
            self.feed.want_keyframe()

    async def _keyframe_requested(self) -> None:
        self._want_keyframe()


class Member:
    def __init__(self, user_id: str, username: str) -> None:
        self.user_id, self.username = user_id, username
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self.feeds: dict[str, Feed] = {}  # by mid on the publish connection
        # Feeds whose section went inactive (a screen share stopped), by mid: the section
        # may send again (shared anew) on the same receiver, whose tap they keep.
        self.dormant: dict[str, Feed] = {}
        self.outlets: list[Outlet] = []
        self.publishing = asyncio.Lock()
        self.offering = False  # a subscribe offer awaits its answer
        self.stale = False  # feeds changed while it did

    async def close(self) -> None:
        for outlet in self.outlets:
            outlet.release()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
        self.publisher = self.subscriber = None
        self.outlets.clear()
        self.offering = self.stale = False


class Room:
    def __init__(
        self, call_id: str, notify: Notify, ice_servers: list[RTCIceServer],
        max_video_kbps: int,
    ) -> None:  # fmt: skip
        self.call_id = call_id
        self.notify = notify  # (user id, signal) -> delivered on user:<id>
        self.ice_servers = ice_servers
        self.max_video_kbps = max_video_kbps
        self.members: dict[str, Member] = {}
        self.recorder: Callable[[Feed], Output] | None = None  # an output for each feed

    def feeds(self) -> list[Feed]:
        return [f for m in self.members.values() for f in m.feeds.values()]

    def member(self, user_id: str, username: str) -> Member:
        if user_id not in self.members:
            self.members[user_id] = Member(user_id, username)
        return self.members[user_id]

    def _connection(self, member: Member) -> RTCPeerConnection:
        """A connection for ``member``: if it fails (the network went away for good), the
        member's media session ends; the participant may publish again (``restart``)."""
        # max-bundle: every section on one transport from the start. aiortc's default
        # (balanced) gives a connection's second video section the first one's transport,
        # which a browser's BUNDLE answer then discards without moving that section to the
        # bundle transport: its sender never starts (a late joiner's second video tile
        # stayed black in Chromium).
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=self.ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

        async def changed() -> None:
            if (
                pc.connectionState in ("failed", "closed")
                and self.members.get(member.user_id) is member
                and pc in (member.publisher, member.subscriber)
            ):
                log.info("sfu.connection_lost", call=self.call_id, user=member.user_id)
                await self.leave(member.user_id)

        pc.on("connectionstatechange", changed)
        return pc

    # -- signals from a participant ---------------------------------------------------------

    async def signal(self, user_id: str, username: str, signal: dict[str, Any]) -> None:
        member = self.member(user_id, username)
        kind = signal["type"]
        if kind == "offer":
            await self._publish(member, signal["sdp"], signal.get("tracks") or {})
        elif kind == "answer":
            await self._answered(member, signal["sdp"])
        elif kind == "candidate":
            await self._candidate(member, signal)
        elif kind == "subscribe":
            await self._offer_feeds(member)
        elif kind in ("restart", "bye"):
            await self.leave(user_id)
            if kind == "restart":
                self.member(user_id, username)

    async def _publish(self, member: Member, offer: str, labels: dict[str, str]) -> None:
        try:
            offer, sections = forwardable_offer(offer)
        except SdpError as exc:
            raise Problem(422, "invalid_sdp", str(exc)) from None
        async with member.publishing:
            fresh = member.publisher is None
            if member.publisher is None:
                member.publisher = self._connection(member)
            pc = member.publisher
            added: list[Feed] = []

            def on_track(track: Any) -> None:
                transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
                mid = transceiver.mid or ""
                label = labels.get(mid) or DEFAULT_LABELS[track.kind]
                feed = Feed(member.user_id, member.username, track.kind, label, mid,
                            transceiver.receiver)  # fmt: skip
                feed.tap = tap_receiver(
                    transceiver.receiver, feed.forward,
                    on_audio_level=feed.heard if track.kind == "audio" else None,
                    max_bitrate=self.max_video_kbps * 1000 if track.kind == "video" else None,
                )  # fmt: skip
                added.append(feed)

            pc.on("track", on_track)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:  # aiortc raises ValueError/InternalError/OperationError
                pc.remove_listener("track", on_track)
                if fresh:  # a first offer that failed leaves nothing half set up behind
                    member.publisher = None
                    await pc.close()
                raise Problem(422, "invalid_sdp", f"cannot answer that offer: {exc}") from None
            pc.remove_listener("track", on_track)
            removed = [s.mid for s in sections if not s.sending and s.mid in member.feeds]
            for mid in removed:
                feed = member.feeds.pop(mid)
                self._drop(feed)
                member.dormant[mid] = feed
            for section in sections:
                if section.sending and section.mid in member.dormant:
                    added.append(_revived(member.dormant.pop(section.mid), labels))
            for feed in added:
                member.feeds[feed.mid] = feed
                if self.recorder is not None:
                    feed.outputs["recorder"] = self.recorder(feed)
            answer = with_video_cap(pc.localDescription.sdp, self.max_video_kbps)
        await self.notify(member.user_id, {"type": "answer", "pc": "publish", "sdp": answer})
        if added or removed:
            await self._resync(exclude=None)

    async def _answered(self, member: Member, answer: str) -> None:
        pc = member.subscriber
        if pc is None or pc.signalingState != "have-local-offer":
            raise Problem(409, "no_offer", "the SFU has no offer waiting for an answer")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        except Exception as exc:
            raise Problem(422, "invalid_sdp", f"cannot take that answer: {exc}") from None
        member.offering = False
        if member.stale:
            await self._offer_feeds(member)

    async def _candidate(self, member: Member, signal: dict[str, Any]) -> None:
        pc = member.subscriber if signal.get("pc") == "subscribe" else member.publisher
        found = signal["candidate"]
        text = found.get("candidate") or ""
        if pc is None or pc.remoteDescription is None or not text:
            return  # early or end-of-candidates: aiortc gathers and checks on its own
        try:
            candidate = candidate_from_sdp(text.split(":", 1)[-1])
        except (ValueError, IndexError):
            raise Problem(422, "invalid_candidate", "that is not an ICE candidate") from None
        candidate.sdpMid = found.get("sdpMid")
        candidate.sdpMLineIndex = found.get("sdpMLineIndex")
        await pc.addIceCandidate(candidate)

    # -- what each participant receives -----------------------------------------------------

    async def _resync(self, exclude: str | None) -> None:
        for member in list(self.members.values()):
            if member.user_id != exclude and (member.subscriber or member.publisher):
                try:
                    await self._offer_feeds(member)
                except Exception as exc:  # one member's broken connection is theirs alone
                    log.warning("sfu.offer_failed", call=self.call_id, user=member.user_id,
                                error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    async def _offer_feeds(self, member: Member) -> None:
        """Bring the member's subscribe connection in line with the others' feeds and send
        it an offer (or, if one is out, once it is answered)."""
        if member.offering:
            member.stale = True
            return
        member.stale = False
        if member.subscriber is None:
            member.subscriber = self._connection(member)
        pc = member.subscriber
        if pc.signalingState == "closed":  # closing (its connection state may lag)
            return
        wanted = {f.id: f for f in self.feeds() if f.owner != member.user_id}
        changed = False
        for outlet in member.outlets:
            if outlet.feed is not None and outlet.feed.id not in wanted:
                outlet.release()
                changed = True
        sending = {o.feed.id for o in member.outlets if o.feed is not None}
        for feed in wanted.values():
            if feed.id in sending:
                continue
            idle = [o for o in member.outlets if o.feed is None and o.track.kind == feed.kind]
            if idle:
                idle[0].assign(feed)
            else:
                member.outlets.append(Outlet(pc, feed))
            changed = True
        if not changed or not member.outlets:
            return
        member.offering = True  # before the first await: one offer out at a time
        try:
            await pc.setLocalDescription(await pc.createOffer())
        except Exception:
            member.offering = False
            raise
        tracks = {o.transceiver.mid: o.feed.view() for o in member.outlets if o.feed is not None}
        await self.notify(
            member.user_id,
            {"type": "offer", "pc": "subscribe", "sdp": pc.localDescription.sdp, "tracks": tracks},
        )

    def record(self, recorder: Callable[[Feed], Output] | None) -> None:
        """Give every feed, now and to come, an output made by ``recorder`` (None: stop);
        the recording starts at fresh keyframes."""
        self.recorder = recorder
        for feed in self.feeds():
            if recorder is None:
                feed.outputs.pop("recorder", None)
            else:
                feed.outputs["recorder"] = recorder(feed)
                feed.want_keyframe()

    # -- controls ---------------------------------------------------------------------------

    def set_media(self, user_id: str, media: dict[str, bool]) -> None:
        """Forward (or hold back) a participant's tracks as their media state says."""
        member = self.members.get(user_id)
        if member is None:
            return
        for flag, on in media.items():
            for feed in member.feeds.values():
                if feed.label in MEDIA_LABELS.get(flag, ()):
                    feed.set_muted(not on)

    def speaker(self, threshold: float) -> Feed | None:
        """The loudest audio feed above ``threshold`` (0 … 127), if any."""
        audio = [f for f in self.feeds() if f.kind == "audio" and not f.muted]
        loudest = max(audio, key=lambda f: f.loudness, default=None)
        return loudest if loudest is not None and loudest.loudness >= threshold else None

    # -- leaving ----------------------------------------------------------------------------

    def _drop(self, feed: Feed) -> None:
        feed.outputs.clear()

    async def leave(self, user_id: str) -> None:
        """Close the participant's connections; the others stop receiving their feeds."""
        member = self.members.pop(user_id, None)
        if member is None:
            return
        for feed in member.feeds.values():
            self._drop(feed)
        await member.close()
        await self._resync(exclude=None)

    async def close(self) -> None:
        members = list(self.members.values())
        self.members.clear()
        for member in members:
            for feed in member.feeds.values():
                self._drop(feed)
            with contextlib.suppress(Exception):
                await member.close()


def _revived(feed: Feed, labels: dict[str, str]) -> Feed:
    """A feed whose section sends again: a new feed (a new id, so viewers see a new track)
    on the same receiver, its tap now handing frames to the new one."""
    fresh = Feed(feed.owner, feed.username, feed.kind, labels.get(feed.mid) or feed.label,
                 feed.mid, feed.receiver)  # fmt: skip
    fresh.tap = feed.tap
    if fresh.tap is not None:
        fresh.tap.on_frame = fresh.forward
        if fresh.tap.on_audio_level is not None:
            fresh.tap.on_audio_level = fresh.heard
    return fresh
