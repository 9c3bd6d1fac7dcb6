"""Settings: YAML file + ``SYNCSTREAM_*`` environment overrides -> typed, validated models.

Every key has a default, so an empty file (or none) runs a single node on SQLite, local disk
and the in-process bus. Unknown keys and wrong types are refused with the file, the key path,
the line and the reason. Environment variables use ``__`` between levels:
``SYNCSTREAM_SERVER__PORT=9000`` sets ``server.port``; values are read as YAML scalars.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "SYNCSTREAM_"
CONFIG_ENV = "SYNCSTREAM_CONFIG"
DEFAULT_FILE = "syncstream.yaml"


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str = Field("", description="Base URL shown in the banner; derived when empty")
    max_body_bytes: int = Field(1 << 20, gt=0, description="Largest JSON request body")
    shutdown_timeout: float = Field(10.0, ge=0)
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])


class RtmpSettings(Section):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(1935, ge=0, le=65535)
    fast_reader: bool = Field(
        True, description="Parse each read in the protocol callback; false: asyncio streams"
    )


class Rendition(Section):
    """One rung of the optional FFmpeg bitrate ladder."""

    name: str = Field(pattern=r"^[a-z0-9_-]{1,16}$")
    height: int = Field(ge=16, le=4320)
    video_kbps: int = Field(ge=50, le=100_000)
    audio_kbps: int = Field(128, ge=16, le=512)


class LiveSettings(Section):
    app: str = Field("live", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="RTMP application name")
    segment_seconds: float = Field(2.0, ge=0.5, le=30, description="HLS target segment length")
    part_seconds: float = Field(0.2, ge=0.05, le=2, description="LL-HLS part length")
    window_segments: int = Field(8, ge=3, le=100, description="Segments kept in the playlist")
    grace_seconds: float = Field(10.0, ge=0, description="A publisher may reconnect this long")
    takeover: bool = Field(False, description="A second publisher replaces the first")
    idle_timeout_seconds: float = Field(15.0, gt=0, description="Silent publishers are dropped")
    on_publish_url: str = Field("", description="Webhook asked before a publish (non-2xx refuses)")
    on_unpublish_url: str = Field("", description="Webhook told when a stream ends")
    webhook_timeout_seconds: float = Field(3.0, gt=0)
    thumbnail_seconds: float = Field(5.0, ge=0, description="Snapshots at most this often; 0: none")
    thumbnail_width: int = Field(480, ge=16, le=3840)
    stats_seconds: float = Field(2.0, gt=0, description="Stats on the live:<stream> topic")
    record: bool = Field(False, description="Record streams unless a stream's own setting says")
    ladder: list[Rendition] = Field(
        default_factory=list, description="FFmpeg renditions for every stream; empty = off"
    )
    record_format: Literal["mp4", "ts"] = "mp4"
    viewer_timeout_seconds: float = Field(10.0, gt=0, description="An HLS viewer counts this long")
    muxer: Literal["native", "pyav"] = Field(
        "native", description="fMP4 writer of the HLS parts: our own, or PyAV's mp4 muxer"
    )
    hls_fast_path: bool = Field(
        True, description="Answer live HLS GETs in the node's own protocol; false: all in aiohttp"
    )


class StoreSettings(Section):
    url: str = Field("", description="postgresql://... for PostgreSQL; empty = SQLite in data_dir")
    schema_name: str = Field("", alias="schema", description="PostgreSQL schema (search_path)")
    pool_size: int = Field(10, ge=1, le=200)


class ClusterSettings(Section):
    redis_url: str = Field("", description="redis://... to share the bus with other nodes")
    node_id: str = Field("", description="Unique per node; generated when empty")
    prefix: str = Field("syncstream", min_length=1, description="Redis key/channel prefix")


class AuthSettings(Section):
    registration: bool = True
    token_ttl_seconds: int = Field(30 * 86400, gt=0)
    password_min_length: int = Field(8, ge=4, le=128)
    login_max_failures: int = Field(5, ge=1)
    login_window_seconds: int = Field(900, gt=0)
    lockout_seconds: int = Field(900, gt=0)
    login_per_ip_per_minute: int = Field(30, gt=0)
    session_cache_seconds: float = Field(
        10.0, ge=0, description="0 checks every request in the store"
    )


class RealtimeSettings(Section):
    heartbeat_seconds: float = Field(20.0, gt=0)
    send_buffer_bytes: int = Field(
        1 << 20, ge=4096, description="A socket whose unsent data exceeds this is dropped"
    )
    history_size: int = Field(200, ge=0)
    history_ttl_seconds: int = Field(600, gt=0)
    presence_ttl_seconds: int = Field(60, gt=0)
    rate_per_second: float = Field(20.0, gt=0)
    rate_burst: int = Field(50, ge=1)
    max_message_bytes: int = Field(64 * 1024, ge=256)
    max_subscriptions: int = Field(200, ge=1)


class RuntimeSettings(Section):
    """Switches for the performance seams (``syncstream/runtime/``): each may be turned off,
    and each falls back to the plain way by itself when its library changed."""

    gc_policy: bool = Field(True, description="Freeze long-lived objects; young GCs on a timer")
    gc_sweep_seconds: float = Field(
        900.0, gt=0, description="How often objects frozen after full collections are swept"
    )
    ws_text_tap: bool = Field(
        True, description="Hand WebSocket text frames to the gateway inside aiohttp's reader"
    )
    sqlite_inline_writes: bool = Field(
        True, description="Commit small SQLite write batches on the event loop's thread"
    )


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    access_log: bool = True


class MetricsSettings(Section):
    enabled: bool = True
    loop_lag_interval: float = Field(0.25, gt=0)


class Settings(Section):
    """The whole configuration. Plugin sections are validated by the plugin loader."""

    data_dir: Path = Path("data")
    server: ServerSettings = ServerSettings()
    rtmp: RtmpSettings = RtmpSettings()
    live: LiveSettings = LiveSettings()
    store: StoreSettings = StoreSettings()
    cluster: ClusterSettings = ClusterSettings()
    auth: AuthSettings = AuthSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    plugin_paths: list[Path] = Field(default_factory=list)
    plugin_setup_timeout: float = Field(60.0, gt=0)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = "localhost" if self.server.host in ("0.0.0.0", "::", "") else self.server.host
        return f"http://{host}:{self.server.port}"

    @property
    def clustered(self) -> bool:
        return bool(self.cluster.redis_url)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in the configuration, located as precisely as we can."""

    source: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path or '<root>'}: {self.message}"


