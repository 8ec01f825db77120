"""`/openapi.json` (OpenAPI 3.1) generated from queries/ plus the fixed routes; `/docs` renders
it as a plain server-side HTML page (no script, nothing fetched from another origin); and
`/context.jsonld`, the published JSON-LD context.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from service import __version__
from service.prescribe.presentation import SCHEMA as PRESENTATION
from service.query import jsonld
from service.query.evidence import column_title
from service.query.named import NamedQuery
from service.web.api import API_MEDIA, CSV, JSONLD, MAX_PER_PAGE, catalog
from service.web.linked_data import LD_MEDIA

bp = Blueprint("openapi", __name__, template_folder="templates")

JSON_RESULTS = "application/sparql-results+json"
ERROR = {"$ref": "#/components/schemas/Problem"}
PROBLEM_JSON = "application/problem+json"
TEXT = {"type": "string"}


def _content(*media: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {m: {"schema": schema or TEXT} for m in media}


ERROR_REASONS = {
    400: "A malformed value (page, per_page, a typed literal, an unknown parameter)",
    404: "A value that names no term of the expected kind (with suggestions)",
    406: "None of the accepted media types can be produced",
    422: "A value that names several terms (ambiguous; the candidates as suggestions)",
}


def _errors(*codes: int, reasons: dict[int, str] | None = None) -> dict[str, Any]:
    """Error responses: every one is the Problem schema as application/problem+json."""
    return {
        str(code): {
            "description": (reasons or ERROR_REASONS)[code],
            "content": _content(PROBLEM_JSON, schema=ERROR),
        }
        for code in codes
    }


def _query_operation(query: NamedQuery, comp: jsonld.Compactor) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for p in query.parameters:
        schema: dict[str, Any] = {"type": "string"}
        if p.kind in ("integer", "decimal", "boolean"):
            schema["description"] = f"an xsd:{p.kind} literal"
        if p.default is not None:
            schema["default"] = comp.iri(p.default) if p.kind == "iri" else p.default
        if p.enum:
            schema["examples"] = [comp.iri(e) for e in p.enum[:50]]
        what = (
            "an IRI, a CURIE, a label or synonym (any case) or an external code such as "
            "MeSH:D005356"
            if p.kind == "iri"
            else f"a {p.kind} value"
        )
        parameters.append(
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": (p.description + " " if p.description else "") + f"Give {what}.",
                "schema": schema,
            }
        )
    parameters.append(
        {
            "name": "format",
            "in": "query",
            "required": False,
            "description": "Answer format; overrides the Accept header.",
            "schema": {"type": "string", "enum": ["jsonld", "json", "csv"]},
        }
    )
    if query.pagination is not None:
        parameters += [
            {
                "name": "page",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 10**6, "default": 1},
            },
            {
                "name": "per_page",
                "in": "query",
                "required": False,
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_PER_PAGE,
                    "default": query.pagination,
                },
            },
        ]
    return {
        "operationId": query.name,
        "summary": query.summary,
        "description": query.description,
        "tags": query.tags or ["queries"],
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "The answer (JSON-LD by default; SPARQL JSON or CSV on request)",
                "content": {
                    JSONLD: {"schema": _rows_of(JSONLD_ANSWER, f"{query.name}.row")},
                    JSON_RESULTS: {"schema": _rows_of(SPARQL_ANSWER, f"{query.name}.binding")},
                    CSV: {"schema": TEXT},
                },
            },
            **_errors(400, 404, 406, 422),
        },
    }


JSONLD_ANSWER = "#/components/schemas/Answer"
SPARQL_ANSWER = "#/components/schemas/SparqlResults"


def _rows_of(answer: str, row: str) -> dict[str, Any]:
    """An answer whose rows are the query's own (named columns), not just `object`."""
    rows = {"type": "array", "items": {"$ref": f"#/components/schemas/{row}"}}
    if answer == JSONLD_ANSWER:
        return {"allOf": [{"$ref": answer}, {"properties": {"results": rows}}]}
    return {
        "allOf": [
            {"$ref": answer},
            {"properties": {"results": {"properties": {"bindings": rows}}}},
        ]
    }


