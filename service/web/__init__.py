"""The Flask application factory: one store, one answer cache, blueprints registered here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from service.web.cache import AnswerCache, ResponseMemo
from service.web.protocol import CORS_HEADERS, error_response

if TYPE_CHECKING:  # service.store.backends imports service.store.safety, so no runtime import here
    from service.store.backends import Store

DEFAULTS: dict[str, Any] = {
    "SPARQL_TIMEOUT": 10.0,  # seconds per query
    "SPARQL_ROW_CAP": 100_000,  # result rows (or triples) per answer
    "MAX_CONTENT_LENGTH": 1024 * 1024,  # request body bytes; Flask answers 413 above
    "CACHE_BYTES": 64 * 1024 * 1024,  # 0 disables the answer cache
}


@dataclass
class ServiceState:
    """What every blueprint may use: `current_app.extensions["cmpkg"]`."""

    store: Store
    cache: AnswerCache
    memo: ResponseMemo | None = None

    @property
    def cache_hits(self) -> int:
        return self.cache.hits + (self.memo.hits if self.memo else 0)


def state(app: Flask) -> ServiceState:
    return app.extensions["cmpkg"]


def create_app(store: Store, config: Mapping[str, Any] | None = None) -> Flask:
    from service.web import ops, sparql  # blueprints import this module's helpers

    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    app.extensions["cmpkg"] = ServiceState(store, AnswerCache(int(app.config["CACHE_BYTES"])))

    app.register_blueprint(sparql.bp)
    app.register_blueprint(ops.bp)
    # named questions, IRIs, API description, pages for guideline authors
    from service.web import api, linked_data, openapi, pages

    for blueprint in (api.bp, linked_data.bp, openapi.bp, pages.pages):
        app.register_blueprint(blueprint)
    from service.web import prescribe  # POST /api/prescribe (issue 6)

    app.register_blueprint(prescribe.bp)
    from service.web import fhir  # /fhir: FHIR R5 resources (issue 16)
    app.register_blueprint(fhir.bp)
    ops.install_access_log(app)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):  # plain protocol errors instead of HTML pages
        from flask import request

        message = err.description or err.name
        if err.code == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            message = f"request body too large: the limit is {limit} bytes"
        return error_response(err.code or 500, message, request.headers.get("Accept"))

    @app.after_request
    def _cors(response):
        for name, value in CORS_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # Identical repeated requests skip Flask entirely (same size budget as the answer cache).
    memo = ResponseMemo(
        app.wsgi_app,
        int(app.config["CACHE_BYTES"]),
        int(app.config["MAX_CONTENT_LENGTH"]),
        ops.log_replayed,
    )
    app.wsgi_app = memo  # type: ignore[method-assign]
    state(app).memo = memo
    return app
