"""Plugin discovery, configuration, failure reporting and the example plugin end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncstream.config import load_config
from syncstream.plugins import PluginError, discover, resolve

from .support import running


def make_plugin(
    root: Path, name: str, body: str | None = None, setup: str = "pass", **kw: object
) -> None:
    """Write a plugin package; ``body`` replaces the generated setup + manifest when given."""
    if body is None:
        extra = "".join(f", {k}={v!r}" for k, v in kw.items())
        body = (
            f"async def setup(ctx):\n    {setup}\n"
            f"plugin = Plugin(name={name!r}, version='1', setup=setup{extra})\n"
        )
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("from syncstream import Plugin\n" + body)


def loaded_with(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path, environ={})


def test_builtin_example_plugin_is_discovered_and_off_by_default(tmp_path: Path) -> None:
    found = discover()
    assert found["guestbook"].plugin.version == "1.0.0"
    default = [e.plugin.name for e in resolve(found, loaded_with(tmp_path, ""))]
    assert "guestbook" not in default and "files" in default
    enabled = resolve(
        found, loaded_with(tmp_path, "plugins: {guestbook: {enabled: true, max_length: 9}}")
    )
    (guestbook,) = [e for e in enabled if e.plugin.name == "guestbook"]
    assert guestbook.config.max_length == 9


def test_plugins_from_a_directory_in_dependency_order(tmp_path: Path) -> None:
    root = tmp_path / "more"
    make_plugin(root, "alpha", requires=("beta",))
    make_plugin(root, "beta")
    found = discover([root])
    assert {"alpha", "beta", "guestbook"} <= set(found)
    order = [e.plugin.name for e in resolve(found, loaded_with(tmp_path, ""))]
    assert [name for name in order if name in ("alpha", "beta")] == ["beta", "alpha"]


def test_missing_dependency_names_the_plugin(tmp_path: Path) -> None:
    root = tmp_path / "more"
    make_plugin(root, "alpha", requires=("zeta",))
    with pytest.raises(
        PluginError, match="plugin 'alpha' failed to load: it requires plugin 'zeta'"
    ):
        resolve(discover([root]), loaded_with(tmp_path, ""))


def test_broken_import_names_the_plugin(tmp_path: Path) -> None:
    root = tmp_path / "more"
    make_plugin(root, "broken", "import does_not_exist_anywhere\n")
    with pytest.raises(PluginError) as err:
        discover([root])
    assert "broken" in str(err.value) and "ModuleNotFoundError" in str(err.value)


def test_module_without_manifest(tmp_path: Path) -> None:
    root = tmp_path / "more"
    make_plugin(root, "empty", "x = 1\n")
    with pytest.raises(PluginError, match="defines no `plugin = Plugin"):
        discover([root])


async def test_failing_setup_stops_startup_naming_the_plugin(tmp_path: Path) -> None:
    root = tmp_path / "more"
    make_plugin(root, "faulty", setup="raise ValueError('no frobs')")
    with pytest.raises(PluginError, match="plugin 'faulty' failed to set up: ValueError: no frobs"):
        async with running(tmp_path, plugin_paths=[str(root)]):
            pass


async def test_failing_migration_names_the_plugin(tmp_path: Path) -> None:
    root = tmp_path / "more"
    make_plugin(root, "badsql", migrations=["CREATE TABLE (oops"])
    with pytest.raises(PluginError, match="plugin 'badsql' failed to migrate"):
        async with running(tmp_path, plugin_paths=[str(root)]):
            pass


async def test_plugin_context_cleanup_and_banner(tmp_path: Path) -> None:
    root = tmp_path / "more"
    marker = tmp_path / "cleaned"
    make_plugin(
        root,
        "tidy",
        f"""
from pathlib import Path
async def setup(ctx):
    ctx.announce('Tidy', 'http://example/tidy')
    async def done():
        Path({str(marker)!r}).write_text(ctx.name)
    ctx.on_cleanup(done)
plugin = Plugin(name='tidy', version='1', setup=setup)
""",
    )
    async with running(tmp_path, plugin_paths=[str(root)]) as c:
        banner = c.server.banner()  # type: ignore[union-attr]
        assert "Tidy          http://example/tidy" in banner
        assert "guestbook" in banner and "tidy" in banner
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
    """An installed distribution that declares a `syncstream.plugins` entry point is found."""
    site = tmp_path / "site"
    dist = site / "syncstream_hello-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: syncstream-hello\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[syncstream.plugins]\nhello = syncstream_hello\n")
    (site / "syncstream_hello.py").write_text(
        "from syncstream import Plugin\n"
        "async def setup(ctx): pass\n"
        "plugin = Plugin(name='hello', version='0.3', setup=setup)\n"
    )
    monkeypatch.syspath_prepend(str(site))
    found = discover()
    assert found["hello"].plugin.version == "0.3"
    assert found["hello"].source.startswith("entry point hello")
