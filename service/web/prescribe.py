"""`POST /api/prescribe`: a presentation in, ranked and explained recommendations out (JSON-LD).

Thin: reads the body within the app's size cap and hands it to a sandboxed query worker
(`Store.call`), where the JSON is read (nesting bounded) and `service.prescribe` runs under the
same deadline and memory cap as a query; its errors map to 4xx, a limit to 503. Every answer,
errors included, carries the decision-support disclaimer.
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
    knowledge_base,
    prescribe_json,
    render,
)
from service.prescribe.presentation import InvalidPresentation
from service.store.backends import Call, StoreError
from service.web.problems import PROBLEM_JSON, problem

bp = Blueprint("prescribe", __name__)
log = logging.getLogger("cmpkg.prescribe")

ACCEPTED_TYPES = ("application/json", "application/ld+json")


MAX_JSON_DEPTH = 32  # a presentation nests three levels; '[' * 100000 must not recurse


def _artifact() -> str | None:
    """The artifact the service is serving (checked against its manifest when it was loaded),
    or the one PRESCRIBE_ARTIFACT pins (tests). A request never builds: with no served
    artifact there is nothing to reason over, and the worker answers 503."""
    from service.web import state

    artifact = current_app.config.get("PRESCRIBE_ARTIFACT") or state(current_app).artifact
    return str(artifact) if artifact else None


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text, brackets inside strings ignored."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot nest deeper than the limit: skip the scan
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def problem_document(err: InvalidPresentation) -> dict[str, Any]:
    """The API's one error shape (RFC 9457, as service.web.problems) for a refused
    presentation: what broke travels in `violations` (field, rule, message), and the
    decision-support disclaimer rides on every prescription answer, errors included."""
    return problem(
        err.status,
        err.message,
        "invalid-presentation" if err.problems else None,
        violations=[p.to_dict() for p in err.problems],
        disclaimer=DISCLAIMER,
    )


def answer_in_worker(raw: bytes, artifact: str | None) -> tuple[int, bytes]:
    """In a query worker: the prescription document (or error document) and its status."""
    try:
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise InvalidPresentation(
                400, f"request body nests JSON more than {MAX_JSON_DEPTH} levels deep"
            )
        if artifact is None:
            raise LookupError("no built knowledge graph")
        try:
            kb = knowledge_base(Path(artifact))
        except Exception as err:  # no usable build: the service cannot answer
            log.error('{"event": "prescribe-unavailable", "error": %s}', json.dumps(str(err)))
            raise LookupError(str(err)) from None
        document = prescribe_json(raw, kb)
    except InvalidPresentation as err:
        return err.status, render(problem_document(err))
    except LookupError:
        unavailable = InvalidPresentation(503, "the knowledge graph could not be loaded; try later")
        return 503, render(problem_document(unavailable))
    return 200, render(document)


def _mimetype(status: int) -> str:
    if status != 200:
        return PROBLEM_JSON
    accept = (request.headers.get("Accept") or "").lower()
    if "application/json" in accept and "ld+json" not in accept:
        return "application/json"
    return "application/ld+json"


def _json(document: dict[str, Any], status: int) -> Response:
    return Response(render(document), status=status, mimetype=_mimetype(status))


def _error(status: int, message: str) -> Response:
    return _json(problem_document(InvalidPresentation(status, message)), status)


def served_knowledge_base() -> KnowledgeBase | None:
    """The served build's knowledge base (terms and choices for the prescription form);
    None when nothing is served. Loading it never builds."""
    artifact = _artifact()
    return knowledge_base(Path(artifact)) if artifact else None


def run_prescription(raw: bytes) -> tuple[int, bytes]:
    """Status and JSON bytes for a presentation, computed in a sandboxed worker under the
    query deadline and memory cap: the API and the prescription page both come here."""
    from service.web import state

    timeout = float(current_app.config["SPARQL_TIMEOUT"])
    try:
        return state(current_app).store.call(Call(answer_in_worker, (raw, _artifact())), timeout)
    except StoreError as err:  # the deadline or the memory cap of the worker
        status = err.status if err.status >= 500 else 503
        return status, render(problem_document(InvalidPresentation(status, err.message)))


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
    status, body = run_prescription(raw)
    return Response(body, status=status, mimetype=_mimetype(status))


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
