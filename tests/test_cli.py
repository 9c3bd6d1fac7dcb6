"""The `syncstream` command as users run it: check-config, plugins, user create, serve + SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp

from .support import PASSWORD, spawn_node

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncstream", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_check_config_ok_and_errors(tmp_path: Path) -> None:
    result = cli("check-config", str(ROOT / "syncstream.yaml"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: lots\nplugins:\n  guestbook:\n    colour: red\n")
    result = cli("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: server.port: Input should be a valid integer" in result.stderr
    bad.write_text("plugins:\n  guestbook:\n    colour: red\n")
    result = cli("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: plugins.guestbook.colour: unknown key" in result.stderr


def test_plugins_lists_state(tmp_path: Path) -> None:
    result = cli("plugins")
    assert result.returncode == 0
    line = next(x for x in result.stdout.splitlines() if x.startswith("guestbook"))
    assert "1.0.0" in line and "disabled" in line


async def test_user_create_then_serve_login_and_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nserver: {{host: 127.0.0.1}}\nrtmp: {{enabled: false}}\n"
    )
    result = cli(
        "user",
        "create",
        "boss",
        "--admin",
        "--password-stdin",
        "--config",
        str(config),
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "created admin boss" in result.stdout
    result = cli(
        "user", "create", "boss", "--password-stdin", "--config", str(config), stdin=PASSWORD + "\n"
    )
    assert result.returncode == 1 and "taken" in result.stderr
    result = cli("user", "create", "gen", "--config", str(config))
    assert result.returncode == 0 and "generated password: " in result.stdout
    generated = result.stdout.split("generated password: ")[1].strip()

    node = spawn_node(config)
    try:
        await node.wait_ready()
        async with aiohttp.ClientSession() as session:
            for name, password, role in (("boss", PASSWORD, "admin"), ("gen", generated, "user")):
                async with session.post(
                    node.base + "/api/auth/login", json={"username": name, "password": password}
                ) as resp:
                    body = await resp.json()
                    assert resp.status == 200 and body["user"]["role"] == role
    finally:
        code = node.stop()
    out, err = node.proc.communicate()
    out = node.stdout_seen + out
    assert code == 0, err
    assert f"HTTP API      http://127.0.0.1:{node.port}/api/" in out
    assert f"ws://127.0.0.1:{node.port}/ws" in out
    assert "RTMP ingest" in out and "Dashboard" in out
    assert '"event": "server.stopped"' in err or '"event":"server.stopped"' in err


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nonsense: 1\n")
    result = cli("serve", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:1: nonsense: unknown key" in result.stderr
