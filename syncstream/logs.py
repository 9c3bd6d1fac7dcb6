"""structlog set-up: JSON lines (default) or a readable console format, to stderr."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from aiohttp import web

from .config import LoggingSettings

REDACTED = "[redacted]"
# Secrets as they may turn up in any log line, whoever wrote it (aiohttp quotes a whole bad
# header or request line in its errors): our tokens and stream keys by their prefixes,
# whatever follows "Bearer", and a token= query value.
SECRETS = re.compile(
    r"(?:sst|live)_[A-Za-z0-9_-]{32,}"
    r"|(?<=[Bb]earer)[\s\x00-\x1f\x7f]*[^\s'\",]+"
    r"|(?<=token=)[^&\s'\",]+"
)


def redact(text: str) -> str:
    """``text`` with every secret in it masked."""
    return SECRETS.sub(REDACTED, text)


def redact_secrets(
    logger: Any, method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """The last step before a line is written, for ours and libraries' alike: no string
    value (message, exception text, fields) keeps a secret."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


def loggable_path(request: web.Request) -> str:
    """The request's path as logs may keep it: capabilities in it (route parameters named
    ``token``, as in ``/api/files/links/{token}``) are masked. Query strings are never logged."""
    path = request.path
    for name, value in request.match_info.items():
        if "token" in name and value:
            path = path.replace(value, REDACTED)
    return path


def configure_logging(settings: LoggingSettings) -> None:
    level = getattr(logging, settings.level.upper())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through stdlib logging (aiohttp, asyncpg ...) get the same format.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
