"""Operations: liveness, readiness and one structured access-log line per request."""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, Flask, current_app, g, jsonify, request

bp = Blueprint("ops", __name__)
access_log = logging.getLogger("cmpkg.access")


@bp.get("/healthz")
def healthz():
    response = jsonify(status="ok")
    response.headers["Cache-Control"] = "no-store"  # a probe must see the live answer
    return response


@bp.get("/readyz")
def readyz():
    from service.web import state

    service = state(current_app)
    store = service.store
    counts = store.graph_counts()
    extra = {}
    if service.notice:  # loud on purpose: a monitor reading /readyz must see it
        extra = {"stale": True, "warning": service.notice}
    response = jsonify(
        status="ready",
        build_id=store.build_id,
        **extra,
        builds_swapped=service.swaps,
        triples=sum(counts.values()),
        graphs=counts,
        backend=type(store).__name__,
        cache={"entries": len(service.cache), "hits": service.cache_hits},
        workers_replaced=getattr(store, "workers_replaced", 0),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def log_replayed(environ: dict, status: int, nbytes: int, started: float) -> None:
    """The access-log line for a response replayed by the cache middleware (outside Flask)."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            json.dumps(
                {
                    "method": environ.get("REQUEST_METHOD"),
                    "path": environ.get("PATH_INFO"),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                    "bytes": nbytes,
                    "cache": "replay",
                    "remote": environ.get("REMOTE_ADDR"),
                }
            )
        )


def install_access_log(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log(response):
        started = g.get("started")
        ms = (time.perf_counter() - started) * 1000 if started else None
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                json.dumps(
                    {
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "ms": round(ms, 3) if ms is not None else None,
                        "bytes": response.calculate_content_length(),
                        "cache": g.get("cache_state"),
                        "remote": request.remote_addr,
                    }
                )
            )
        return response
