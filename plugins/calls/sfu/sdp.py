"""SDP edits the SFU needs: every publisher sends the codecs every viewer can take (VP8 and
Opus, which all browsers and aiortc speak), and video is capped with ``b=AS``."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import sdp

FORWARDABLE = {"audio": ("audio/opus",), "video": ("video/vp8",)}


class SdpError(ValueError):
    pass


@dataclass(frozen=True)
class Section:
    """One m= section of a publisher's offer."""

    mid: str
    kind: str
    sending: bool  # False: the track was removed (inactive, recvonly or port 0)


def forwardable_offer(offer: str) -> tuple[str, list[Section]]:
    """The offer with only forwardable codecs (and their RTX) left in each audio/video
    section, and its sections. Raises :class:`SdpError` for what cannot be forwarded."""
    try:
        description = sdp.SessionDescription.parse(offer)
    except Exception as exc:  # aiortc's parser raises whatever it hits
        raise SdpError(f"unreadable SDP: {exc}") from None
    sections = []
    for media in description.media:
        if media.kind not in FORWARDABLE:
            continue
        keep = [c for c in media.rtp.codecs if c.mimeType.lower() in FORWARDABLE[media.kind]]
        if not keep and media.port != 0 and media.direction in ("sendrecv", "sendonly"):
            raise SdpError(f"{media.kind} must offer {' or '.join(FORWARDABLE[media.kind])}")
        kept = {c.payloadType for c in keep}
        keep += [
            c
            for c in media.rtp.codecs
            if c.mimeType.lower().endswith("/rtx") and int(str(c.parameters.get("apt", -1))) in kept
        ]
        media.rtp.codecs = keep
        media.fmt = [c.payloadType for c in keep]
        if media.rtp.muxId is None:
            raise SdpError("every media section needs a mid")
        sending = media.port != 0 and media.direction in ("sendrecv", "sendonly")
        sections.append(Section(media.rtp.muxId, media.kind, sending))
    return str(description), sections


def with_video_cap(description: str, kbps: int) -> str:
    """``b=AS:<kbps>`` in every video section: browsers keep their sending rate under it."""
    out = []
    video = False
    for line in description.splitlines():
        if line.startswith("m="):
            video = line.startswith("m=video")
        elif line.startswith("b=AS:") and video:
            continue
        out.append(line)
        if video and line.startswith("c="):
            out.append(f"b=AS:{kbps}")
    return "\r\n".join(out) + "\r\n"
