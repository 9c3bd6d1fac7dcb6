"""From manifests to plugins ready to set up: enable, order by dependencies, import, configure.

Each step that fails costs that plugin alone (and the plugins that depend on it): it is
marked ``failed`` in the :class:`PluginReport` with the stage and the reason, and the rest go
on. Only a failing plugin whose manifest says ``required`` stops the node (see
:meth:`Plan.required_failure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..config import ConfigError, ConfigIssue, LoadedConfig
from .contract import Plugin, PluginError
from .discovery import Found, discover
from .manifest import Manifest
from .report import PluginReport, PluginStatus


@dataclass(frozen=True)
class Ready:
    """A plugin imported and configured, waiting for its setup."""

    manifest: Manifest
    plugin: Plugin
    config: Any
    setup_timeout: float  # seconds

    @property
    def name(self) -> str:
        return self.manifest.name


@dataclass
class Plan:
    report: PluginReport = field(default_factory=PluginReport)
    ready: list[Ready] = field(default_factory=list)  # in dependency order

    def required_failure(self) -> PluginError | None:
        """The first required plugin that failed, as the error that stops start-up."""
        for status in self.report:
            if status.required and status.state == "failed":
                return PluginError(status.name, status.stage, status.reason)
        return None


def _is_enabled(manifest: Manifest, section: dict[str, Any]) -> bool:
    return bool(section.get("enabled", manifest.enabled_by_default))


# Keys of every plugin's section that the loader reads (the rest is the plugin's config).
SWITCHES = ("enabled", "required")
LOADER_KEYS = (*SWITCHES, "setup_timeout")


def _section_issues(found: dict[str, Found], loaded: LoadedConfig) -> list[ConfigIssue]:
    """Sections naming no plugin are the operator's typo, refused like any unknown key; so are
    switches that are not true or false."""
    issues = []
    for name, section in loaded.settings.plugins.items():
        where = f"plugins.{name}"
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            message = f"no such plugin (known: {known})"
            issues.append(ConfigIssue(loaded.source, where, message, loaded.lines.get(where)))
            continue
        for key in SWITCHES:
            if not isinstance((section or {}).get(key, False), bool):
                path, line = f"{where}.{key}", loaded.lines.get(f"{where}.{key}")
                issues.append(ConfigIssue(loaded.source, path, "must be true or false", line))
    return issues


def _by_name(all_found: list[Found], report: PluginReport) -> dict[str, Found]:
    found: dict[str, Found] = {}
    for item in all_found:
        if item.name in found:
            report.fail(
                item.name, "load", f"found twice: {found[item.name].source} and {item.source}"
            )
            continue
        found[item.name] = item
        manifest = item.manifest
        status = report.add(PluginStatus(item.name, item.source))
        if manifest is None:
            report.fail(item.name, "read its manifest", item.problem)
            continue
        status.version, status.description = manifest.version, manifest.description
    return found


def _absent(report: PluginReport, name: str) -> str:
    """Why a dependency is not among the enabled plugins."""
    status = report.get(name)
    if status is None:
        return "is not installed"
    return "failed" if status.state == "failed" else "is not enabled"


def _dependency_order(enabled: dict[str, Manifest], report: PluginReport) -> list[str]:
    """Names in an order where every plugin comes after its dependencies; a plugin whose
    dependency is not enabled, or that sits on a cycle, fails (and so do its dependents)."""
    ordered: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> bool:
        if state.get(name) in ("done", "failed"):
            return state[name] == "done"
        if state.get(name) == "visiting":
            cycle = " -> ".join((*chain[chain.index(name) :], name))
            report.fail(name, "resolve its dependencies", f"dependency cycle: {cycle}")
            state[name] = "failed"
            return False
        state[name] = "visiting"
        for dep in enabled[name].dependencies:
            if dep not in enabled:
                reason = f"it depends on plugin {dep!r}, which {_absent(report, dep)}"
            elif not visit(dep, (*chain, name)):
                reason = f"it depends on plugin {dep!r}, which failed"
            else:
                continue
            if state.get(name) != "failed":
                report.fail(name, "resolve its dependencies", reason)
            state[name] = "failed"
            return False
        if state.get(name) == "failed":  # a cycle through this plugin was found below it
            return False
        state[name] = "done"
        ordered.append(name)
        return True

    for name in sorted(enabled):
        visit(name, ())
    return ordered


def _import(item: Found) -> Plugin:
    module = item.load()
    plugin = getattr(module, "plugin", None)
    if not isinstance(plugin, Plugin):
        raise TypeError("its module defines no `plugin = Plugin(setup=...)`")
    return plugin


def plan(
    loaded: LoadedConfig, *, check_disabled: bool = False, report: PluginReport | None = None
) -> Plan:
    """Read every manifest, then import and configure the enabled plugins in dependency
    order (and, with ``check_disabled``, the disabled ones that have options, to check them).
    Unknown plugin sections and bad plugin paths raise :class:`ConfigError`; any plugin's own
    failure is recorded in the plan's report."""
    result = Plan(report or PluginReport())
    try:
        all_found = discover(loaded.settings.plugin_paths)
    except NotADirectoryError as exc:
        lines = loaded.lines.get("plugin_paths")
        raise ConfigError([ConfigIssue(loaded.source, "plugin_paths", str(exc), lines)]) from None
    found = _by_name(all_found, result.report)
    issues = _section_issues(found, loaded)
    if issues:
        raise ConfigError(issues)
    enabled: dict[str, Manifest] = {}
    for name, item in found.items():
        status = result.report.get(name)
        assert status is not None
        section = loaded.settings.plugins.get(name) or {}
        status.required = section.get("required", False) or bool(
            item.manifest and item.manifest.required
        )
        if item.manifest is None or status.state == "failed":
            continue
        if _is_enabled(item.manifest, section):
            enabled[name] = item.manifest
        else:
            status.state = "disabled"
            if check_disabled and set(section) - set(LOADER_KEYS):
                _load(item, item.manifest, loaded, result.report)
    for name in _dependency_order(enabled, result.report):
        if ready := _load(found[name], enabled[name], loaded, result.report):
            result.ready.append(ready)
    return result


def _load(
    item: Found, manifest: Manifest, loaded: LoadedConfig, report: PluginReport
) -> Ready | None:
    name = manifest.name
    if failed := report.failed_among(manifest.dependencies):
        report.fail(
            name, "resolve its dependencies", f"it depends on plugin {failed!r}, which failed"
        )
        return None
    try:
        plugin = _import(item)
    except Exception as exc:
        report.fail(name, "import", f"{type(exc).__name__}: {exc}")
        return None
    section = dict(loaded.settings.plugins.get(name) or {})
    for key in SWITCHES:
        section.pop(key, None)
    timeout = section.pop("setup_timeout", loaded.settings.plugin_setup_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        where = f"plugins.{name}.setup_timeout"
        issue = ConfigIssue(loaded.source, where, "must be a number of seconds above 0",
                            loaded.lines.get(where))  # fmt: skip
        report.fail(name, "configure", str(issue))
        return None
    try:
        config = plugin.config.model_validate(section)
    except ValidationError as exc:
        report.fail(name, "configure", "; ".join(str(i) for i in loaded.plugin_issues(name, exc)))
        return None
    return Ready(manifest, plugin, config, float(timeout))