class ConfigError(Exception):
    """Raised when the configuration cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("invalid configuration:\n" + "\n".join(f"  {i}" for i in issues))


def _line_map(text: str) -> dict[str, int]:
    """Map dotted key paths of a YAML document to their 1-based line numbers."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = f"{prefix}.{key.value}" if prefix else str(key.value)
                lines[path] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}.{i}"
                lines[path] = item.start_mark.line + 1
                walk(item, path)

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def _env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, Any]]:
    """``SYNCSTREAM_A__B=v`` -> {("a", "b"): ("SYNCSTREAM_A__B", parsed v)}."""
    found: dict[tuple[str, ...], tuple[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        found[path] = (name, value)
    return found


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def find_config_file(
    explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path | None:
    """The config file to read: the explicit one, ``$SYNCSTREAM_CONFIG``, or ./syncstream.yaml."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def load_raw(
    file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], str, dict[str, int], dict[str, str]]:
    """Read the YAML file and apply env overrides; no validation yet.

    Returns (data, source name, key path -> line, key path -> env var name).
    """
    environ = os.environ if environ is None else environ
    path = find_config_file(file, environ)
    data: dict[str, Any] = {}
    source = "<defaults>"
    lines: dict[str, int] = {}
    if path is not None:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                [ConfigIssue(source, "", f"cannot read file: {exc.strerror}")]
            ) from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(
                [ConfigIssue(source, "", f"not valid YAML: {problem}", line)]
            ) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError([ConfigIssue(source, "", "the top level must be a mapping of keys")])
        data = loaded
        lines = _line_map(text)
    env_paths: dict[str, str] = {}
    for key_path, (var, value) in _env_overrides(environ).items():
        _set_path(data, key_path, value)
        env_paths[".".join(key_path)] = var
    return data, source, lines, env_paths


def issues_from_validation(
    exc: ValidationError,
    source: str,
    lines: Mapping[str, int],
    env_paths: Mapping[str, str],
    prefix: str = "",
) -> list[ConfigIssue]:
    """Turn pydantic errors into located :class:`ConfigIssue` items."""
    issues = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif "input" in err and not isinstance(err["input"], dict | list):
            message = f"{message} (got {err['input']!r})"
        where = source
        for var_path, var in env_paths.items():
            if path == var_path or path.startswith(var_path + "."):
                where = f"environment variable {var}"
        line = lines.get(path) if where == source else None
        issues.append(ConfigIssue(where, path, message, line))
    return issues


@dataclass(frozen=True)
class LoadedConfig:
    """Validated core settings plus what is needed to locate plugin-section errors later."""

    settings: Settings
    source: str
    lines: Mapping[str, int]
    env_paths: Mapping[str, str]

    def plugin_issues(self, name: str, exc: ValidationError) -> list[ConfigIssue]:
        return issues_from_validation(
            exc, self.source, self.lines, self.env_paths, prefix=f"plugins.{name}"
        )


def load_config(
    file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Load and validate settings. ``overrides`` (dotted keys) win over file and env (tests)."""
    data, source, lines, env_paths = load_raw(file, environ)
    for dotted, value in (overrides or {}).items():
        _set_path(data, tuple(dotted.split(".")), value)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(exc, source, lines, env_paths)) from exc
    return LoadedConfig(settings, source, lines, env_paths)
