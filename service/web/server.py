"""Run the service under waitress (a production WSGI server), configured from flags or env."""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from service.kb import build
from service.store.backends import EmbeddedStore, RemoteStore, Store, content_hash, load_embedded

log = logging.getLogger("cmpkg.serve")


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2  # query worker processes (embedded) / extra request threads
    threads: int = 8  # waitress request threads
    timeout: float = 10.0
    row_cap: int = 100_000
    max_body: int = 1024 * 1024
    cache_bytes: int = 64 * 1024 * 1024
    log_level: str = "INFO"
    artifact: Path | None = None
    data: dict[Path, str] = field(default_factory=dict)  # extra file -> named graph IRI
    store_url: str | None = None  # a remote SPARQL query endpoint instead of the embedded store


def resolve_artifact(artifact: Path | None) -> tuple[Path, str | None]:
    """The artifact to serve and its build id from the manifest when there is one.

    Without --artifact the KG is built first when no current artifact exists.
    """
    if artifact is None:
        try:
            artifact = Path(build.ensure_artifact())
        except Exception as err:  # the build's own error says what is wrong with the inputs
            raise SystemExit(f"cannot serve: the knowledge graph does not build:\n{err}") from None
    manifest = artifact.parent / "manifest.json"
    build_id = None
    if manifest.exists():
        try:
            build_id = str(build.read_manifest(manifest)["build_id"])
        except (KeyError, ValueError, OSError):
            build_id = None
    return artifact, build_id


def open_store(settings: Settings) -> Store:
    if settings.store_url:
        return RemoteStore(settings.store_url, timeout=settings.timeout)
    artifact, build_id = resolve_artifact(settings.artifact)
    build_id = build_id or content_hash([artifact])
    if settings.data:
        # Draft data changes what is served, so it changes the id (and every ETag).
        build_id += "+" + content_hash(sorted(settings.data))
    store = load_embedded(artifact, settings.data)
    return EmbeddedStore(store, build_id, workers=settings.workers)


def app_config(settings: Settings) -> dict[str, object]:
    return {
        "SPARQL_TIMEOUT": settings.timeout,
        "SPARQL_ROW_CAP": settings.row_cap,
        "MAX_CONTENT_LENGTH": settings.max_body,
        "CACHE_BYTES": settings.cache_bytes,
    }


def run(settings: Settings) -> None:
    import waitress

    from service.web import create_app

    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(message)s" if settings.log_level.upper() != "DEBUG" else "%(name)s %(message)s",
        stream=sys.stderr,
    )
    store = open_store(settings)
    app = create_app(store, app_config(settings))
    threads = max(settings.threads, settings.workers * 2)
    server = waitress.create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=threads,
        ident="cmpkg",
        channel_timeout=max(120, int(settings.timeout) * 3),
    )

    def _stop(signum, frame):  # SIGTERM: exit cleanly so workers are reaped
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    counts = store.graph_counts()
    log.info(
        '{"event": "ready", "url": "http://%s:%s/sparql", "build_id": "%s", "triples": %d}',
        settings.host,
        server.effective_port,
        store.build_id,
        sum(counts.values()),
    )
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
        store.close()
