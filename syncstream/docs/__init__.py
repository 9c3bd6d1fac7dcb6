"""The generated pages of ``docs/``: the API reference (from the OpenAPI document of a node
built in-process on the default configuration) and the error-code catalogue (from the core's
registry and each plugin's ``error_codes``).

``python -m syncstream.docs`` rewrites them; ``--check`` only says whether they are in step
(``tests/test_docs.py`` does the same).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import __version__
from ..config import load_config
from ..error_codes import CODES
from ..errors import ErrorCode
from ..plugins.contract import Plugin
from ..plugins.discovery import discover
from .errors_page import errors_page
from .reference_page import reference_page

ROOT = Path(__file__).resolve().parent.parent.parent
REFERENCE = Path("docs/api/reference.md")
ERRORS = Path("docs/api/errors.md")


async def openapi_document() -> dict[str, Any]:
    """The OpenAPI document a node on the default configuration serves (bundled plugins that
    are on by default), built in-process on a scratch data directory."""
    from ..app import build  # the app pulls in the whole server; only the generator needs it

    with tempfile.TemporaryDirectory(prefix="syncstream-docs-") as scratch:
        config = Path(scratch) / "empty.yaml"
        config.write_text("{}\n")
        overrides = {
            "data_dir": str(Path(scratch) / "data"),
            "server.port": 0,
            "rtmp.enabled": False,
            "logging.level": "error",
            "logging.access_log": False,
        }
        app, core = await build(load_config(config, environ={}, overrides=overrides))
        runner = web.AppRunner(app)
        await runner.setup()  # runs start-up hooks, so cleanup() closes what build() opened
        try:
            return core.api.openapi("SyncStream", __version__)
        finally:
            await runner.cleanup()


def registered_codes() -> dict[str, tuple[ErrorCode, ...]]:
    """Owner ("core" or a plugin's name) → its registered error codes, for every plugin found
    (enabled or not), as the loader would import it."""
    owners = {"core": CODES}
    for found in discover():
        if found.manifest is None:
            continue
        plugin = getattr(found.load(), "plugin", None)
        if isinstance(plugin, Plugin) and plugin.error_codes:
            owners[found.name] = tuple(plugin.error_codes)
    return owners


async def pages() -> dict[Path, str]:
    """Each generated page (path relative to the repository) → its text."""
    return {
        REFERENCE: reference_page(await openapi_document()),
        ERRORS: errors_page(registered_codes()),
    }
