"""The one import surface for plugins: ``from syncstream.sdk import ...``.

What a plugin may rely on is named here; everything else in ``syncstream`` is private and may
change without notice. (A test scans ``plugins/`` for imports of anything else.)
"""

from . import __version__
from .api import (
    AuthLevel,
    Call,
    ScopedApi,
    dumps,
    json_response,
    parse_natural,
    read_json,
    validation_problem,
)
from .audit import Audit
from .auth import Auth, User
from .auth.passwords import hash_password, verify_password
from .bus import Event, EventBus
from .children import bound
from .errors import ErrorCode, Problem
from .filestore import FileStore
from .idempotency import idempotency_key
from .idempotency import in_use as idempotency_in_use
from .idempotency import reused as idempotency_reused
from .ids import new_id
from .media.readers import PacketCopy, QueuedReader
from .media.webrtc.packet_track import Packet, PacketTrack
from .oversight import Oversight
from .plugins import NoConfig, Plugin, PluginContext, PluginReport, PluginStatus
from .ratelimit import KeyedLimiter
from .realtime import (
    BrokerUnavailable,
    Gateway,
    Namespace,
    NodeTimeout,
    NodeUnavailable,
    Published,
)
from .realtime.absence import Absence
from .runtime.aiortc_tap import FrameTap, ask_keyframe, on_keyframe_request, tap_receiver
from .runtime.aiortc_tap import problem as sfu_problem
from .runtime.seams import SEAMS
from .services import ServiceRegistry
from .store import (
    Dialect,
    GroupCommit,
    IntegrityError,
    Migration,
    Queries,
    Row,
    Store,
    WriteInterrupted,
)
from .times import iso, iso_or_none, unix
from .workers import WorkerPool

__all__ = [
    "SEAMS",
    "Absence",
    "Audit",
    "Auth",
    "AuthLevel",
    "BrokerUnavailable",
    "Call",
    "Dialect",
    "ErrorCode",
    "Event",
    "EventBus",
    "FileStore",
    "FrameTap",
    "Gateway",
    "GroupCommit",
    "IntegrityError",
    "KeyedLimiter",
    "Migration",
    "Namespace",
    "NoConfig",
    "NodeTimeout",
    "NodeUnavailable",
    "Oversight",
    "Packet",
    "PacketCopy",
    "PacketTrack",
    "Plugin",
    "PluginContext",
    "PluginReport",
    "PluginStatus",
    "Problem",
    "Published",
    "Queries",
    "QueuedReader",
    "Row",
    "ScopedApi",
    "ServiceRegistry",
    "Store",
    "User",
    "WorkerPool",
    "WriteInterrupted",
    "__version__",
    "ask_keyframe",
    "bound",
    "dumps",
    "hash_password",
    "idempotency_in_use",
    "idempotency_key",
    "idempotency_reused",
    "iso",
    "iso_or_none",
    "json_response",
    "new_id",
    "on_keyframe_request",
    "parse_natural",
    "read_json",
    "sfu_problem",
    "tap_receiver",
    "unix",
    "validation_problem",
    "verify_password",
]
