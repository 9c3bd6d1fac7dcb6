"""WHEP (WebRTC-HTTP Egress Protocol): ``POST /live/<name>/whep`` with an SDP offer returns
``201`` + the SDP answer + a ``Location`` for the session; ``DELETE`` on it hangs up."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import InvalidStateError, OperationError

from ...errors import Problem
from ..live import LiveService
from .relay import Viewer

log = structlog.get_logger(__name__)
SDP_TYPE = "application/sdp"
MAX_OFFER = 64 * 1024


VIDEO_CODECS = RTCRtpSender.getCapabilities("video").codecs
H264 = [c for c in VIDEO_CODECS if c.mimeType == "video/H264"]
VP8 = [c for c in VIDEO_CODECS if c.mimeType == "video/VP8"]


def offered_video_codecs(sdp: str) -> set[str]:
    """Upper-case codec names in the offer's video section (``H264``, ``VP8`` ...)."""
    names: set[str] = set()
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            names.add(line.split(" ", 1)[-1].split("/", 1)[0].upper())
    return names


def register_whep_routes(app: web.Application, service: LiveService, name_pattern: str) -> None:
    async def offer(request: web.Request) -> web.Response:
        stream = service.streams.get(request.match_info["name"])
        if stream is None or stream.state == "ended":
            raise Problem(404, "stream_not_found", "no live stream by that name")
        if request.content_type != SDP_TYPE:
            raise Problem(415, "unsupported_media_type", "send the SDP offer as application/sdp")
        body = await request.content.read(MAX_OFFER + 1)
        if len(body) > MAX_OFFER:
            raise Problem(413, "body_too_large", "the SDP offer is too large")
        sdp = body.decode("utf-8", "replace")
        if not sdp.startswith("v=0") or ("m=video" not in sdp and "m=audio" not in sdp):
            raise Problem(400, "invalid_sdp", "the body is not an SDP offer with media")
        relay = service.relay(stream)
        # H.264 is passed through (or re-encoded without B-frames, see relay.py); an offer
        # without it but with VP8 gets the stream's shared VP8 transcode. Transceivers made
        # before the offer is applied take its m-lines.
        # A viewer may ask for video only or audio only: answer just what was offered.
        kinds = {line[2:7] for line in sdp.splitlines() if line.startswith(("m=video", "m=audio"))}
        codecs = offered_video_codecs(sdp)
        vp8 = "video" in kinds and "H264" not in codecs and "VP8" in codecs
        pc = RTCPeerConnection()
        viewer = Viewer(pc, "vp8" if vp8 else "h264")
        if "video" in kinds:
            video = pc.addTransceiver(viewer.video, direction="sendonly")
            video.setCodecPreferences(VP8 if vp8 else H264)
        if "audio" in kinds:
            pc.addTransceiver(viewer.audio, direction="sendonly")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except OperationError as exc:
            await pc.close()
            raise Problem(
                406, "codec_unsupported", f"the offer has neither H.264 nor VP8, or no Opus: {exc}"
            ) from None
        except (ValueError, KeyError, AttributeError, InvalidStateError) as exc:
            await pc.close()
            raise Problem(400, "invalid_sdp", f"the offer cannot be answered: {exc}") from None
        relay.add(viewer)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                relay.remove(viewer.id)
                await pc.close()

        log.info(
            "whep.viewer_joined", stream=stream.name, viewer=viewer.id, video=viewer.video_codec
        )
        location = f"/live/{stream.name}/whep/{viewer.id}"
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type=SDP_TYPE,
            headers={"Location": location, "Access-Control-Expose-Headers": "Location"},
        )

    async def hang_up(request: web.Request) -> web.Response:
        stream = service.streams.get(request.match_info["name"])
        viewer = stream.relay.remove(request.match_info["id"]) if stream and stream.relay else None
        if viewer is None:
            raise Problem(404, "session_not_found", "no such WHEP session")
        await viewer.pc.close()
        return web.Response(status=200)

    app.router.add_post(f"/live/{{name:{name_pattern}}}/whep", offer)
    app.router.add_delete(f"/live/{{name:{name_pattern}}}/whep/{{id:[0-9a-f]{{32}}}}", hang_up)
