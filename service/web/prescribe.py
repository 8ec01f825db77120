"""`POST /api/prescribe`: a presentation in, ranked and explained recommendations out (JSON-LD).

Thin: reads the body within the app's size cap, calls `service.prescribe.engine`, maps its errors to
4xx. Every answer, errors included, carries the decision-support disclaimer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from service.prescribe.engine import (
    DISCLAIMER,
    KnowledgeBase,
    error_document,
    knowledge_base,
    prescribe_json,
    render,
)
from service.prescribe.presentation import InvalidPresentation

bp = Blueprint("prescribe", __name__)
log = logging.getLogger("cmpkg.prescribe")

ACCEPTED_TYPES = ("application/json", "application/ld+json")


def _kb() -> KnowledgeBase:
    # PRESCRIBE_ARTIFACT pins the artifact (tests, `cmpkg serve --artifact`); otherwise the
    # current build is used, built first if the knowledge files changed.
    artifact = current_app.config.get("PRESCRIBE_ARTIFACT")
    return knowledge_base(Path(artifact) if artifact else None)


def _json(document: dict[str, Any], status: int) -> Response:
    accept = (request.headers.get("Accept") or "").lower()
    mimetype = "application/ld+json" if "ld+json" in accept or status == 200 else "application/json"
    if status == 200 and "application/json" in accept and "ld+json" not in accept:
        mimetype = "application/json"
    return Response(render(document), status=status, mimetype=mimetype)


def _error(status: int, message: str) -> Response:
    return _json(error_document(InvalidPresentation(status, message)), status)


@bp.post("/api/prescribe")
def prescribe_view() -> Response:
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return _error(413, f"request body too large: the limit is {limit} bytes")
    mimetype = (request.mimetype or "").lower()
    if mimetype and mimetype not in ACCEPTED_TYPES:
        return _error(415, "send the presentation as application/json or application/ld+json")
    try:
        kb = _kb()
    except Exception as err:  # no usable build: the service cannot answer, the client is not wrong
        log.error('{"event": "prescribe-unavailable", "error": %s}', json.dumps(str(err)))
        return _error(503, "the knowledge graph could not be loaded; try again later")
    try:
        document = prescribe_json(raw, kb)
    except InvalidPresentation as err:
        return _json(error_document(err), err.status)
    return _json(document, 200)


@bp.route("/api/prescribe", methods=["GET", "PUT", "PATCH", "DELETE"])
def wrong_method() -> Response:
    response = _error(405, "use POST with a presentation as JSON")
    response.headers["Allow"] = "POST, OPTIONS"
    return response


@bp.get("/api/prescribe/context.jsonld")
def context_view() -> Response:
    from service.prescribe.presentation import load_context

    body = json.dumps({"@context": load_context()}, indent=2, sort_keys=True) + "\n"
    return Response(body, mimetype="application/ld+json")


__all__ = ["DISCLAIMER", "bp"]
