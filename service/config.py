"""Every setting of the service in one table: name, default, environment variable, help.

The table is the only place a default is written. The `cmpkg` commands turn rows into flags
(`option`), the app factory turns them into Flask config (`app_config`), and the few settings a
library function needs at run time without a flag (`root`, `build_dir`, `shacl_engine`) are read
with `value`. This is the only module that reads the environment; the README "Settings" lists every
row and a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Setting:
    name: str  # also the flag: row_cap -> --row-cap
    default: Any  # None: no default (computed, or the feature is off)
    env: str
    help: str
    command: str  # the command whose flag it is ("serve", "build"), or "" for env-only


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "root",
        None,
        "CMPKG_ROOT",
        "Repository root the knowledge files, queries and rules are read from "
        "(default: this checkout).",
        "",
    ),
    Setting(
        "build_dir",
        None,
        "CMPKG_BUILD_DIR",
        "Where `cmpkg build` writes cmpkg.nq and manifest.json and `cmpkg serve` finds them "
        "(default: build/ under the root).",
        "",
    ),
    Setting(
        "shacl_engine",
        "turbo",
        "CMPKG_SHACL_ENGINE",
        "SHACL engine: turbo (pyshacl-turbo) or pyshacl (the reference implementation).",
        "",
    ),
    Setting("host", "127.0.0.1", "CMPKG_HOST", "Interface to listen on.", "serve"),
    Setting("port", 8000, "CMPKG_PORT", "TCP port to listen on.", "serve"),
    Setting("workers", 2, "CMPKG_WORKERS", "Query worker processes.", "serve"),
    Setting(
        "timeout",
        10.0,
        "CMPKG_TIMEOUT",
        "Seconds per query before it is stopped (503).",
        "serve",
    ),
    Setting("row_cap", 100_000, "CMPKG_ROW_CAP", "Most result rows/triples per answer.", "serve"),
    Setting(
        "max_body",
        MIB,
        "CMPKG_MAX_BODY",
        "Largest request body in bytes (413 above).",
        "serve",
    ),
    Setting("cache_mb", 64, "CMPKG_CACHE_MB", "Answer cache size; 0 disables it.", "serve"),
    Setting(
        "worker_memory_mb",
        1024,
        "CMPKG_WORKER_MEMORY_MB",
        "Memory a query worker may use beyond the data it shares with the server (503 above).",
        "serve",
    ),
    Setting(
        "artifact",
        None,
        "CMPKG_ARTIFACT",
        "Serve this N-Quads/TriG file instead of the build.",
        "serve",
    ),
    Setting(
        "store",
        None,
        "CMPKG_STORE",
        "Answer through this SPARQL 1.1 query endpoint instead of the embedded store.",
        "serve",
    ),
    Setting(
        "public_url",
        None,
        "CMPKG_PUBLIC_URL",
        "Base URL clients use (e.g. https://kg.example.org); absolute links and the base of "
        "relative IRIs are built from it, never from the Host header (default http://HOST:PORT).",
        "serve",
    ),
    Setting(
        "header_timeout",
        10.0,
        "CMPKG_HEADER_TIMEOUT",
        "Seconds a client has to send a complete request header (slow clients are cut).",
        "serve",
    ),
    Setting(
        "watch_interval",
        2.0,
        "CMPKG_WATCH_INTERVAL",
        "Seconds between checks for a new build to swap in; 0 disables.",
        "serve",
    ),
    Setting(
        "log_level",
        "INFO",
        "CMPKG_LOG_LEVEL",
        "DEBUG, INFO (one JSON access-log line per request), WARNING or ERROR.",
        "serve",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# Keys of the Flask config (`create_app(store, config)`): the first four come from the settings
# above (`app_config`); the others are for callers that embed the app (tests, benchmarks).
APP_KEYS: dict[str, str] = {
    "SPARQL_TIMEOUT": "Seconds per query (from `timeout`).",
    "SPARQL_ROW_CAP": "Most result rows/triples per answer (from `row_cap`).",
    "MAX_CONTENT_LENGTH": "Largest request body in bytes; Flask answers 413 above (`max_body`).",
    "CACHE_BYTES": "Answer cache budget in bytes; 0 disables it (from `cache_mb`).",
    "PUBLIC_BASE_URL": "Base URL every absolute link is built from (from `public_url`).",
    "PRESCRIBE_ARTIFACT": "The artifact `/api/prescribe` reasons over (default: the build's).",
    "CMPKG_QUERIES_DIR": "Folder of the named `.rq` queries (default: queries/ under the root).",
    "CMPKG_SPARQL_PATH": "Path of the SPARQL endpoint the query editor posts to (/sparql).",
    "CMPKG_NODE_MODULES": "Where npm put the browser assets (default: node_modules/ of the root).",
}


def default(name: str) -> Any:
    return BY_NAME[name].default


def value(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The setting from its environment variable, typed like its default; else the default."""
    setting = BY_NAME[name]
    raw = (os.environ if environ is None else environ).get(setting.env)
    if raw is None or raw == "":
        return setting.default
    if setting.default is None or isinstance(setting.default, str):
        return raw
    return type(setting.default)(raw)


def option(name: str) -> dict[str, Any]:
    """Keyword arguments for `click.option` from the row: default, env var, help.

    Click reads the environment variable itself when the flag is not given, so the CLI and
    the table cannot disagree; the caller adds only the flag name and the value type.
    """
    setting = BY_NAME[name]
    return {
        "envvar": setting.env,
        "help": setting.help,
        "default": setting.default,
        "show_default": setting.default is not None,
    }


def root() -> Path:
    """The repository root: CMPKG_ROOT, or the checkout this package lives in."""
    configured = value("root")
    return Path(configured) if configured else Path(__file__).resolve().parents[1]


def app_config(
    timeout: float | None = None,
    row_cap: int | None = None,
    max_body: int | None = None,
    cache_bytes: int | None = None,
    public_url: str | None = None,
) -> dict[str, Any]:
    """The Flask config keys the blueprints read; a setting not given takes its default."""
    return {
        "SPARQL_TIMEOUT": float(default("timeout") if timeout is None else timeout),
        "SPARQL_ROW_CAP": int(default("row_cap") if row_cap is None else row_cap),
        "MAX_CONTENT_LENGTH": int(default("max_body") if max_body is None else max_body),
        "CACHE_BYTES": default("cache_mb") * MIB if cache_bytes is None else int(cache_bytes),
        # None (tests, embedding) leaves the request's own URL in place
        "PUBLIC_BASE_URL": public_url,
    }


def markdown() -> str:
    """The table as the README's Settings section shows it (a test keeps them in step)."""
    lines = [
        "| setting | flag | environment variable | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        flag = f"`cmpkg {s.command} --{s.name.replace('_', '-')}`" if s.command else "—"
        shown = "—" if s.default is None else f"`{s.default}`"
        lines.append(f"| `{s.name}` | {flag} | `{s.env}` | {shown} | {s.help} |")
    lines += ["", "| Flask config key (`create_app(store, config)`) | what it does |", "|---|---|"]
    lines += [f"| `{key}` | {text} |" for key, text in APP_KEYS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m service.config > the table for the README
    print(markdown(), end="")
