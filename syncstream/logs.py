"""structlog set-up: JSON lines (default) or a readable console format, to stderr."""

from __future__ import annotations

import logging
import sys

import structlog
from aiohttp import web

from .config import LoggingSettings

REDACTED = "[redacted]"


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
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through stdlib logging (aiohttp, asyncpg ...) get the same format.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
