"""Problem-JSON errors (RFC 9457) with stable machine-readable codes.

Raise :class:`Problem` anywhere in a request handler; the error middleware turns it (and any
other failure) into an ``application/problem+json`` response. Clients switch on ``code``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # protocol-specific codes such as tus's 460
        return "Error"


@dataclass(frozen=True)
class ErrorCode:
    """A registered error ``code``: the HTTP statuses it comes with (empty when it is never an
    HTTP answer, e.g. a WebSocket frame's or a failed job's) and what it means to a client."""

    code: str
    statuses: tuple[int, ...]
    meaning: str


class Problem(Exception):
    """An error a client can act on: HTTP status, stable ``code`` and a human ``detail``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str = "",
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail or _phrase(status)
        self.title = title or _phrase(status)
        self.headers = headers or {}
        self.extra = extra
        super().__init__(f"{status} {code}: {self.detail}")

    def body(self) -> dict[str, Any]:
        return {
            "type": f"https://syncstream.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }

    def text(self) -> str:
        return json.dumps(self.body(), separators=(",", ":"), default=str)

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            reason=self.title,
            text=self.text(),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


# Codes for failures raised by aiohttp itself, before our handlers run.
HTTP_EXCEPTION_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def from_http_exception(exc: web.HTTPException) -> Problem:
    """Wrap an aiohttp ``HTTPException`` (404 route, 405, 413 ...) as a Problem."""
    code = HTTP_EXCEPTION_CODES.get(exc.status, "http_error")
    detail = exc.reason
    if exc.status == 413:
        detail = "request body is larger than the server accepts"
    headers = {}
    if exc.status == 405 and "Allow" in exc.headers:
        headers["Allow"] = exc.headers["Allow"]
    return Problem(exc.status, code, detail, headers=headers)
