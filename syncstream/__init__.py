"""SyncStream: a self-hosted streaming and realtime backend.

The public API for plugin authors: :class:`Plugin`, :class:`PluginContext`, :class:`Call`,
:class:`Problem`, :class:`Namespace`, :class:`User` and :func:`parse_natural`.
"""

__version__ = "0.1.0"

from .api import Call, parse_natural
from .auth import User
from .errors import Problem
from .plugins import Plugin, PluginContext
from .realtime import Namespace

__all__ = [
    "Call",
    "Namespace",
    "Plugin",
    "PluginContext",
    "Problem",
    "User",
    "__version__",
    "parse_natural",
]
