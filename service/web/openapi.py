"""`/openapi.json` (OpenAPI 3.1) generated from queries/ plus the fixed routes; `/docs` renders
it as a plain server-side HTML page (no script, nothing fetched from another origin); and
`/context.jsonld`, the published JSON-LD context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template

from service import __version__
from service.kb.sources import PREFIXES
from service.prescribe.presentation import SCHEMA as PRESENTATION
from service.query import jsonld
from service.query.evidence import column_title
from service.query.named import NamedQuery
from service.vocab import NUMERIC_DATATYPES
from service.web.api import API_MEDIA, CSV, JSONLD, MAX_PER_PAGE, catalog, select_rows
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


JSON_CONVENTION = (
    "JSON conventions: every id (`id`, `@id`) is a full IRI; labels are strings; numbers are "
    "JSON numbers (the context coerces none, so a JSON-LD processor reads them as xsd:double "
    "or xsd:integer; the exact published literal is in SPARQL results, format=json, and the "
    "Linked Data RDF); every error is application/problem+json (RFC 9457)."
)
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


XSD = PREFIXES["xsd"]
LABEL = PREFIXES["rdfs"] + "label"
INTEGER_TYPES = NUMERIC_DATATYPES - {XSD + "decimal", XSD + "double", XSD + "float"}
# A JSON-LD row's cell, by what the column holds (issue 14: numbers are JSON numbers).
NODE = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "string", "format": "iri"}, "label": {"type": "string"}},
}
ANY_CELL: dict[str, Any] = {"type": ["object", "string", "number", "boolean"]}
CELLS: dict[str, dict[str, Any]] = {
    "iri": NODE,
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
}
RANGES_QUERY = f"""SELECT ?p ?r WHERE {{
  {{ ?p <{PREFIXES["rdfs"]}range> ?r }}
  UNION {{ ?p a <{PREFIXES["owl"]}ObjectProperty> BIND(<{PREFIXES["owl"]}Thing> AS ?r) }}
}}"""


def column_kinds(query: NamedQuery, ranges: Mapping[str, set[str]]) -> dict[str, str]:
    """What each column holds (iri, integer, number, boolean, string), where the query says:
    the declared range of the property that binds it in a triple pattern, or COUNT. Columns
    bound otherwise (BIND, paths, UNIONs of different kinds) are left out: any JSON type."""
    bound, counted = _bindings(query.text)
    kinds: dict[str, str] = dict.fromkeys(counted, "integer")
    ranges = {**ranges, LABEL: {XSD + "string"}}  # labels are plain strings in the answers
    for variable, predicates in bound.items():
        found = {_kind(r) for p in predicates for r in ranges.get(p, {""})}
        if len(found) == 1 and "" not in found:
            kinds.setdefault(variable, found.pop())
    return kinds


def _kind(range_iri: str) -> str:
    if not range_iri:
        return ""
    if range_iri in INTEGER_TYPES:
        return "integer"
    if range_iri in NUMERIC_DATATYPES:
        return "number"
    if range_iri == XSD + "boolean":
        return "boolean"
    if range_iri in (XSD + "string", PREFIXES["rdf"] + "langString"):
        return "string"
    return "" if range_iri.startswith(XSD) else "iri"  # a class: the column holds IRIs


@lru_cache(maxsize=256)
def _bindings(text: str) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """Variables bound as the object of a plain predicate, and those bound by COUNT, read off
    the query's algebra (rdflib's SPARQL parser: the query is our own file, never a user's)."""
    from rdflib.plugins.sparql import prepareQuery
    from rdflib.plugins.sparql.parserutils import CompValue
    from rdflib.term import URIRef, Variable

    bound: dict[str, set[str]] = {}
    counts: set[str] = set()
    extends: dict[str, str] = {}
    pending: list[Any] = [prepareQuery(text).algebra]
    while pending:
        node = pending.pop()
        if isinstance(node, list | tuple):
            pending.extend(node)
        if not isinstance(node, CompValue):
            continue
        if node.name == "BGP":
            for _, p, o in node.triples:
                if isinstance(p, URIRef) and isinstance(o, Variable):
                    bound.setdefault(str(o), set()).add(str(p))
        elif node.name == "Aggregate_Count":
            counts.add(str(node.res))
        elif node.name == "Extend" and isinstance(node.expr, Variable):
            extends[str(node.var)] = str(node.expr)
        pending.extend(node.values())
    counted = frozenset(v for v, e in extends.items() if e in counts)
    return {v: frozenset(ps) for v, ps in bound.items()}, counted


def row_schemas(query: NamedQuery, ranges: Mapping[str, set[str]]) -> dict[str, Any]:
    """The JSON-LD row and the SPARQL JSON binding of one query, column by column.

    JSON-LD rows leave out the parameter columns (the answer gives them once under
    "parameters") and rename `id`/`type` columns; a column is absent when unbound. A column
    the query binds to IRIs is a node object (`id`, the full IRI, and `label`; a framed
    statement has more), a numeric column a JSON number (`integer` for integer ranges and
    COUNTs), a boolean or string column that JSON type; others any of them.
    """
    variables = query.variables
    parameters = {p.variable for p in query.parameters}
    # an `xLabel` column travels inside x's node (service.web.api.answer_document)
    parameters |= {f"{v}Label" for v in variables if f"{v}Label" in variables}
    kinds = column_kinds(query, ranges)
    row_properties = {
        (v if v not in ("id", "type") else v + "Column"): {
            **CELLS.get(kinds.get(v, ""), ANY_CELL),
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
            "description": JSON_CONVENTION,
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


def property_ranges(select: Callable[[str], list[dict[str, str | None]]]) -> dict[str, set[str]]:
    """Each property's declared ranges in the served build (owl:Thing for object properties)."""
    ranges: dict[str, set[str]] = {}
    for row in select(RANGES_QUERY):
        if row.get("p") and row.get("r"):
            ranges.setdefault(str(row["p"]), set()).add(str(row["r"]))
    return ranges


def openapi_document(
    queries: dict[str, NamedQuery], ranges: Mapping[str, set[str]] | None = None
) -> dict[str, Any]:
    """The API description: one operation per named query plus the fixed routes; `ranges`
    (property -> declared ranges) types the result columns."""
    ranges = ranges or {}
    comp = jsonld.compactor()
    paths: dict[str, Any] = {}
    fixed = _fixed_paths()
    paths["/api/queries"] = fixed.pop("/api/queries")
    for name, query in sorted(queries.items()):
        paths[f"/api/queries/{name}"] = {"get": _query_operation(query, comp)}
    paths.update(fixed)
    components = {"schemas": dict(COMPONENTS["schemas"])}
    for _, query in sorted(queries.items()):
        components["schemas"].update(row_schemas(query, ranges))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cmp-kg: exercise for chronic musculoskeletal pain",
            "version": __version__,
            "description": f"{jsonld.DISCLAIMER} Named questions over an evidence knowledge "
            "graph, its IRIs as Linked Data, and the published JSON-LD context. Accepted "
            f"answer formats for questions: {', '.join(API_MEDIA)}. {JSON_CONVENTION}",
        },
        "paths": paths,
        "components": components,
    }


def served_document() -> dict[str, Any]:
    """The served build's API description, made once per build."""
    cat = catalog()
    cached = current_app.extensions.get("cmpkg.openapi")
    if cached is None or cached[0] != cat.build_id:
        cached = (cat.build_id, openapi_document(cat.queries, property_ranges(select_rows)))
        current_app.extensions["cmpkg.openapi"] = cached
    return cached[1]


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(served_document())


@bp.get("/docs")
def docs() -> str:
    document = served_document()
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