def row_schemas(query: NamedQuery) -> dict[str, Any]:
    """The JSON-LD row and the SPARQL JSON binding of one query, column by column.

    JSON-LD rows leave out the parameter columns (the answer gives them once under
    "parameters") and rename `id`/`type` columns; a column is absent when unbound. An IRI cell
    is a node object with its label (or a framed statement), a literal cell a string, number
    or boolean as its datatype says, so the cell schema names the column and its heading and
    constrains its JSON type only to those.
    """
    variables = query.variables
    parameters = {p.variable for p in query.parameters}
    # an `xLabel` column travels inside x's node (service.web.api.answer_document)
    parameters |= {f"{v}Label" for v in variables if f"{v}Label" in variables}
    cell: dict[str, Any] = {"type": ["object", "string", "number", "boolean"]}
    row_properties = {
        (v if v not in ("id", "type") else v + "Column"): {
            **cell,
            "description": query.columns.get(v) or column_title(v),
        }
        for v in variables
        if v not in parameters
    }
    binding_properties = {
        v: {"$ref": "#/components/schemas/SparqlTerm", "description": column_title(v)}
        for v in variables
    }
    open_ended = not variables  # SELECT *: the columns are not known before running
    return {
        f"{query.name}.row": {
            "type": "object",
            "properties": row_properties,
            "additionalProperties": open_ended,
        },
        f"{query.name}.binding": {
            "type": "object",
            "properties": binding_properties,
            "additionalProperties": open_ended,
        },
    }


PRESCRIBE_ERRORS = {
    400: "Unreadable body",
    404: "Unknown term",
    405: "Method not allowed",
    413: "Body too large",
    415: "Not JSON",
    422: "Invalid presentation: the SHACL report in `violations`",
    503: "Knowledge graph not loaded",
}


def _fixed_paths() -> dict[str, Any]:
    json_object = {"type": "object"}
    return {
        "/api/queries": {
            "get": {
                "operationId": "listQueries",
                "summary": "The named questions with their parameters",
                "tags": ["queries"],
                "responses": {
                    "200": {
                        "description": "Every question of queries/",
                        "content": _content(
                            "application/json", schema={"$ref": "#/components/schemas/QueryList"}
                        ),
                    }
                },
            }
        },
        "/cmpkg/{path}": {
            "get": {
                "operationId": "dereference",
                "summary": "Any IRI of https://w3id.org/cmpkg/ at its own path",
                "description": "HTML for browsers; Turtle, JSON-LD or N-Triples by content "
                "negotiation or ?format=ttl|jsonld|nt|html. Responses vary on Accept.",
                "tags": ["linked data"],
                "parameters": [
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "example": "condition/fibromyalgia",
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["html", "ttl", "jsonld", "nt"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The description",
                        "content": {
                            **_content(*(m for m in LD_MEDIA if m != JSONLD)),
                            **_content(JSONLD, "application/json", schema=json_object),
                        },
                    },
                    "404": {
                        "description": "No such resource",
                        "content": {
                            **_content("text/plain"),
                            **_content(PROBLEM_JSON, schema=ERROR),
                        },
                    },
                    "406": {
                        "description": "Not acceptable",
                        "content": {
                            **_content("text/plain"),
                            **_content(PROBLEM_JSON, schema=ERROR),
                        },
                    },
                },
            }
        },
        "/context.jsonld": {
            "get": {
                "operationId": "jsonldContext",
                "summary": "The published JSON-LD @context",
                "tags": ["linked data"],
                "responses": {
                    "200": {
                        "description": "The context",
                        "content": _content(JSONLD, schema=json_object),
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": _content("application/json", schema=json_object),
                    }
                },
            }
        },
        "/docs": {
            "get": {
                "operationId": "docs",
                "summary": "This document as a browsable page",
                "tags": ["meta"],
                "responses": {"200": {"description": "HTML", "content": _content("text/html")}},
            }
        },
        "/api/prescribe": {
            "post": {
                "operationId": "prescribe",
                "summary": "Ranked, explained exercise options for one clinical presentation",
                "description": "Decision support for clinicians and guideline authors; not "
                "advice to patients. The body names conditions, secondary pathologies (with an "
                "optional score and whether it is elevated), goals and preferences; see "
                "the README (Individualized exercise prescription). Invalid input answers "
                "422 with the SHACL report.",
                "tags": ["prescription"],
                "requestBody": {
                    "required": True,
                    "content": _content(
                        "application/json", "application/ld+json", schema=PRESENTATION
                    ),
                },
                "responses": {
                    "200": {
                        "description": "Ranked recommendations with claims, certainty, sources "
                        "and the rules that fired",
                        "content": _content(JSONLD, "application/json", schema=PRESCRIPTION),
                    },
                    # Problem details with the refused fields in `violations` and the
                    # disclaimer, as every prescription answer.
                    **_errors(400, 404, 405, 413, 415, 422, 503, reasons=PRESCRIBE_ERRORS),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "Alive",
                        "content": _content("application/json", schema=json_object),
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: build id, triples per graph",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "Ready",
                        "content": _content("application/json", schema=json_object),
                    }
                },
            }
        },
    }


