"""Config: defaults, the documented default file, env overrides and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncstream.config import ConfigError, Settings, load_config
from syncstream.plugins import plan

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, ""), environ={})
    assert loaded.settings == Settings()
    assert loaded.settings.server.port == 8080
    assert loaded.settings.store.url == ""
    assert not loaded.settings.clustered


def test_documented_default_file_matches_the_defaults() -> None:
    """syncstream.yaml shows every key with its default: it must not drift from the code."""
    loaded = load_config(ROOT / "syncstream.yaml", environ={})
    defaults = Settings().model_dump(by_alias=True)
    documented = loaded.settings.model_dump(by_alias=True)
    documented.pop("plugins")
    defaults.pop("plugins")
    assert documented == defaults

    def keys(model: dict[str, object], prefix: str = "") -> set[str]:
        out = set()
        for key, value in model.items():
            out.add(prefix + key)
            if isinstance(value, dict):
                out |= keys(value, prefix + key + ".")
        return out

    raw = yaml.safe_load((ROOT / "syncstream.yaml").read_text())
    raw.pop("plugins")
    assert keys(raw) == keys(defaults), "every key is documented in syncstream.yaml"


@pytest.mark.parametrize("name", ["single-node.yaml", "cluster.yaml"])
def test_example_configs_are_valid(name: str) -> None:
    loaded = load_config(ROOT / "config" / name, environ={})
    assert not [s.name for s in plan(loaded, check_disabled=True).report if s.state == "failed"]


def test_unknown_key_is_refused_with_file_line_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8080\n  prot: 9\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    (issue,) = err.value.issues
    assert issue.path == "server.prot"
    assert issue.line == 3
    assert issue.message == "unknown key"
    assert str(issue) == f"{path}:3: server.prot: unknown key"


def test_wrong_type_is_refused_with_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: eighty\nrealtime:\n  rate_burst: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    by_path = {i.path: i for i in err.value.issues}
    assert set(by_path) == {"server.port", "realtime.rate_burst"}
    assert (
        "integer" in by_path["server.port"].message and "'eighty'" in by_path["server.port"].message
    )
    assert by_path["server.port"].line == 2
    assert by_path["realtime.rate_burst"].line == 4


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: [8080\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "not valid YAML" in str(err.value)
    assert err.value.issues[0].line is not None


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), environ={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8080\n")
    env = {
        "SYNCSTREAM_SERVER__PORT": "9001",
        "SYNCSTREAM_CLUSTER__REDIS_URL": "redis://127.0.0.1:6379/0",
        "SYNCSTREAM_AUTH__REGISTRATION": "false",
        "SYNCSTREAM_SERVER__CORS_ORIGINS": "[https://a.example]",
        "OTHER": "ignored",
    }
    settings = load_config(path, environ=env).settings
    assert settings.server.port == 9001
    assert settings.clustered
    assert settings.auth.registration is False
    assert settings.server.cors_origins == ["https://a.example"]


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    env = {"SYNCSTREAM_SERVER__PORTT": "1", "SYNCSTREAM_RTMP__PORT": "99999"}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, ""), environ=env)
    text = str(err.value)
    assert "environment variable SYNCSTREAM_SERVER__PORTT: server.portt: unknown key" in text
    assert "environment variable SYNCSTREAM_RTMP__PORT: rtmp.port" in text


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 7000\n")
    loaded = load_config(None, environ={"SYNCSTREAM_CONFIG": str(path)})
    assert loaded.settings.server.port == 7000
    assert loaded.source == str(path)


def test_plugin_sections_are_validated_by_the_plugin(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "plugins:\n  guestbook:\n    enabled: true\n    max_length: lots\n"
        "    colour: red\n  nosuch: {}\n",
    )
    loaded = load_config(path, environ={})
    with pytest.raises(ConfigError) as err:
        plan(loaded)  # a section of no plugin is the operator's typo: the config is refused
    assert [(i.path, "no such plugin" in i.message) for i in err.value.issues] == [
        ("plugins.nosuch", True)
    ]
    path.write_text(path.read_text().replace("  nosuch: {}\n", ""))
    guestbook = plan(load_config(path, environ={})).report.get("guestbook")
    assert guestbook is not None and guestbook.state == "failed"  # the plugin's own failure
    assert f"{path}:4: plugins.guestbook.max_length:" in guestbook.reason
    assert f"{path}:5: plugins.guestbook.colour: unknown key" in guestbook.reason


def test_public_url_is_derived() -> None:
    assert Settings().public_url == "http://localhost:8080"
    settings = Settings.model_validate({"server": {"public_url": "https://x.example/"}})
    assert settings.public_url == "https://x.example"
