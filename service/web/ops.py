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


def log_request(
    method: str, path: str, status: int, nbytes: int | None, started: float | None,
    cache: str | None, remote: str | None,
) -> None:  # fmt: skip
    """One access-log line; Flask's requests and the HTTP front's hot path both write it."""
    if access_log.isEnabledFor(logging.INFO):
        ms = (time.perf_counter() - started) * 1000 if started else None
        access_log.info(
            json.dumps(
                {
                    "method": method,
                    "path": path,
                    "status": status,
                    "ms": round(ms, 3) if ms is not None else None,
                    "bytes": nbytes,
                    "cache": cache,
                    "remote": remote,
                }
            )
        )


def install_access_log(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log(response):
        if access_log.isEnabledFor(logging.INFO):
            log_request(
                request.method, request.path, response.status_code,
                response.calculate_content_length(), g.get("started"), g.get("cache_state"),
                request.remote_addr,
            )  # fmt: skip
        return response
