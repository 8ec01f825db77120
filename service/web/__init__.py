"""The Flask application factory: one store, one answer cache, blueprints registered here.

Also the whole app's HTTP conventions, in one place: conditional GET (werkzeug's ETag
machinery), security headers, CORS, plain-text/JSON error bodies, the configured public base
URL, and the store slot a new build is swapped into while the service runs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, has_request_context, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from service import config
from service.web.cache import AnswerCache, ResponseMemo
from service.web.protocol import CORS_HEADERS, body_too_large, error_response

if TYPE_CHECKING:  # only the annotation needs it; a store is handed in by the caller
    from service.store.backends import Store

# SPARQL_TIMEOUT, SPARQL_ROW_CAP, MAX_CONTENT_LENGTH (Flask answers 413 above), CACHE_BYTES,
# PUBLIC_BASE_URL: where clients reach the service. Every absolute URL the service writes
# (JSON-LD @context, service description, next-page links, the base of relative IRIs in
# queries) is built from it, never from the request's Host header.
DEFAULTS: dict[str, Any] = config.app_config()

# Pages load only our own scripts, styles and fonts, talk only to our origin and cannot be
# framed. YASGUI/CodeMirror set element styles at run time, hence 'unsafe-inline' for styles
# only; no inline or evaluated script is allowed.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Data answers are never rendered as documents, so they may load nothing at all.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
READ_METHODS = {"GET", "HEAD", "POST", "OPTIONS"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class ServiceState:
    """What every blueprint may use: `current_app.extensions["cmpkg"]`.

    `store` is the served build. A running service swaps in a new build with `swap`: a
    request keeps the store it first touched until it ends (so its build id, ETag and answer
    agree), and the old store is closed once its last request is done.
    """

    def __init__(
        self,
        store: Store,
        cache: AnswerCache,
        memo: ResponseMemo | None = None,
        artifact: Path | None = None,
    ) -> None:
        self._store = store
        self.cache = cache
        self.memo = memo or ResponseMemo(cache.max_bytes)  # the HTTP front's replays
        self.artifact = artifact  # the verified artifact file the store was loaded from
        self.notice: str | None = None  # lifecycle warning shown in /readyz (stale build)
        self.swaps = 0
        self._lock = threading.Lock()
        self._users: Counter[int] = Counter()
        self._retired: dict[int, Store] = {}

    @property
    def cache_hits(self) -> int:
        return self.cache.hits + self.memo.hits

    @property
    def store(self) -> Store:
        if not has_request_context():
            return self._store
        pinned = g.get("cmpkg_store")
        if pinned is None:
            pinned = g.cmpkg_store = self.pin()
        return pinned

    def pin(self) -> Store:
        """The served store, kept open for the caller until `release` (one request)."""
        with self._lock:
            pinned = self._store
            self._users[id(pinned)] += 1
        return pinned

    def release(self, store: Store) -> None:
        """The request that pinned `store` is done; close it if it was retired."""
        closing = None
        with self._lock:
            self._users[id(store)] -= 1
            if self._users[id(store)] <= 0:
                del self._users[id(store)]
                closing = self._retired.pop(id(store), None)
        if closing is not None:
            closing.close()

    def swap(self, store: Store, artifact: Path | None, notice: str | None = None) -> Store:
        """Serve `store` from now on; returns the previous one (closed when unused)."""
        with self._lock:
            old, self._store = self._store, store
            # Answers and replayed responses of the old build must never be served again.
            self.cache = AnswerCache(self.cache.max_bytes)
            self.memo = ResponseMemo(self.memo.max_bytes)
            self.artifact = artifact
            self.notice = notice
            self.swaps += 1
            idle = self._users[id(old)] == 0
            if not idle:
                self._retired[id(old)] = old
        if idle:
            old.close()
        return old

    def close(self) -> None:
        with self._lock:
            stores = [self._store, *self._retired.values()]
            self._retired.clear()
        for store in stores:
            store.close()


def state(app: Flask) -> ServiceState:
    return app.extensions["cmpkg"]


def public_base(config: Mapping[str, Any]) -> str | None:
    base = config.get("PUBLIC_BASE_URL")
    return str(base).rstrip("/") if base else None


def _pin_public_base(wsgi_app: Callable, base: str) -> Callable:
    """Rewrite scheme, host and script root from the configured base URL before Flask runs,
    so `request.host_url`, `base_url` and `url_for(_external=True)` never echo the Host header.
    """
    parts = urlsplit(base)
    script_root = parts.path.rstrip("/")

    def app(environ: dict, start_response: Callable) -> Any:
        environ["wsgi.url_scheme"] = parts.scheme
        environ["HTTP_HOST"] = parts.netloc
        environ["SERVER_NAME"] = parts.hostname or ""
        environ["SERVER_PORT"] = str(parts.port or (443 if parts.scheme == "https" else 80))
        environ["SCRIPT_NAME"] = script_root
        return wsgi_app(environ, start_response)

    return app


def create_app(
    store: Store, config: Mapping[str, Any] | None = None, artifact: Path | None = None
) -> Flask:
    from service.web import ops, sparql  # blueprints import this module's helpers

    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    service = ServiceState(store, AnswerCache(int(app.config["CACHE_BYTES"])), artifact=artifact)
    app.extensions["cmpkg"] = service

    app.register_blueprint(sparql.bp)
    app.register_blueprint(ops.bp)
    # named questions, IRIs, API description, pages for guideline authors
    from service.web import api, linked_data, openapi, pages

    for blueprint in (api.bp, linked_data.bp, openapi.bp, pages.pages):
        app.register_blueprint(blueprint)
    from service.web import page_source  # what the pages read: the served build

    page_source.install(app, page_source.served())
    from service.web import prescribe  # POST /api/prescribe (issue 6)

    app.register_blueprint(prescribe.bp)
    from service.web import fhir  # /fhir: FHIR R5 resources (issue 16)

    app.register_blueprint(fhir.bp)
    ops.install_access_log(app)

    _install_error_handler(app)
    _install_store_release(app, service)
    _install_headers(app)
    base = public_base(app.config)
    if base:
        app.wsgi_app = _pin_public_base(app.wsgi_app, base)  # type: ignore[method-assign]
    return app


def _install_error_handler(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:  # plain protocol errors, not HTML pages
        message = err.description or err.name
        if err.code == 413:
            message = body_too_large(app.config["MAX_CONTENT_LENGTH"])
        headers = {}
        if isinstance(err, MethodNotAllowed) and err.valid_methods:
            # RFC 9110 15.5.6: a 405 names the methods the resource does support. Routes that
            # list PUT/DELETE/PATCH do so only to refuse them (read-only service).
            allowed = set(err.valid_methods) & READ_METHODS
            headers["Allow"] = ", ".join(sorted(allowed))
        return error_response(err.code or 500, message, request.headers.get("Accept"), headers)


def _install_store_release(app: Flask, service: ServiceState) -> None:
    @app.teardown_request
    def _release_store(_exc: BaseException | None) -> None:
        pinned = g.pop("cmpkg_store", None)
        if pinned is not None:
            service.release(pinned)


def common_headers(html: bool) -> dict[str, str]:
    """What every response carries unless its route set it: CORS, security headers, CSP."""
    return {
        **CORS_HEADERS,
        **SECURITY_HEADERS,
        "Content-Security-Policy": PAGE_CSP if html else DATA_CSP,
    }


def _install_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        html = response.mimetype in ("text/html", "application/xhtml+xml")
        for name, value in common_headers(html).items():
            response.headers.setdefault(name, value)
        return response

    @app.after_request
    def _conditional(response: Response) -> Response:
        # The KG is immutable per build, so every successful GET is a stable representation:
        # one ETag path for the whole app. Routes that know their ETag before rendering
        # (/sparql: build id + query + dataset + format) set it; every other answer gets the
        # hash of its body. werkzeug then answers If-None-Match with 304.
        if request.method not in ("GET", "HEAD") or response.status_code != 200:
            return response
        if response.is_streamed or response.direct_passthrough:
            return response
        if "no-store" in response.headers.get("Cache-Control", ""):
            return response
        if "ETag" not in response.headers:
            response.add_etag()
        response.headers.setdefault("Cache-Control", "no-cache")
        response.make_conditional(request)  # in place: status 304 and no body when matched
        return response
