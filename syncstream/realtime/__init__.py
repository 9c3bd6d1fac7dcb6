"""Realtime: the ``/ws`` gateway and the engines (memory or Redis) behind it."""

from .client import Client
from .control import ControlChannel, NodeTimeout, NodeUnavailable
from .engine import Broker, BrokerUnavailable, HistoryResult, PresenceManager, Publication
from .engines import create_engine
from .gateway import Gateway
from .namespace import Namespace, Published, admins, anyone

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Client",
    "ControlChannel",
    "Gateway",
    "HistoryResult",
    "Namespace",
    "NodeTimeout",
    "NodeUnavailable",
    "PresenceManager",
    "Publication",
    "Published",
    "admins",
    "anyone",
    "create_engine",
]
