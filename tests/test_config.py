"""The settings table (service/config.py) is the one source of every default and env var."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from service import config
from service.cli.serving import serve
from service.store.backends import EmbeddedStore, RemoteStore
from service.web import DEFAULTS
from service.web.server import Settings

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "service"


def test_settings_doc_lists_every_setting_as_the_table_says() -> None:
    doc = (ROOT / "README.md").read_text(encoding="utf-8")
    assert config.markdown() in doc, "README's Settings table is stale: python -m service.config"
    for setting in config.SETTINGS:
        assert f"`{setting.env}`" in doc


def test_every_serve_flag_with_an_env_var_is_a_row_of_the_table() -> None:
    options = [p for p in serve.params if isinstance(p, click.Option) and p.envvar]
    assert options, "serve has flags with environment variables"
    for option in options:
        setting = config.BY_NAME[option.name if option.name != "store_url" else "store"]
        assert option.envvar == setting.env
        assert option.default == setting.default, option.name
        assert setting.command == "serve"
    flagged = {s.name for s in config.SETTINGS if s.command == "serve"}
    named = {("store" if o.name == "store_url" else o.name) for o in options}
    assert flagged == named, "a serve row without its flag, or a flag without its row"


def test_the_app_server_and_stores_agree_with_the_table() -> None:
    assert config.app_config() == DEFAULTS
    assert DEFAULTS["CACHE_BYTES"] == config.default("cache_mb") * config.MIB
    settings = Settings()
    assert (settings.host, settings.port, settings.timeout, settings.row_cap) == (
        config.default("host"),
        config.default("port"),
        config.default("timeout"),
        config.default("row_cap"),
    )
    assert settings.cache_bytes == DEFAULTS["CACHE_BYTES"]
    assert RemoteStore.__init__.__defaults__ == (config.default("timeout"),)
    assert EmbeddedStore.__init__.__defaults__ == (config.default("workers"),)


def test_values_are_typed_like_their_defaults() -> None:
    env = {"CMPKG_PORT": "9000", "CMPKG_TIMEOUT": "2.5", "CMPKG_HOST": "0.0.0.0"}
    assert config.value("port", env) == 9000
    assert config.value("timeout", env) == 2.5
    assert config.value("host", env) == "0.0.0.0"
    assert config.value("workers", env) == config.default("workers")
    assert config.value("build_dir", {"CMPKG_BUILD_DIR": ""}) is None
    with pytest.raises(ValueError):
        config.value("port", {"CMPKG_PORT": "eighty"})


def test_root_follows_cmpkg_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from service.kb.sources import project_root

    assert project_root() == ROOT
    monkeypatch.setenv("CMPKG_ROOT", str(tmp_path))
    assert project_root() == tmp_path


def test_no_module_but_config_reads_the_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for path in SERVICE.rglob("*.py")
        if path != SERVICE / "config.py"
        and re.search(r"\bos\.environ\b|\bgetenv\(|\bos\.environb\b", path.read_text("utf-8"))
    ]
    assert readers == []


def test_every_flask_config_key_the_service_reads_is_documented() -> None:
    used: set[str] = set()
    for path in SERVICE.rglob("*.py"):
        text = path.read_text("utf-8")
        used |= set(re.findall(r"\bconfig(?:\.get\(|\[)\s*\"([A-Z][A-Z0-9_]+)\"", text))
        used |= set(re.findall(r"\"([A-Z][A-Z0-9_]+)\" in current_app\.config", text))
    assert used, "the pattern finds the keys"
    assert used - set(config.APP_KEYS) == set()


def test_each_command_loads_only_its_own_module() -> None:
    """Parsing `cmpkg serve`'s flags imports neither the build nor the validator (every
    command used to import every other's modules, 1.4 s before it started), and the group
    still has every command."""
    from service.cli import COMMANDS, main

    heavy = ("pyshacl", "service.kb.build", "service.kb.validation")
    probe = (
        "import sys; from service.cli import main; "
        "main(['serve', '--help'], standalone_mode=False); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("[]"), run.stdout
    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
    assert main.get_command(ctx, "no-such-command") is None
