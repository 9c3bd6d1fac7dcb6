"""Where a forwarding SFU plugs into aiortc: encoded frames are taken from a receiver before
decoding, keyframe requests are taken from a sender, and the bitrate a publisher is told to
use is capped.

aiortc has no public hook for any of these (aiortc 1.16), so each is done on one receiver's
or sender's own instance, never on the classes: the same process may hold ordinary peer
connections that decode. There is no public fallback: on an aiortc where these changed,
:func:`problem` says what, and forwarding is refused with that reason (a call through the
server answers 503 ``sfu_unavailable``; peer-to-peer calls are unaffected). The seams used:

- ``RTCRtpReceiver`` puts each complete frame from its jitter buffer on its decoder queue;
  a :class:`FrameTap` stands in for that queue before the decoder thread starts, turns the
  frame into an ``av.Packet`` on the event loop and hands it on; the idle decoder thread just
  waits for the end.
- ``_handle_rtp_packet`` sees each RTP packet: its audio level (RFC 6464) is read there.
- ``_send_rtcp`` sends the receiver's REMB (bitrate) feedback: it is capped there.
- ``RTCRtpSender._handle_rtcp_packet`` gets the viewers' PLI/FIR: they are passed on.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

import av
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from .versions import outside

CHECKED = ((1, 16), (1, 17))  # the aiortc releases this was written and tested against
Packet = Any  # av.Packet
OnFrame = Callable[[Packet, bool], None]


def problem() -> str | None:
    """Why frames cannot be tapped with the installed aiortc (None: they can)."""
    if reason := outside("aiortc", *CHECKED):
        return reason
    if "_RTCRtpReceiver__decoder_queue" not in RTCRtpReceiver.__init__.__code__.co_names:
        return "RTCRtpReceiver no longer has a decoder queue"
    for owner, name in (
        (RTCRtpReceiver, "_handle_rtp_packet"),
        (RTCRtpReceiver, "_send_rtcp"),
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpSender, "_handle_rtcp_packet"),
    ):
        if not callable(getattr(owner, name, None)):
            return f"{owner.__name__}.{name} is gone"
    return None


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether an encoded frame can be decoded on its own (VP8: the frame tag's P bit;
    Opus: every frame)."""
    if codec == "opus":
        return True
    return bool(data) and codec == "vp8" and data[0] & 0x01 == 0


class FrameTap:
    """Stands in for an ``RTCRtpReceiver``'s decoder queue: frames become packets."""

    def __init__(self, on_frame: OnFrame, on_audio_level: Callable[[int], None] | None) -> None:
        # Both may be re-pointed: a feed that comes back on the same receiver takes them over.
        self.on_frame = on_frame
        self.on_audio_level = on_audio_level
        self.frames = 0
        self.bytes = 0
        self._ended = threading.Event()

    def put(self, item: tuple[RTCRtpCodecParameters, Any] | None) -> None:
        """Called by the receiver on the event loop (``None``: the receiver stops)."""
        if item is None:
            self._ended.set()
            return
        codec, frame = item
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = frame.timestamp
        packet.time_base = Fraction(1, codec.clockRate)
        self.frames += 1
        self.bytes += len(frame.data)
        self.on_frame(packet, is_keyframe(codec.name.lower(), frame.data))

    def get(self) -> None:
        """Called by the (idle) decoder thread: it wakes only to end the track."""
        self._ended.wait()


def tap_receiver(
    receiver: RTCRtpReceiver,
    on_frame: OnFrame,
    on_audio_level: Callable[[int], None] | None = None,
    max_bitrate: int | None = None,
) -> FrameTap:
    """Take ``receiver``'s encoded frames (before its decoder thread starts, i.e. in the
    peer connection's ``track`` event); optionally its audio levels (0 loudest … 127
    silent, -dBov) and a cap on the REMB bitrate it asks of the sender."""
    tap = FrameTap(on_frame, on_audio_level)
    receiver._RTCRtpReceiver__decoder_queue = tap  # type: ignore[attr-defined]
    if on_audio_level is not None:
        handle_rtp = receiver._handle_rtp_packet

        async def level_then_handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            if packet.extensions.audio_level is not None and tap.on_audio_level is not None:
                tap.on_audio_level(packet.extensions.audio_level[1])
            await handle_rtp(packet, arrival_time_ms)

        receiver._handle_rtp_packet = level_then_handle  # type: ignore[method-assign]
    if max_bitrate is not None:
        send_rtcp = receiver._send_rtcp

        async def capped(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                packet.fci = pack_remb_fci(min(bitrate, max_bitrate), ssrcs)
            await send_rtcp(packet)

        receiver._send_rtcp = capped  # type: ignore[method-assign]
    return tap


async def ask_keyframe(receiver: RTCRtpReceiver) -> None:
    """Send a PLI to the sender of every stream ``receiver`` has heard lately."""
    for source in receiver.getSynchronizationSources():
        await receiver._send_rtcp_pli(source.source)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], Awaitable[None]]) -> None:
    """Call ``callback`` when the far side of ``sender`` asks for a keyframe (PLI or FIR):
    a forwarding sender cannot make one itself."""
    handle_rtcp = sender._handle_rtcp_packet

    async def relay_then_handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            await callback()
        await handle_rtcp(packet)

    sender._handle_rtcp_packet = relay_then_handle  # type: ignore[method-assign]
