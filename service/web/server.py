"""Run the service: choose and check the artifact, serve it, pick up new builds while running.

Lifecycle rules (README, "Operations"):
- an artifact is served only if its bytes match the SHA-256 its manifest records (the build
  id); otherwise it is refused, never served under the intact build's id and ETags;
- with no --artifact, the current build is used, built first when the sources changed; when
  the sources do not build, the last good build is served and the service says so, loudly, in
  its log and in /readyz;
- a running service watches the build's manifest and swaps a new, verified build in without
  a restart; requests never build anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import config
from service.kb import build
from service.store.backends import EmbeddedStore, RemoteStore, Store, content_hash, load_embedded
from service.store.pool import Limits

log = logging.getLogger("cmpkg.serve")

MANIFEST_NAME = build.MANIFEST_NAME


@dataclass
class Settings:
    host: str = config.default("host")
    port: int = config.default("port")
    workers: int = config.default("workers")  # query worker processes / extra request threads
    threads: int = 8  # threads running the Flask routes (the HTTP front keeps /sparql on its loop)
    timeout: float = config.default("timeout")
    row_cap: int = config.default("row_cap")
    max_body: int = config.default("max_body")
    cache_bytes: int = config.default("cache_mb") * config.MIB
    # per query worker, on top of the data it shares with the server
    worker_memory_bytes: int = config.default("worker_memory_mb") * config.MIB
    log_level: str = config.default("log_level")
    artifact: Path | None = None
    data: dict[Path, str] = field(default_factory=dict)  # extra file -> named graph IRI
    store_url: str | None = None  # a remote SPARQL query endpoint instead of the embedded store
    public_url: str | None = None  # how clients reach us; default http://HOST:PORT
    header_timeout: float = 10.0  # seconds for a client to send a complete request header
    idle_timeout: float = 60.0  # seconds a keep-alive connection may sit idle
    connection_limit: int = 1000
    watch_interval: float = 2.0  # seconds between checks for a new build; 0 = never


class ArtifactRefused(Exception):
    """The artifact cannot be served as it is (it does not match its manifest, or unreadable)."""


@dataclass(frozen=True)
class Loaded:
    """A verified artifact: the private copy the store was loaded from, and its build id."""

    snapshot: Path
    build_id: str
    source: Path
    manifest: Path | None


def manifest_of(artifact: Path) -> Path | None:
    """The manifest that describes `artifact`, when one sits next to it and names it."""
    path = artifact.parent / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ArtifactRefused(
            f"{path} cannot be read ({err}); the artifact cannot be checked"
        ) from None
    if not isinstance(recorded, dict) or recorded.get("artifact") != artifact.name:
        return None
    return path


def verify(artifact: Path) -> tuple[bytes, str, Path | None]:
    """The artifact's bytes and build id; ArtifactRefused if they do not match the manifest."""
    try:
        data = artifact.read_bytes()
    except OSError as err:
        raise ArtifactRefused(f"{artifact} cannot be read: {err.strerror or err}") from None
    manifest = manifest_of(artifact)
    digest = hashlib.sha256(data).hexdigest()
    if manifest is None:  # a hand-made artifact (--artifact): its content is its id
        return data, digest[:16], None
    recorded = str(json.loads(manifest.read_text(encoding="utf-8")).get("build_id"))
    if recorded != digest:
        raise ArtifactRefused(
            f"{artifact} does not match its manifest: SHA-256 {digest[:16]}... over "
            f"{len(data)} bytes, but {manifest} records build {recorded[:16]}...; the file "
            "is truncated or was changed after the build. Refusing to serve it; rebuild with "
            "`cmpkg build`."
        )
    return data, recorded, manifest