# Every prescription answer carries the disclaimer and a plain-language summary.
PRESCRIPTION: dict[str, Any] = {
    "type": "object",
    "required": ["disclaimer", "summary"],
    "properties": {"disclaimer": {"type": "string"}, "summary": {"type": "string"}},
}

COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Problem": {
            "description": "RFC 9457 problem details: the one error format of the API",
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "parameter": {"type": "string"},
                "value": {"type": "string"},
                "suggestions": {"type": "array", "items": {"type": "string"}},
                "queries": {"type": "array", "items": {"type": "string"}},
                "problems": {"type": "array", "items": {"type": "object"}},
                "violations": {
                    "description": "What a prescription refused: field, rule, message",
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "rule", "message"],
                        "properties": {
                            "field": {"type": "string"},
                            "rule": {"type": "string"},
                            "message": {"type": "string"},
                            "suggestions": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
                "disclaimer": {"type": "string"},
            },
        },
        "SparqlTerm": {
            "type": "object",
            "required": ["type", "value"],
            "properties": {
                "type": {"type": "string", "enum": ["uri", "literal", "bnode", "triple"]},
                "value": {"type": ["string", "object"]},
                "datatype": {"type": "string"},
                "xml:lang": {"type": "string"},
            },
        },
        "Answer": {
            "type": "object",
            "required": ["@context", "disclaimer", "query", "parameters", "page", "results"],
            "properties": {
                "@context": {"type": "string"},
                "disclaimer": {"type": "string"},
                "query": {"type": "string"},
                "summary": {"type": "string"},
                "parameters": {"type": "object"},
                "page": {"type": "integer", "minimum": 1},
                "perPage": {"type": "integer", "minimum": 1},
                "next": {"type": ["string", "null"]},
                "total": {"type": ["integer", "null"], "minimum": 0},
                "results": {"type": "array", "items": {"type": "object"}},
            },
        },
        "SparqlResults": {
            "type": "object",
            "required": ["head", "results"],
            "properties": {
                "head": {
                    "type": "object",
                    "properties": {"vars": {"type": "array", "items": {"type": "string"}}},
                },
                "results": {
                    "type": "object",
                    "required": ["bindings"],
                    "properties": {"bindings": {"type": "array", "items": {"type": "object"}}},
                },
            },
        },
        "QueryList": {
            "type": "object",
            "required": ["disclaimer", "queries"],
            "properties": {
                "disclaimer": {"type": "string"},
                "queries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "summary", "parameters", "href"],
                        "properties": {
                            "name": {"type": "string"},
                            "summary": {"type": "string"},
                            "href": {"type": "string"},
                            "parameters": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    }
}


def openapi_document(queries: dict[str, NamedQuery]) -> dict[str, Any]:
    """The API description: one operation per named query plus the fixed routes."""
    comp = jsonld.compactor()
    paths: dict[str, Any] = {}
    fixed = _fixed_paths()
    paths["/api/queries"] = fixed.pop("/api/queries")
    for name, query in sorted(queries.items()):
        paths[f"/api/queries/{name}"] = {"get": _query_operation(query, comp)}
    paths.update(fixed)
    components = {"schemas": dict(COMPONENTS["schemas"])}
    for _, query in sorted(queries.items()):
        components["schemas"].update(row_schemas(query))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cmp-kg: exercise for chronic musculoskeletal pain",
            "version": __version__,
            "description": f"{jsonld.DISCLAIMER} Named questions over an evidence knowledge "
            "graph, its IRIs as Linked Data, and the published JSON-LD context. Accepted "
            f"answer formats for questions: {', '.join(API_MEDIA)}.",
        },
        "paths": paths,
        "components": components,
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(catalog().queries))


@bp.get("/docs")
def docs() -> str:
    document = openapi_document(catalog().queries)
    operations = [
        {"path": path, "method": method.upper(), **operation}
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    return render_template(
        "ld/docs.html", document=document, operations=operations, disclaimer=jsonld.DISCLAIMER
    )


@bp.get(jsonld.CONTEXT_URL_PATH)
def context_file() -> Response:
    body = jsonld.context_path().read_bytes()
    response = Response(body, content_type=JSONLD)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
