"""Every error ``code`` the core answers with: HTTP problems and WebSocket ``error`` frames.

One entry per code: the HTTP statuses it comes with (none: it is only a WebSocket frame's)
and what it means. Plugins keep their own codes in their ``Plugin(error_codes=...)``.
``tests/test_error_codes.py`` checks the source makes no code that is not here and that
every code here is made somewhere; ``python -m syncstream.docs`` writes docs/api/errors.md.
"""

from __future__ import annotations

from .errors import ErrorCode

CODES: tuple[ErrorCode, ...] = (
    ErrorCode("admin_required", (403,), "this call needs the admin role"),
    ErrorCode("already_subscribed", (409,), "the socket is already subscribed to the topic"),
    ErrorCode(
        "bad_request", (400,), "the request is malformed (aiohttp refused it, or a core check did)"
    ),
    ErrorCode("body_too_large", (413,), "the request body is larger than the server accepts"),
    ErrorCode(
        "broker_unavailable",
        (503,),
        "the realtime broker (Redis) does not answer; retry after Retry-After",
    ),
    ErrorCode("cannot_demote_self", (409,), "admins cannot ban or demote themselves"),
    ErrorCode("codec_unsupported", (406,), "the WHEP offer has neither H.264 nor VP8, or no Opus"),
    ErrorCode("conflict", (409,), "the request conflicts with a concurrent change; retry"),
    ErrorCode("draining", (503,), "the node is shutting down"),
    ErrorCode(
        "forbidden", (403,), "the caller may not do this (not the owner, not allowed on the topic)"
    ),
    ErrorCode(
        "http_error",
        (),
        "any other error aiohttp raised itself, before a handler ran (the status says which)",
    ),
    ErrorCode(
        "idempotency_key_in_use", (409,), "a request with this Idempotency-Key is still in progress"
    ),
    ErrorCode(
        "idempotency_key_reused", (422,), "this Idempotency-Key was used for a different request"
    ),
    ErrorCode("init_not_found", (404,), "no such initialisation section"),
    ErrorCode("internal_error", (500,), "an unexpected error occurred; it has been logged"),
    ErrorCode("node_timeout", (503,), "the node a request was addressed to did not answer in time"),
    ErrorCode("node_unavailable", (503,), "the node a request was addressed to is not connected"),
    ErrorCode("reply_too_large", (413,), "a node's reply on the control channel is over 256 KiB"),
    ErrorCode("request_too_large", (413,), "a request on the control channel is over 256 KiB"),
    ErrorCode("unknown_service", (404,), "the addressed node serves no such control service"),
    ErrorCode(
        "invalid_credentials", (401, 403), "wrong username or password (or wrong current password)"
    ),
    ErrorCode(
        "invalid_frame",
        (400,),
        "WebSocket error frame: send JSON text frames that are objects with an op",
    ),
    ErrorCode("invalid_idempotency_key", (422,), "Idempotency-Key is 1-64 of A-Z a-z 0-9 _ . : -"),
    ErrorCode("invalid_json", (400,), "the body is not valid JSON: …"),
    ErrorCode("invalid_parameter", (400,), "a query parameter must be a non-negative integer"),
    ErrorCode("invalid_password", (422,), "passwords are at most 1024 characters"),
    ErrorCode("invalid_sdp", (400, 422), "the body is not an SDP offer with media"),
    ErrorCode("invalid_token", (401,), "the bearer token is not valid"),
    ErrorCode("invalid_topic", (400,), "topics look like namespace:name"),
    ErrorCode("invalid_username", (422,), "usernames are 2-32 characters: letters, digits, _ . -"),
    ErrorCode("length_required", (400, 411), "the request needs a Content-Length"),
    ErrorCode(
        "login_throttled",
        (429,),
        "too many failed logins for this account from this address; wait for Retry-After",
    ),
    ErrorCode(
        "method_not_allowed",
        (405,),
        "the path exists but not with this method (see the Allow header)",
    ),
    ErrorCode(
        "no_ladder",
        (404,),
        "the stream has no bitrate ladder (none configured, or switched off for it)",
    ),
    ErrorCode("no_presence", (400,), "the topic does not track presence"),
    ErrorCode("not_found", (404,), "no such route or resource"),
    ErrorCode("not_subscribed", (404,), "the socket is not subscribed to the topic"),
    ErrorCode("not_yet_available", (503,), "the requested part did not appear in time"),
    ErrorCode("part_not_found", (404,), "that part is not (or no longer) available"),
    ErrorCode("password_mismatch", (422,), "the passwords differ"),
    ErrorCode("plugin_unavailable", (503,), "the plugin serving this path failed"),
    ErrorCode(
        "presence_recovering",
        (503,),
        "presence is being rebuilt after the realtime broker came back; retry shortly",
    ),
    ErrorCode("rate_limited", (429,), "too many requests; wait for Retry-After"),
    ErrorCode("registration_closed", (403,), "registration is closed on this server"),
    ErrorCode("request_timeout", (408,), "the request did not arrive in time"),
    ErrorCode("segment_not_found", (404,), "that segment is not (or no longer) available"),
    ErrorCode("session_not_found", (404,), "no such WHEP session"),
    ErrorCode("store_unavailable", (503,), "the store does not answer"),
    ErrorCode("stream_not_found", (404,), "no live stream of that name"),
    ErrorCode("stream_starting", (404,), "the stream has no media yet; retry shortly"),
    ErrorCode("stream_taken", (409,), "the stream name belongs to another user"),
    ErrorCode("thumbnail_pending", (404,), "no snapshot yet; retry in a few seconds"),
    ErrorCode("token_expired", (401,), "the bearer token has expired; log in again"),
    ErrorCode(
        "token_in_url", (401,), "a token in the URL: send it as Authorization: Bearer <token>"
    ),
    ErrorCode("token_not_found", (404,), "no such active token"),
    ErrorCode("too_far_ahead", (400,), "that segment is more than two segments in the future"),
    ErrorCode("too_many_subscriptions", (429,), "unsubscribe from something first"),
    ErrorCode("try_again", (503,), "access to topics is changing: subscribe again"),
    ErrorCode("unauthorized", (401,), "this call needs a bearer token"),
    ErrorCode(
        "unknown_op", (), "WebSocket error frame: the frame's op is not one the gateway knows"
    ),
    ErrorCode("unknown_topic", (404,), "no topic namespace of that name"),
    ErrorCode("unsupported_media_type", (415,), "send the body as application/json"),
    ErrorCode("uri_too_long", (414,), "the request line is too long"),
    ErrorCode("user_banned", (403,), "this account is banned"),
    ErrorCode("user_not_found", (404,), "no such user"),
    ErrorCode("username_taken", (409,), "the username is taken"),
    ErrorCode(
        "validation_failed",
        (422,),
        "a field is missing, of the wrong type or out of bounds (errors: [{field, message}])",
    ),
    ErrorCode("weak_password", (422,), "the password is shorter than auth.min_password_length"),
)
