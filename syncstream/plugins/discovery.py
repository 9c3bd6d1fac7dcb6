"""Finding plugins without importing them: their folders and ``manifest.json`` files.

Plugins come from the bundled ``plugins`` package, from directories in ``plugin_paths``, and
from the ``syncstream.plugins`` entry point group (the entry point names a package that holds
a manifest). Each one found is a :class:`Found`: its manifest, or why it has none, and how to
import it later.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .manifest import Manifest, ManifestError, read_manifest

ENTRY_POINT_GROUP = "syncstream.plugins"
BUILTIN_PACKAGE = "plugins"


@dataclass(frozen=True)
class Found:
    name: str
    source: str
    load: Callable[[], Any]  # imports the plugin's module
    manifest: Manifest | None = None
    problem: str = ""  # why there is no manifest


def _found(name: str, directory: Path, source: str, load: Callable[[], Any]) -> Found:
    try:
        return Found(name, source, load, manifest=read_manifest(directory, name))
    except ManifestError as exc:
        return Found(name, source, load, problem=str(exc))


def _package_dirs(root: Path) -> list[Path]:
    return [
        entry
        for entry in sorted(root.iterdir())
        if (entry / "__init__.py").is_file() and not entry.name.startswith("_")
    ]


def _builtin() -> list[Found]:
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)  # finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return []
    return [
        _found(
            entry.name,
            entry,
            f"{BUILTIN_PACKAGE}.{entry.name}",
            partial(importlib.import_module, f"{BUILTIN_PACKAGE}.{entry.name}"),
        )
        for location in spec.submodule_search_locations
        for entry in _package_dirs(Path(location))
    ]


def _import_package_dir(entry: Path) -> Any:
    """Import a plugin package from a directory outside ``sys.path``."""
    module_name = f"syncstream_plugin_{entry.name}"
    init = entry / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        module_name, init, submodule_search_locations=[str(entry)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _from_dir(directory: Path) -> list[Found]:
    return [
        _found(entry.name, entry, str(entry), partial(_import_package_dir, entry))
        for entry in _package_dirs(directory)
    ]


def _from_entry_points() -> list[Found]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {ep.name} ({ep.value})"
        try:
            spec = importlib.util.find_spec(ep.module)
        except (ImportError, ValueError) as exc:
            spec, problem = None, f"cannot find module {ep.module!r}: {exc}"
        else:
            problem = f"module {ep.module!r} is not a package with a manifest.json"
        if spec is None or not spec.submodule_search_locations:
            found.append(Found(ep.name, source, ep.load, problem=problem))
            continue
        directory = Path(next(iter(spec.submodule_search_locations)))
        found.append(_found(ep.name, directory, source, ep.load))
    return found


def discover(plugin_paths: Sequence[Path] = ()) -> list[Found]:
    """Every plugin that can be found, none imported. A plugin path that is no directory
    raises ``NotADirectoryError`` (the config is wrong, not a plugin)."""
    found = _builtin()
    for directory in plugin_paths:
        if not directory.is_dir():
            raise NotADirectoryError(f"plugin path {directory} is not a directory")
        found += _from_dir(directory)
    return found + _from_entry_points()
