"""`cmpkg serve` and `cmpkg push`: thin wrappers over service.web.server and the stores."""

from __future__ import annotations

from pathlib import Path

import click


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
@click.option("--host", default="127.0.0.1", show_default=True, envvar="CMPKG_HOST")
@click.option("--port", default=8000, show_default=True, type=int, envvar="CMPKG_PORT")
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    envvar="CMPKG_WORKERS",
    help="Query worker processes.",
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    envvar="CMPKG_TIMEOUT",
    help="Seconds per query before it is stopped (503).",
)
@click.option(
    "--row-cap",
    default=100_000,
    show_default=True,
    type=click.IntRange(1),
    envvar="CMPKG_ROW_CAP",
    help="Most result rows/triples per answer.",
)
@click.option(
    "--max-body",
    default=1024 * 1024,
    show_default=True,
    type=click.IntRange(1),
    envvar="CMPKG_MAX_BODY",
    help="Largest request body in bytes (413 above).",
)
@click.option(
    "--cache-mb",
    default=64,
    show_default=True,
    type=click.IntRange(0),
    envvar="CMPKG_CACHE_MB",
    help="Answer cache size; 0 disables it.",
)
@click.option(
    "--artifact",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="CMPKG_ARTIFACT",
    help="Serve this N-Quads/TriG file instead of the build.",
)
@click.option(
    "--data",
    multiple=True,
    metavar="FILE=GRAPH_IRI",
    help="Serve an extra RDF file as a named graph (repeatable).",
)
@click.option(
    "--store",
    "store_url",
    envvar="CMPKG_STORE",
    metavar="QUERY_URL",
    help="Answer through this SPARQL 1.1 query endpoint instead of the embedded store.",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    envvar="CMPKG_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def serve(
    host: str,
    port: int,
    workers: int,
    timeout: float,
    row_cap: int,
    max_body: int,
    cache_mb: int,
    artifact: Path | None,
    data: tuple[str, ...],
    store_url: str | None,
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
            log_level=log_level,
            artifact=artifact,
            data=_data_option(data),
            store_url=store_url,
        )
    )


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
