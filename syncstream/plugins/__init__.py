"""Plugins: manifests read before import, dependency order, setups isolated from each other
(after Home Assistant's integrations, kept smaller). See :mod:`.contract` for what a plugin
is, :mod:`.loader` and :mod:`.lifecycle` for how one is loaded and started."""

from .contract import NoConfig, Plugin, PluginContext, PluginError
from .discovery import ENTRY_POINT_GROUP, discover
from .lifecycle import set_up
from .loader import Plan, Ready, plan
from .manifest import MANIFEST, Manifest
from .report import PluginReport, PluginStatus

__all__ = [
    "ENTRY_POINT_GROUP",
    "MANIFEST",
    "Manifest",
    "NoConfig",
    "Plan",
    "Plugin",
    "PluginContext",
    "PluginError",
    "PluginReport",
    "PluginStatus",
    "Ready",
    "discover",
    "plan",
    "set_up",
]
