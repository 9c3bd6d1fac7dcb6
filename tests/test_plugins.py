"""Plugin manifests, dependency order, failure isolation (import, config, setup, timeout,
required plugins), what the node reports of failed plugins, and the example plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from syncstream.config import ConfigError, load_config
from syncstream.plugins import PluginError, plan

from .support import eventually, running, spawn_node, write_plugin

ROOT = Path(__file__).resolve().parent.parent


def make_plugin(root: Path, name: str, setup: str = "pass", **manifest: object) -> Path:
    """A plugin whose setup runs ``setup`` (one line)."""
    code = (
        "from syncstream.sdk import Plugin\n"
        f"async def setup(ctx):\n    {setup}\n"
        "plugin = Plugin(setup=setup)\n"
    )
    return write_plugin(root, name, code, **manifest)


def loaded_with(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path, environ={})


def states(tmp_path: Path, text: str) -> dict[str, tuple[str, str, str]]:
    """name -> (state, stage, reason) as the loader leaves them (no setup)."""
    return {s.name: (s.state, s.stage, s.reason) for s in plan(loaded_with(tmp_path, text)).report}


def test_builtin_example_plugin_is_read_from_its_manifest_and_off_by_default(
    tmp_path: Path,
) -> None:
    default = plan(loaded_with(tmp_path, ""))
    guestbook = default.report.get("guestbook")
    assert guestbook is not None and guestbook.version == "1.0.0"
    assert guestbook.state == "disabled"
    assert "files" in [r.name for r in default.ready]
    enabled = plan(loaded_with(tmp_path, "plugins: {guestbook: {enabled: true, max_length: 9}}"))
    (ready,) = [r for r in enabled.ready if r.name == "guestbook"]
    assert ready.config.max_length == 9


def test_dependencies_set_the_order_and_a_failure_takes_its_dependents(tmp_path: Path) -> None:
    root = tmp_path / "more"
    make_plugin(root, "alpha", dependencies=["beta"])
    make_plugin(root, "beta")
    make_plugin(root, "gamma", dependencies=["zeta"])  # not installed
    make_plugin(root, "delta", dependencies=["gamma"])
    make_plugin(root, "epsilon", dependencies=["guestbook"])  # off by default
    make_plugin(root, "loop1", dependencies=["loop2"])
    make_plugin(root, "loop2", dependencies=["loop1"])
    result = plan(loaded_with(tmp_path, f"plugin_paths: [{root}]"))
    order = [r.name for r in result.ready]
    assert order.index("beta") < order.index("alpha")
    report = {s.name: s for s in result.report}
    assert report["gamma"].state == "failed"
    assert report["gamma"].reason == "it depends on plugin 'zeta', which is not installed"
    assert report["delta"].reason == "it depends on plugin 'gamma', which failed"
    assert report["epsilon"].reason == "it depends on plugin 'guestbook', which is not enabled"
    assert "dependency cycle" in report["loop1"].reason + report["loop2"].reason
    assert {"gamma", "delta", "epsilon", "loop1", "loop2"}.isdisjoint(order)


def test_bad_manifests_and_broken_imports_fail_by_name_and_the_rest_load(tmp_path: Path) -> None:
    root = tmp_path / "more"
    write_plugin(root, "broken", "import does_not_exist_anywhere\n")
    write_plugin(root, "empty", "x = 1\n")
    (make_plugin(root, "nojson") / "manifest.json").write_text("{name: nojson")
    (make_plugin(root, "noname") / "manifest.json").write_text('{"name": "other", "version": "1"}')
    (make_plugin(root, "nomanifest") / "manifest.json").unlink()
    make_plugin(root, "fine")
    found = states(tmp_path, f"plugin_paths: [{root}]")
    assert found["broken"][:2] == ("failed", "import")
    assert "ModuleNotFoundError" in found["broken"][2]
    assert found["empty"][:2] == ("failed", "import")
    assert "defines no `plugin = Plugin" in found["empty"][2]
    for name, why in (("nojson", "not JSON"), ("noname", "differs"), ("nomanifest", "missing")):
        assert found[name][:2] == ("failed", "read its manifest"), found[name]
        assert why in found[name][2] and "manifest.json" in found[name][2]
    assert found["fine"][0] == "loaded" and found["files"][0] == "loaded"


def test_config_errors_are_the_plugins_failure_and_unknown_sections_the_operators(
    tmp_path: Path,
) -> None:
    found = states(tmp_path, "plugins:\n  guestbook:\n    enabled: true\n    max_length: lots\n")
    state, stage, reason = found["guestbook"]
    assert (state, stage) == ("failed", "configure")
    assert ":4: plugins.guestbook.max_length:" in reason
    with pytest.raises(ConfigError, match="no such plugin"):
        plan(loaded_with(tmp_path, "plugins: {nosuch: {}}"))
    with pytest.raises(ConfigError, match=r"plugins\.guestbook\.required: must be true or false"):
        plan(loaded_with(tmp_path, "plugins: {guestbook: {required: maybe}}"))
    required = plan(loaded_with(tmp_path, "plugins: {guestbook: {enabled: true, required: true}}"))
    assert required.report.get("guestbook").required  # type: ignore[union-attr]


HANGS = "import asyncio; await asyncio.Event().wait()"


async def test_failed_plugins_are_reported_and_the_rest_serve(tmp_path: Path) -> None:
    root = tmp_path / "more"
    marker = tmp_path / "undone"
    write_plugin(
        root,
        "faulty",
        "from pathlib import Path\n"
        "from syncstream.sdk import Namespace, Plugin\n"
        "async def setup(ctx):\n"
        "    ctx.gateway.register(Namespace('faulty'))\n"
        "    async def figures(): return {}\n"
        "    ctx.oversight.add_figures('faulty', figures)\n"
        "    @ctx.api.route('GET', '/ping', auth='public')\n"
        "    async def ping(call): return {'pong': True}\n"
        "    async def undo(): Path(" + repr(str(marker)) + ").write_text('undone')\n"
        "    ctx.on_cleanup(undo)\n"
        "    ctx.announce('Faulty', 'never shown')\n"
        "    raise ValueError('no frobs')\n"
        "plugin = Plugin(setup=setup)\n",
    )
    make_plugin(root, "sleepy", HANGS)
    make_plugin(root, "after", dependencies=["faulty"])
    write_plugin(root, "broken", "import does_not_exist_anywhere\n")
    with capture_logs() as logs:
        async with running(
            tmp_path, plugin_paths=[str(root)], **{"plugins.sleepy.setup_timeout": 0.5}
        ) as c:
            assert marker.read_text() == "undone"  # the half-set-up plugin's cleanups ran
            core = c.server.core  # type: ignore[union-attr]
            assert core is not None and "faulty" not in core.gateway.namespaces
            assert "faulty" not in core.oversight.sources() and "files" in core.oversight.sources()
            status, body, _ = await c.call("GET", "/readyz")
            assert status == 200 and body["status"] == "ready"
            assert body["plugins"]["failed"] == {
                "faulty": "set up",
                "sleepy": "set up",
                "after": "resolve its dependencies",
                "broken": "import",
            }
            assert "guestbook" in body["plugins"]["running"]
            status, body, _ = await c.call("GET", "/api/faulty/ping")
            assert status == 503 and body["code"] == "plugin_unavailable"
            # Plugins that failed before adding routes: their paths answer the same
            for path in ("/api/broken/anything", "/api/sleepy/", "/api/after/x/y"):
                status, body, _ = await c.call("POST", path)
                assert status == 503 and body["code"] == "plugin_unavailable", (path, body)
            status, body, _ = await c.call("GET", "/api/nosuchplugin/x")
            assert status == 404 and body["code"] == "not_found"
            status, _, _ = await c.call("GET", "/api/guestbook/entries", await c.register("ann"))
            assert status == 200  # the others serve
            banner = c.server.banner()  # type: ignore[union-attr]
            assert "Failed        " in banner and "faulty (set up)" in banner
            assert "never shown" not in banner

            admin = await c.admin()
            status, body, _ = await c.call("GET", "/api/admin/plugins", admin)
            listed = {p["name"]: p for p in body["plugins"]}
            assert listed["faulty"]["reason"] == "ValueError: no frobs"
            assert "longer than 0.5 s" in listed["sleepy"]["reason"]
            assert listed["files"]["state"] == "running"
            assert listed["files"]["script"] == "/admin/plugins/files.js"
            assert listed["faulty"]["script"] is None
            status, script, _ = await c.call("GET", "/admin/plugins/files.js")
            assert status == 200 and "SyncStreamAdmin.extend" in script
            status, _, _ = await c.call("GET", "/admin/plugins/faulty.js")
            assert status == 404
    failures = {e["plugin"]: e for e in logs if e["event"] == "plugin.failed"}
    assert set(failures) == {"faulty", "sleepy", "after", "broken"}
    assert failures["faulty"]["reason"] == "ValueError: no frobs"


async def test_a_required_plugin_that_fails_stops_startup_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "more"
    make_plugin(root, "vital", "raise ValueError('no frobs')", required=True)
    with pytest.raises(PluginError, match="plugin 'vital' failed to set up: ValueError: no frobs"):
        async with running(tmp_path, plugin_paths=[str(root)]):
            pass
    (root / "vital" / "__init__.py").write_text("import does_not_exist_anywhere\n")
    with pytest.raises(PluginError, match="plugin 'vital' failed to import"):
        async with running(tmp_path, plugin_paths=[str(root)]):
            pass


async def test_failing_migration_names_the_plugin(tmp_path: Path) -> None:
    root = tmp_path / "more"
    write_plugin(
        root,
        "badsql",
        "from syncstream.sdk import Plugin\n"
        "async def setup(ctx): pass\n"
        "plugin = Plugin(setup=setup, migrations=['CREATE TABLE (oops'])\n",
        required=True,
    )
    with pytest.raises(PluginError, match="plugin 'badsql' failed to migrate"):
        async with running(tmp_path, plugin_paths=[str(root)]):
            pass


async def test_plugin_context_cleanup_and_banner(tmp_path: Path) -> None:
    root = tmp_path / "more"
    marker = tmp_path / "cleaned"
    write_plugin(
        root,
        "tidy",
        f"""