class Snapshots:
    """Private copies of verified artifacts: what is served cannot change under the service
    (the build directory can), and /api/prescribe reads exactly the served bytes."""

    PREFIX = "cmpkg-serve-"

    def __init__(self) -> None:
        self._remove_abandoned()
        # The pid in the name tells a later service which copies belong to a dead one.
        self.directory = Path(tempfile.mkdtemp(prefix=f"{self.PREFIX}{os.getpid()}-"))

    def _remove_abandoned(self) -> None:
        from service.kb.hermit import pid_alive

        for path in Path(tempfile.gettempdir()).glob(self.PREFIX + "*"):
            pid = path.name[len(self.PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)

    def keep(self, data: bytes, build_id: str, suffix: str) -> Path:
        path = self.directory / f"{build_id[:16]}{suffix}"
        path.write_bytes(data)
        return path

    def prune(self, keep: set[Path]) -> None:
        for path in self.directory.iterdir():
            if path not in keep:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def load_verified(
    artifact: Path, settings: Settings, snapshots: Snapshots
) -> tuple[EmbeddedStore, Loaded]:
    from service.kb.sources import RDFSyntaxError

    data, build_id, manifest = verify(artifact)
    snapshot = snapshots.keep(data, build_id, artifact.suffix)
    served_id = build_id
    if settings.data:
        # Draft data changes what is served, so it changes the id (and every ETag).
        served_id += "+" + content_hash(sorted(settings.data))
    try:
        oxstore = load_embedded(snapshot, settings.data)
    except RDFSyntaxError as err:
        raise ArtifactRefused(f"{artifact} cannot be parsed: {err}") from None
    store = EmbeddedStore(
        oxstore, served_id, workers=settings.workers, limits=Limits(settings.worker_memory_bytes)
    )
    return store, Loaded(snapshot, build_id, artifact, manifest)


def initial_artifact(settings: Settings) -> tuple[Path, str | None]:
    """The artifact to start from, and a warning when it is not built from the current sources.

    Without --artifact the KG is built first when its sources changed; when they do not
    build, the last good build in the build directory is served instead.
    """
    if settings.artifact is not None:
        return settings.artifact, None
    try:
        return Path(build.ensure_artifact()), None
    except (build.BuildFailed, OSError) as err:
        last = build.build_dir() / build.ARTIFACT_NAME
        if not last.is_file():
            raise SystemExit(
                "cannot serve: the knowledge graph does not build and there is no previous "
                f"build to fall back on:\n{err}"
            ) from None
        reason = str(err).strip().splitlines()[0][:300]
        log.error(
            json.dumps({"event": "sources-broken", "serving": str(last), "error": str(err)[:4000]})
        )
        return last, (
            "STALE: the sources do not build, so the last good build is served; fix them and "
            f"run `cmpkg build` (the service picks the new build up). Build error: {reason}"
        )


def resolve_artifact(artifact: Path | None) -> tuple[Path, str | None]:
    """The artifact to push (`cmpkg push`) and its build id; checked against its manifest."""
    if artifact is None:
        try:
            artifact = Path(build.ensure_artifact())
        except (build.BuildFailed, OSError) as err:
            raise SystemExit(f"cannot push: the knowledge graph does not build:\n{err}") from None
    try:
        _, build_id, _ = verify(artifact)
    except ArtifactRefused as err:
        raise SystemExit(str(err)) from None
    return artifact, build_id


def app_config(settings: Settings) -> dict[str, object]:
    return config.app_config(
        settings.timeout,
        settings.row_cap,
        settings.max_body,
        settings.cache_bytes,
        public_url(settings),
    )


def public_url(settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


class BuildWatcher:
    """Polls the served build's manifest; a changed one is verified, loaded and swapped in."""

    def __init__(self, app: Any, loaded: Loaded, settings: Settings, snapshots: Snapshots) -> None:
        assert loaded.manifest is not None
        self.app, self.loaded, self.settings, self.snapshots = app, loaded, settings, snapshots
        self.manifest = loaded.manifest
        self._seen = self._signature()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmpkg-build-watcher", daemon=True)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.manifest.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.watch_interval):
            seen = self._signature()
            if seen is None or seen == self._seen:
                continue
            self._seen = seen
            try:
                self.check()
            except Exception as err:  # a watcher that dies would silently stop updates
                log.error(json.dumps({"event": "reload-failed", "error": str(err)[:2000]}))

    def check(self) -> bool:
        """Swap in the build the manifest now names, if it is new and intact."""
        from service.web import state

        artifact = self.loaded.source
        try:
            _, build_id, _ = verify(artifact)
        except ArtifactRefused as err:
            log.error(
                json.dumps(
                    {"event": "new-build-refused", "keeping": self.loaded.build_id,
                     "error": str(err)}
                )
            )  # fmt: skip
            return False
        if build_id == self.loaded.build_id:
            return False
        store, loaded = load_verified(artifact, self.settings, self.snapshots)
        service = state(self.app)
        service.swap(store, loaded.snapshot, notice=None)
        previous, self.loaded = self.loaded, loaded
        self.snapshots.prune({previous.snapshot, loaded.snapshot})
        log.warning(
            json.dumps(
                {"event": "build-swapped", "from": previous.build_id, "to": loaded.build_id,
                 "triples": sum(store.graph_counts().values())}
            )
        )  # fmt: skip
        return True


def run(settings: Settings) -> None:
    from service.web import create_app, state
    from service.web.httpd import make_server

    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(message)s" if settings.log_level.upper() != "DEBUG" else "%(name)s %(message)s",
        stream=sys.stderr,
    )
    snapshots = Snapshots()
    watcher: BuildWatcher | None = None
    store: Store
    loaded: Loaded | None = None
    notice: str | None = None
    try:
        if settings.store_url:
            store = RemoteStore(
                settings.store_url,
                timeout=settings.timeout,
                workers=settings.workers,
                limits=Limits(settings.worker_memory_bytes),
            )
        else:
            artifact, notice = initial_artifact(settings)
            try:
                store, loaded = load_verified(artifact, settings, snapshots)
            except ArtifactRefused as err:
                raise SystemExit(f"cannot serve: {err}") from None
        app = create_app(store, app_config(settings), artifact=loaded.snapshot if loaded else None)
        service = state(app)
        service.notice = notice
        if notice:
            # Loud on purpose: on stderr as a banner and in the structured log.
            print(f"\n*** cmpkg serve: {notice} ***\n", file=sys.stderr, flush=True)
            log.error(json.dumps({"event": "stale-build", "build_id": store.build_id}))
        server = make_server(
            app,
            host=settings.host,
            port=settings.port,
            threads=max(settings.threads, settings.workers * 2),
            header_timeout=settings.header_timeout,
            channel_timeout=settings.idle_timeout,
            connection_limit=settings.connection_limit,
        )
        if loaded is not None and loaded.manifest is not None and settings.watch_interval > 0:
            watcher = BuildWatcher(app, loaded, settings, snapshots)
            watcher.start()
    except BaseException:
        snapshots.close()
        raise

    def _stop(signum: int, frame: object) -> None:  # SIGTERM: exit cleanly so workers are reaped
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    counts = store.graph_counts()
    log.info(
        '{"event": "ready", "url": "%s/sparql", "build_id": "%s", "triples": %d}',
        public_url(settings),
        store.build_id,
        sum(counts.values()),
    )
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        try:
            if watcher is not None:
                watcher.stop()
            server.close()
            service.close()
        finally:
            snapshots.close()
