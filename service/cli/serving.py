"""`cmpkg serve` and `cmpkg push`: thin wrappers over service.web.server and the stores."""

from __future__ import annotations

from pathlib import Path

import click

from service import config


def _data_option(values: tuple[str, ...]) -> dict[Path, str]:
    out: dict[Path, str] = {}
    for value in values:
        file, sep, graph = value.partition("=")
        if not sep or not file or not graph:
            raise click.BadParameter(f"{value!r}: expected FILE=GRAPH_IRI", param_hint="--data")
        path = Path(file)
        if not path.is_file():
            raise click.BadParameter(f"{file}: no such file", param_hint="--data")
        out[path] = graph
    return out


@click.command()
@click.option("--host", **config.option("host"))
@click.option("--port", type=int, **config.option("port"))
@click.option("--workers", type=click.IntRange(1, 64), **config.option("workers"))
@click.option("--timeout", type=click.FloatRange(0.1), **config.option("timeout"))
@click.option("--row-cap", type=click.IntRange(1), **config.option("row_cap"))
@click.option("--max-body", type=click.IntRange(1), **config.option("max_body"))
@click.option("--cache-mb", type=click.IntRange(0), **config.option("cache_mb"))
@click.option("--worker-memory-mb", type=click.IntRange(64), **config.option("worker_memory_mb"))
@click.option(
    "--artifact",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    **config.option("artifact"),
)
@click.option(
    "--data",
    multiple=True,
    metavar="FILE=GRAPH_IRI",
    help="Serve an extra RDF file as a named graph (repeatable).",
)
@click.option("--store", "store_url", metavar="QUERY_URL", **config.option("store"))
@click.option("--public-url", metavar="URL", **config.option("public_url"))
@click.option("--header-timeout", type=click.FloatRange(0.5), **config.option("header_timeout"))
@click.option("--watch-interval", type=click.FloatRange(0), **config.option("watch_interval"))
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    **config.option("log_level"),
)
def serve(
    host: str,
    port: int,
    workers: int,
    timeout: float,
    row_cap: int,
    max_body: int,
    cache_mb: int,
    worker_memory_mb: int,
    artifact: Path | None,
    data: tuple[str, ...],
    store_url: str | None,
    public_url: str | None,
    header_timeout: float,
    watch_interval: float,
    log_level: str,
) -> None:
    """Serve the knowledge graph over SPARQL 1.1 Protocol at http://HOST:PORT/sparql."""
    from service.web.server import Settings, run

    if store_url and data:
        raise click.UsageError(
            "--data previews draft files in the embedded store; "
            "push them to the remote store instead"
        )
    run(
        Settings(
            host=host,
            port=port,
            workers=workers,
            timeout=timeout,
            row_cap=row_cap,
            max_body=max_body,
            cache_bytes=cache_mb * 1024 * 1024,
            worker_memory_bytes=worker_memory_mb * config.MIB,
            log_level=log_level,
            artifact=artifact,
            data=_data_option(data),
            store_url=store_url,
            public_url=_public_url(public_url),
            header_timeout=header_timeout,
            watch_interval=watch_interval,
        )
    )


def _public_url(value: str | None) -> str | None:
    if value is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise click.BadParameter(
            f"{value!r}: expected http(s)://HOST[:PORT][/PATH]", param_hint="--public-url"
        )
    return value.rstrip("/")


@click.command()
@click.option(
    "--to",
    "to",
    required=True,
    metavar="STORE_URL",
    help="Graph Store Protocol endpoint, e.g. http://127.0.0.1:7878/store",
)
@click.option(
    "--artifact",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Push this N-Quads/TriG file instead of the current build.",
)
def push(to: str, artifact: Path | None) -> None:
    """Load the build artifact into a SPARQL 1.1 store, one PUT per named graph."""
    import urllib.error

    from service.store.backends import StoreError
    from service.store.backends import push as push_graphs
    from service.web.server import resolve_artifact

    path, _ = resolve_artifact(artifact)
    try:
        counts = push_graphs(path, to)
    except (urllib.error.URLError, StoreError, OSError) as err:
        raise click.ClickException(f"push to {to} failed: {err}") from None
    for iri, n in counts.items():
        click.echo(f"{n:>8} triples -> {iri}")
    click.echo(f"pushed {sum(counts.values())} triples in {len(counts)} graphs to {to}")