from pathlib import Path
from syncstream.sdk import Plugin
async def setup(ctx):
    ctx.announce('Tidy', 'http://example/tidy')
    async def done():
        Path({str(marker)!r}).write_text(ctx.name)
    ctx.on_cleanup(done)
plugin = Plugin(setup=setup)
""",
    )
    async with running(tmp_path, plugin_paths=[str(root)]) as c:
        banner = c.server.banner()  # type: ignore[union-attr]
        assert "Tidy          http://example/tidy" in banner
        assert "guestbook" in banner and "tidy" in banner
        assert "Failed" not in banner
    assert marker.read_text() == "tidy"


async def test_guestbook_end_to_end(tmp_path: Path, backend: str) -> None:
    async with running(tmp_path, backend, **{"plugins.guestbook.max_length": 20}) as c:
        token = await c.register("rita")
        watcher = await c.ws(await c.register("sam"))
        await watcher.request("subscribe", "guestbook:main")
        ids = []
        for n in range(5):
            status, body, _ = await c.call(
                "POST", "/api/guestbook/entries", token, json={"text": f"hi {n}"}
            )
            assert status == 201 and body["username"] == "rita"
            ids.append(body["id"])
        events = await watcher.events(5)
        assert [e["data"]["entry"]["text"] for e in events] == [f"hi {n}" for n in range(5)]
        status, page, _ = await c.call("GET", "/api/guestbook/entries?limit=3", token)
        assert [e["id"] for e in page["entries"]] == ids[::-1][:3]
        status, page2, _ = await c.call(
            "GET", f"/api/guestbook/entries?limit=3&before={page['next']}", token
        )
        assert [e["id"] for e in page2["entries"]] == ids[::-1][3:]
        assert page2["next"] is None
        status, body, _ = await c.call(
            "POST", "/api/guestbook/entries", token, json={"text": "x" * 21}
        )
        assert status == 422 and body["code"] == "invalid_entry"
        status, body, _ = await c.call(
            "POST", "/api/guestbook/entries", token, json={"text": "ok", "book": "../up"}
        )
        assert status == 422 and body["code"] == "validation_failed"
        status, body, _ = await c.call("POST", "/api/guestbook/entries", json={"text": "anon"})
        assert status == 401


def test_entry_point_plugins_are_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed distribution that declares a `syncstream.plugins` entry point is found,
    its manifest read from the package before the package is imported."""
    site = tmp_path / "site"
    dist = site / "syncstream_hello-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: syncstream-hello\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[syncstream.plugins]\nhello = syncstream_hello\nhello_mod = syncstream_hello_mod\n"
    )
    write_plugin(site, "syncstream_hello", "raise RuntimeError('imported too early')\n")
    (site / "syncstream_hello" / "manifest.json").write_text(
        json.dumps({"name": "hello", "version": "0.3", "enabled_by_default": False})
    )
    (site / "syncstream_hello_mod.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(site))
    found = {s.name: s for s in plan(loaded_with(tmp_path, "")).report}
    assert found["hello"].version == "0.3" and found["hello"].state == "disabled"
    assert found["hello"].source.startswith("entry point hello")
    assert found["hello_mod"].state == "failed"
    assert "not a package with a manifest.json" in found["hello_mod"].reason


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncstream", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


async def test_a_real_node_serves_without_its_failed_plugins(tmp_path: Path) -> None:
    """`syncstream serve` with a broken and a hanging plugin: it serves, /readyz names them,
    and `syncstream plugins` (which needs no running node) tells why the broken one fails."""
    root = tmp_path / "more"
    write_plugin(root, "broken", "import does_not_exist_anywhere\n")
    make_plugin(root, "sleepy", HANGS)
    config = tmp_path / "node.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nserver: {{host: 127.0.0.1}}\nrtmp: {{enabled: false}}\n"
        f"plugin_paths: [{root}]\nplugins: {{sleepy: {{setup_timeout: 0.5}}}}\n"
    )
    node = spawn_node(config)
    try:
        await node.wait_ready()
        async with aiohttp.ClientSession() as session:

            async def readiness() -> dict[str, object]:
                async with session.get(node.base + "/readyz") as resp:
                    return dict(await resp.json())

            body = await eventually(readiness, "/readyz answers")
            assert body["plugins"]["failed"] == {"broken": "import", "sleepy": "set up"}  # type: ignore[index]
            async with session.get(node.base + "/api/node") as resp:
                assert "broken" not in (await resp.json())["plugins"]
    finally:
        node.stop()
    assert node.proc.stdout is not None
    banner = node.stdout_seen + node.proc.stdout.read()
    assert "Failed        broken (import), sleepy (set up)" in banner
    result = cli("plugins", "--config", str(config))
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("broken "))
    assert "failed" in line
    assert "broken: failed to import: ModuleNotFoundError" in result.stdout
    result = cli("check-config", str(config))
    assert result.returncode == 2
    assert "plugin 'broken' failed to import: ModuleNotFoundError" in result.stderr
