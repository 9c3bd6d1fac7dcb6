"""``syncstream serve | user | check-config | plugins``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from . import __version__
from .config import ConfigError, LoadedConfig, load_config
from .errors import Problem
from .plugins import PluginError, PluginReport, PluginStatus, plan

EXIT_CONFIG = 2
EXIT_FAILED = 1


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
        return asyncio.run(coro)
    return uvloop.run(coro)


def _load(args: argparse.Namespace) -> LoadedConfig:
    return load_config(getattr(args, "config", None))


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import Server
    from .logs import configure_logging

    loaded = _load(args)
    configure_logging(loaded.settings.logging)
    _run(Server(loaded).run_until_signal())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = load_config(args.file or args.config)
    report = plan(loaded, check_disabled=True, report=PluginReport(log_failures=False)).report
    failed = [s for s in report if s.state == "failed"]
    for status in failed:
        print(f"syncstream: {_failure(status)}", file=sys.stderr)
    if failed:
        return EXIT_CONFIG
    names = ", ".join(report.named("loaded")) or "none"
    print(f"{loaded.source}: OK (plugins enabled: {names})")
    return 0


def _failure(status: PluginStatus) -> str:
    required = " (required: the node does not start)" if status.required else ""
    return f"{PluginError(status.name, status.stage, status.reason)}{required}"


def cmd_plugins(args: argparse.Namespace) -> int:
    """What the node would run with this config: manifests read, the enabled plugins imported
    and configured (not set up: failures of a setup show on the node's dashboard and log)."""
    loaded = _load(args)
    report = plan(loaded, check_disabled=True, report=PluginReport(log_failures=False)).report
    rows = [("NAME", "VERSION", "STATE", "SOURCE", "DESCRIPTION")]
    for s in report:
        state = "enabled" if s.state == "loaded" else s.state
        rows.append((s.name, s.version or "?", state + (" (required)" if s.required else ""),
                     s.source, s.description))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    for status in report:
        if status.state == "failed":
            print(f"\n{status.name}: failed to {status.stage}: {status.reason}")
    return 0


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?) from stdin, an interactive prompt, or a random one."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise Problem(422, "password_mismatch", "the passwords differ")
        return first, False
    return secrets.token_urlsafe(12), True


async def _user_create(loaded: LoadedConfig, name: str, password: str, admin: bool) -> str:
    from .app import make_node_id, open_foundation

    foundation = await open_foundation(loaded.settings, make_node_id())
    try:
        user = await foundation.auth.create_user(name, password, "admin" if admin else "user")
        return user.id
    finally:
        await foundation.close()


async def _user_password(loaded: LoadedConfig, name: str, password: str) -> None:
    from .app import make_node_id, open_foundation

    foundation = await open_foundation(loaded.settings, make_node_id())
    try:
        user = await foundation.auth.find_user(name)
        if user is None:
            raise Problem(404, "user_not_found", f"no user named {name!r}")
        await foundation.auth.reset_password(user.id, password, via="cli")
    finally:
        await foundation.close()


def cmd_user(args: argparse.Namespace) -> int:
    loaded = _load(args)
    password, generated = _read_password(args)
    if args.user_command == "create":
        user_id = _run(_user_create(loaded, args.name, password, args.admin))
        role = "admin" if args.admin else "user"
        print(f"created {role} {args.name} (id {user_id})")
    else:
        _run(_user_password(loaded, args.name, password))
        print(f"password of {args.name} changed; its tokens are revoked")
    if generated:
        print(f"generated password: {password}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="syncstream", description="SyncStream streaming and realtime daemon"
    )
    root.add_argument("--version", action="version", version=f"syncstream {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", help="config file (default: $SYNCSTREAM_CONFIG or ./syncstream.yaml)"
    )
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", parents=[common], help="run the server").set_defaults(func=cmd_serve)
    check = sub.add_parser("check-config", parents=[common], help="validate a config file and exit")
    check.add_argument("file", nargs="?")
    check.set_defaults(func=cmd_check_config)
    sub.add_parser("plugins", parents=[common], help="list plugins and their state").set_defaults(
        func=cmd_plugins
    )
    user = sub.add_parser("user", help="manage accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    for name, text in (("create", "create an account"), ("passwd", "set an account's password")):
        cmd = user_sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("name")
        cmd.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        if name == "create":
            cmd.add_argument("--admin", action="store_true", help="give the account the admin role")
        cmd.set_defaults(func=cmd_user)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"syncstream: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PluginError as exc:
        print(f"syncstream: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Problem as exc:
        print(f"syncstream: {exc.detail} ({exc.code})", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
