"""The one error body of the JSON API and the pages' JSON twins: RFC 9457 problem details.

Every JSON error is `application/problem+json` with `type`, `title`, `status` and `detail`;
what a client can act on travels as extension members (`parameter`, `value`, `suggestions`,
`queries`, `problems`). `type` is `about:blank` (RFC 9457 section 4.2.1: the status code says
it all) except for the problem kinds a client may want to tell apart, which get a stable IRI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Response

from service.query.terms import UnknownTerm

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = "https://w3id.org/cmpkg/problem/"


def problem(status: int, detail: str, kind: str | None = None, **extensions: Any) -> dict[str, Any]:
    """The problem document; `kind` names a problem type under PROBLEM_TYPES."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_TYPES + kind if kind else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extensions.items() if v is not None})
    return body


def problem_response(
    status: int,
    detail: str,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    return respond(problem(status, detail, kind, **extensions), headers)


def respond(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    """A problem document (from `problem` or `term_problem`) as the HTTP response."""
    response = Response(
        json.dumps(body, ensure_ascii=False), status=body["status"], content_type=PROBLEM_JSON
    )
    response.headers.update(headers or {})
    return response


def term_status(err: UnknownTerm) -> int:
    """404 for a value that names none of our terms, 422 for one that names several."""
    return 422 if err.reason == "ambiguous term" else 404


def term_problem(err: UnknownTerm) -> dict[str, Any]:
    """An unresolvable term: what was asked, and the terms it may have meant."""
    return problem(
        term_status(err),
        str(err),
        "ambiguous-term" if term_status(err) == 422 else "unknown-term",
        parameter=err.parameter or None,
        value=err.value,
        suggestions=list(err.suggestions),
    )
