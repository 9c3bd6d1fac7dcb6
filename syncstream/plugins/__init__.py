"""Plugins: manifests read before import, dependency order, setups isolated from each other
(after Home Assistant's integrations, kept smaller). See :mod:`.contract` for what a plugin
is, :mod:`.loader` and :mod:`.lifecycle` for how one is loaded and started, :mod:`.report`
for how its state is shown."""

from .contract import NoConfig, Plugin, PluginContext, PluginError
from .lifecycle import set_up
from .loader import Plan, Ready, plan
from .manifest import Manifest
from .report import PluginReport, PluginStatus

__all__ = [
    "Manifest",
    "NoConfig",
    "Plan",
    "Plugin",
    "PluginContext",
    "PluginError",
    "PluginReport",
    "PluginStatus",
    "Ready",
    "plan",
    "set_up",
]
