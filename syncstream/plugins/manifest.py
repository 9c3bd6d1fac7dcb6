"""A plugin's ``manifest.json``: what the loader knows of a plugin before importing its code.

Like a Home Assistant integration's manifest: name, version, description, the plugins that
must be set up first (``dependencies``), whether the node may run without it (``required``)
and whether it runs when its config section does not say (``enabled_by_default``). The
config schema is the plugin's config model, validated right after the import.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST = "manifest.json"
NAME = r"^[a-z][a-z0-9_]{0,31}$"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=NAME, description="The plugin's name: its config section, its /api/<name>"
    )
    version: str = Field(min_length=1, max_length=40)
    description: str = ""
    dependencies: tuple[str, ...] = Field((), description="Plugins set up before this one")
    required: bool = Field(False, description="The node does not start without it")
    enabled_by_default: bool = True


class ManifestError(Exception):
    """A manifest that is missing, not JSON, or not a manifest; the message says where."""


def read_manifest(directory: Path, expected_name: str) -> Manifest:
    """The manifest in ``directory``, whose name must be ``expected_name`` (the folder's or the
    entry point's name, so that a broken plugin is reported under the name it is known by)."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing (every plugin declares itself there)") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not JSON: {exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        issues = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ManifestError(f"{path}: {issues}") from None
    if manifest.name != expected_name:
        raise ManifestError(f"{path}: name {manifest.name!r} differs from {expected_name!r}")
    return manifest
