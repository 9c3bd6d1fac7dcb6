"""The calls plugin's error codes: code, HTTP statuses (none: not an HTTP answer),
meaning. Listed in docs/api/errors.md."""

from __future__ import annotations

from syncstream.sdk import ErrorCode

CODES: tuple[ErrorCode, ...] = (
    ErrorCode("already_answered", (409,), "the call was answered: hang up instead"),
    ErrorCode("already_in_call", (409,), "hang up your current call first"),
    ErrorCode("already_joined", (409,), "you are in this call"),
    ErrorCode("already_recording", (409,), "the call is being recorded"),
    ErrorCode("already_removed", (409,), "that participant was removed already"),
    ErrorCode("call_ended", (409,), "the call has ended (the detail says why)"),
    ErrorCode("call_full", (409,), "at most … participants a call"),
    ErrorCode("call_not_found", (404,), "no such call (or it has ended)"),
    ErrorCode("call_self", (422,), "you cannot call yourself"),
    ErrorCode("direct_is_one_to_one", (422,), "a direct call invites one user"),
    ErrorCode("invalid_candidate", (422,), "candidate: {candidate, sdpMid, ...}"),
    ErrorCode("invalid_media", (422,), "media is {audio, video, screen} with boolean values"),
    ErrorCode("invalid_message", (422,), "publish {to, signal}, {media} or {moderate}"),
    ErrorCode(
        "invalid_moderation",
        (422,),
        "moderate is {action: mute | unlock, media, user, lock} or {action: remove, user}",
    ),
    ErrorCode("invalid_peer", (422,), "to: the user id of another participant"),
    ErrorCode(
        "invalid_signal",
        (422,),
        "the signal is not an object of a type this route takes (the detail lists them)",
    ),
    ErrorCode("invalid_tracks", (422,), "tracks maps up to … track ids to …"),
    ErrorCode("muted_by_host", (403,), "the host muted this medium of yours and locked it"),
    ErrorCode("no_offer", (409,), "the SFU has no offer waiting for an answer"),
    ErrorCode("not_host", (403,), "only the caller can cancel"),
    ErrorCode("not_in_call", (403, 404), "you are not part of this call"),
    ErrorCode("not_joined", (409,), "you are not in the call"),
    ErrorCode("not_recording", (409,), "the call is not being recorded"),
    ErrorCode(
        "not_ringing",
        (409,),
        "the invitation is no longer ringing (answered, declined, missed or cancelled)",
    ),
    ErrorCode("not_routed_via_sfu", (409,), "only calls through the server record"),
    ErrorCode("peer_not_joined", (409,), "that participant is not in the call"),
    ErrorCode("record_needs_sfu", (422,), "a recorded call goes through the server"),
    ErrorCode("recording_unavailable", (409,), "recording needs the files plugin"),
    ErrorCode("removed_from_call", (403,), "the host removed you from this call"),
    ErrorCode("routed_via_sfu", (409,), 'this call goes through the server: "to": "sfu"'),
    ErrorCode("sfu_unavailable", (503,), "calls through the server are off: …"),
)
