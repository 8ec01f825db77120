"""`/fhir`: the evidence as FHIR R5 resources, read-only (docs/FHIR.md).

GET /fhir/metadata (CapabilityStatement), /fhir/{type}/{id} (read) and /fhir/{type}?...
(search: Evidence by condition, intervention, outcome; terms resolved by service.terms exactly
as /api/queries resolves them, or given as a FHIR token `system|code`). Answers are
application/fhir+json; every error is an OperationOutcome: 404 for an unknown type, id or
term, 400 for an unknown or repeated search parameter, 503 when no build can be read. The
resources are mapped once per served build.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import Blueprint, Response, current_app, request

from service.fhir.bundle import (
    RESOURCE_TYPES,
    SEARCH_PARAMETERS,
    FhirIndex,
    InvalidResource,
    searchset,
)
from service.fhir.codes import FHIR_JSON, term_iri
from service.fhir.server import capability_statement, operation_outcome
from service.query.named import PARAMETER_CLASSES
from service.query.terms import UnknownTerm
from service.store.backends import StoreError
from service.web import api

bp = Blueprint("fhir", __name__, url_prefix="/fhir")

_LOCK = threading.Lock()
_KEY = "cmpkg.fhir"


def _fhir(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        content_type=f"{FHIR_JSON}; charset=utf-8",
    )


def _outcome(status: int, code: str, message: str) -> Response:
    return _fhir(operation_outcome(code, message), status)


def _index() -> FhirIndex:
    """The resources of the served build, mapped once per build id."""
    from service.web import state

    build_id = state(current_app).store.build_id
    cached = current_app.extensions.get(_KEY)
    if cached is not None and cached[0] == build_id:
        return cached[1]
    with _LOCK:
        cached = current_app.extensions.get(_KEY)
        if cached is None or cached[0] != build_id:
            cached = (build_id, FhirIndex.from_select(api.select_rows))
            current_app.extensions[_KEY] = cached
        return cached[1]


def _unknown_type(rtype: str) -> Response:
    return _outcome(
        404,
        "not-supported",
        f"resource type {rtype!r} is not served here; types: {', '.join(RESOURCE_TYPES)}",
    )


def _token(name: str, value: str) -> str:
    """A FHIR token `system|code` (as our EvidenceVariable codings write it) as the IRI the
    term resolver knows; any other value goes to the resolver as typed."""
    system, bar, code = value.partition("|")
    if not bar:
        return value
    iri = term_iri(system, code)
    if iri is None:
        raise UnknownTerm(value, name, [], "unknown code system in token")
    return iri


@bp.get("/metadata")
def metadata() -> Response:
    return _fhir(capability_statement())


@bp.get("/<rtype>/<rid>")
def read(rtype: str, rid: str) -> Response:
    if rtype not in RESOURCE_TYPES:
        return _unknown_type(rtype)
    try:
        resource = _index().read(rtype, rid)
    except StoreError as err:
        return _outcome(err.status, "transient", err.message)
    except InvalidResource as err:  # a mapping bug: say so rather than serve invalid FHIR
        return _outcome(500, "exception", str(err))
    if resource is None:
        return _outcome(404, "not-found", f"no {rtype} with id {rid!r}")
    return _fhir(resource)


@bp.get("/<rtype>")
def search(rtype: str) -> Response:
    if rtype not in RESOURCE_TYPES:
        return _unknown_type(rtype)
    allowed = SEARCH_PARAMETERS[rtype]
    for name, values in request.args.lists():
        if name not in allowed:
            supported = ", ".join(allowed) or "none"
            return _outcome(
                400,
                "not-supported",
                f"unknown search parameter {name!r} for {rtype}; supported: {supported}",
            )
        if len(values) > 1:
            return _outcome(400, "invalid", f"search parameter {name!r} given more than once")
    try:
        resolver = api.catalog().resolver
        terms = {
            name: resolver.resolve(_token(name, value), PARAMETER_CLASSES[name], name)
            for name, value in request.args.items()
        }
        found = _index().search(rtype, terms)
    except UnknownTerm as err:
        return _outcome(404, "not-found", str(err))
    except StoreError as err:
        return _outcome(err.status, "transient", err.message)
    except InvalidResource as err:
        return _outcome(500, "exception", str(err))
    return _fhir(searchset(found, request.url))
