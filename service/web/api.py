"""`/api/queries`: the named questions of queries/ as a web API.

Values are resolved to our terms (IRI, CURIE, label, synonym, external code) and refused with
404 + suggestions when they name nothing. Resolved terms travel beside the query text as
substitutions: the embedded store binds them in the engine (SEP-0007), and only the remote
store, which the SPARQL protocol gives no way to bind, writes them in with
`service.query.named.inline` (Oxigraph's serialiser, variable positions only).
Answers: JSON-LD (default), SPARQL JSON, CSV; `page`/`per_page` for paginated queries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pyoxigraph as ox
from flask import Blueprint, Response, current_app, jsonify, request

from service import config
from service.kb.sources import PREFIXES
from service.query import jsonld
from service.query.evidence import (
    fetch_labels,
    is_iri,
    result_csv,
    result_table,
    rows_from_sparql_json,
)
from service.query.named import NamedQuery, PreparedQuery, fill_enums, load_queries, prepare
from service.query.terms import _INDEX_QUERY, _TYPE_QUERY, TermResolver, UnknownTerm
from service.store.backends import QueryJob, Store, StoreError
from service.store.results import JSON_RESULTS, term_json
from service.store.safety import Dataset
from service.web.problems import problem_response, respond, term_problem
from service.web.protocol import ProtocolError, choose_format

bp = Blueprint("api", __name__)

JSONLD = "application/ld+json"
CSV = "text/csv"
API_MEDIA = [JSONLD, JSON_RESULTS, CSV]
RESERVED = {"page", "per_page", "format"}
MAX_PER_PAGE = 1000
INTERNAL_ROW_CAP = 10_000_000  # our own lookups are never cut by the public row cap
# Namespaces whose members are sourced statements: framed in full in JSON-LD answers.
STATEMENT_NAMESPACES = (
    PREFIXES["claim"],
    PREFIXES["finding"],
    PREFIXES["rec"],
    "https://w3id.org/cmpkg/support/",
)
LINK_PROPERTIES = ("label", "doi", "pmid", "year", "rank", "notation")


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# -- talking to the store (also used by the linked-data pages) --------------------------------


def _timeout() -> float:
    return float(current_app.config.get("SPARQL_TIMEOUT", config.default("timeout")))


def run_select(
    store: Store,
    text: str,
    row_cap: int = INTERNAL_ROW_CAP,
    substitutions: Mapping[str, ox.NamedNode | ox.Literal] | None = None,
) -> Mapping[str, Any]:
    """A SELECT through the store, as parsed SPARQL JSON (head + bindings)."""
    job = QueryJob(text, "SELECT", Dataset(), JSON_RESULTS, row_cap, dict(substitutions or {}))
    answer = store.execute(job, _timeout())
    results = json.loads(answer.body)
    results["truncated"] = answer.truncated
    return results


def run_construct(store: Store, text: str) -> list[ox.Triple]:
    job = QueryJob(text, "CONSTRUCT", Dataset(), "application/n-triples", INTERNAL_ROW_CAP)
    answer = store.execute(job, _timeout())
    return [q.triple for q in ox.parse(answer.body, format=ox.RdfFormat.N_TRIPLES)]


def term_from_json(value: Mapping[str, Any]) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    kind = value["type"]
    if kind == "uri":
        return ox.NamedNode(value["value"])
    if kind == "bnode":
        return ox.BlankNode(value["value"])
    if "xml:lang" in value:
        return ox.Literal(value["value"], language=value["xml:lang"])
    if "datatype" in value:
        return ox.Literal(value["value"], datatype=ox.NamedNode(value["datatype"]))
    return ox.Literal(value["value"])


def iri_values(iris: list[str]) -> str:
    """IRIs from store answers as a VALUES body; NamedNode refuses anything not an IRI."""
    return " ".join(str(ox.NamedNode(i)) for i in sorted(set(iris)))


@dataclass
class _Catalog:
    build_id: str
    queries: dict[str, NamedQuery]
    resolver: TermResolver


_LOCK = threading.Lock()


def catalog() -> _Catalog:
    """Queries and the term index of the served build, made once per build."""
    from service.web import state

    store = state(current_app).store
    cached = current_app.extensions.get("cmpkg.api")
    if cached is not None and cached.build_id == store.build_id:
        return cached
    with _LOCK:
        cached = current_app.extensions.get("cmpkg.api")
        if cached is not None and cached.build_id == store.build_id:
            return cached
        resolver = build_resolver(store)
        queries = load_queries(current_app.config.get("CMPKG_QUERIES_DIR"))
        fill_enums(queries, resolver)
        cached = _Catalog(store.build_id, queries, resolver)
        current_app.extensions["cmpkg.api"] = cached
        return cached


def select_rows(text: str) -> list[dict[str, str | None]]:
    """A SELECT on the served store as plain rows (variable -> IRI or lexical form)."""
    from service.web import state

    return rows_from_sparql_json(run_select(state(current_app).store, text))


def run_named(name: str, values: Mapping[str, str]) -> list[dict[str, str | None]]:
    """One named question with its values bound by the engine, as plain rows."""
    from service.web import state

    cat = catalog()
    if name not in cat.queries:
        raise LookupError(f"no query named {name!r}")
    prepared = prepare(cat.queries[name], values, cat.resolver)  # UnknownTerm / ValueError
    bound = {v.value: term for v, term in prepared.substitutions.items()}
    return rows_from_sparql_json(
        run_select(state(current_app).store, prepared.text, substitutions=bound)
    )


def build_resolver(store: Store) -> TermResolver:
    """The same index `TermResolver.from_store` builds, asked through the store interface."""
    from service.query.terms import _LABEL_RANK, _MATCH_RANK

    labels, matches = [], []
    for row in run_select(store, _INDEX_QUERY)["results"]["bindings"]:
        s, p, o = row.get("s"), row.get("p"), row.get("o")
        if not s or not p or not o or s["type"] != "uri":
            continue
        if p["value"] in _LABEL_RANK and o["type"] == "literal":
            labels.append((s["value"], o["value"], _LABEL_RANK[p["value"]]))
        elif p["value"] in _MATCH_RANK and o["type"] == "uri":
            matches.append((s["value"], o["value"], _MATCH_RANK[p["value"]]))
    types = [
        (row["s"]["value"], row["t"]["value"])
        for row in run_select(store, _TYPE_QUERY)["results"]["bindings"]
        if "s" in row and "t" in row
    ]
    return TermResolver(labels, matches, types)


# -- routes -----------------------------------------------------------------------------------


def describe(query: NamedQuery) -> dict[str, Any]:
    return {
        "name": query.name,
        "summary": query.summary,
        "description": query.description,
        "tags": query.tags,
        "paginated": query.pagination is not None,
        "perPage": query.pagination,
        "href": f"/api/queries/{query.name}",
        "parameters": [
            {
                "name": p.name,
                "kind": p.kind,
                "required": p.required,
                "default": p.default,
                "termClass": p.term_class,
                "choices": p.enum,
            }
            for p in query.parameters
        ],
    }


@bp.get("/api/queries")
def list_queries() -> Response:
    try:
        queries = catalog().queries
    except StoreError as err:
        return _error(ApiError(err.status, err.message))
    return jsonify(
        {"disclaimer": jsonld.DISCLAIMER, "queries": [describe(q) for q in queries.values()]}
    )


@bp.get("/api/queries/<name>")
def run(name: str) -> Response:
    try:
        return _run(name)
    except ApiError as err:
        return _error(err)
    except UnknownTerm as err:
        return respond(term_problem(err))
    except ProtocolError as err:
        return _error(ApiError(err.status, err.message))
    except ValueError as err:
        return _error(ApiError(400, str(err)))
    except StoreError as err:
        return _error(ApiError(err.status, err.message))


def _error(err: ApiError) -> Response:
    """Every API error as RFC 9457 problem details (service.web.problems)."""
    return problem_response(err.status, err.message, **err.extra)


def _positive(name: str, raw: str | None, default: int, limit: int) -> int:
    if raw is None:
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or not 1 <= int(text) <= limit:
        raise ApiError(400, f"{name} must be an integer from 1 to {limit}, not {raw!r}")
    return int(text)


def _run(name: str) -> Response:
    cat = catalog()
    query = cat.queries.get(name)
    if query is None:
        raise ApiError(404, f"no query named {name!r}", queries=sorted(cat.queries))
    media = choose_format(request.args.get("format"), request.headers.get("Accept"), API_MEDIA)
    _refuse_repeated_parameters()
    page, per_page = _paging(query, name)
    values = {k: v for k, v in request.args.items() if k not in RESERVED}
    prepared = prepare(query, values, cat.resolver)  # UnknownTerm / ValueError
    from service.web import state

    store = state(current_app).store
    bound = {v.value: term for v, term in prepared.substitutions.items()}
    cap = int(current_app.config["SPARQL_ROW_CAP"])
    # A paginated question runs whole (within the row cap) and is sliced here, so every page
    # can say how many rows there are; the answer cache makes the other pages cheap.
    results = run_select(store, query.text, cap + 1, bound)
    sliced = _slice(results, cap, page, per_page)
    bindings = _with_parameters(sliced.bindings, results["head"]["vars"], query, bound)
    headers = {"Vary": "Accept", "X-Disclaimer": jsonld.DISCLAIMER}
    if results.get("truncated") or len(bindings) > cap:
        bindings = bindings[:cap]
        headers["X-Result-Truncated"] = f"row cap {cap} reached"
    results["results"]["bindings"] = bindings
    next_url = _paging_headers(headers, sliced) if per_page is not None else None
    if media == JSON_RESULTS:
        body = {"head": results["head"], "results": {"bindings": bindings}}
        return Response(json.dumps(body, ensure_ascii=False), content_type=media, headers=headers)
    if media == CSV:
        return _csv(results["head"], bindings, query, headers)
    document = answer_document(
        store, query, results["head"]["vars"], bindings, prepared, page, per_page, next_url
    )
    if per_page is not None:
        document["total"] = sliced.total
    return Response(json.dumps(document, ensure_ascii=False), content_type=JSONLD, headers=headers)


def _refuse_repeated_parameters() -> None:
    for key, given in request.args.lists():
        if len(given) > 1:
            raise ApiError(400, f"parameter {key!r} given more than once")


def _paging(query: NamedQuery, name: str) -> tuple[int, int | None]:
    """The page asked for and its size; None as the size for a question answered whole."""
    page = _positive("page", request.args.get("page"), 1, 10**6)
    if query.pagination is None:
        if page != 1 or "per_page" in request.args:
            raise ApiError(400, f"query {name!r} is not paginated: it answers in one page")
        return page, None
    per_page = _positive("per_page", request.args.get("per_page"), query.pagination, MAX_PER_PAGE)
    return page, per_page


@dataclass(frozen=True)
class _Slice:
    bindings: list[dict[str, Any]]
    page: int
    per_page: int | None
    total: int | None  # None: not paginated, or more rows than the cap (count unknown)
    has_next: bool


def _slice(results: Mapping[str, Any], cap: int, page: int, per_page: int | None) -> _Slice:
    """The rows of the page asked for, and what the paging headers need to know."""
    bindings = results["results"]["bindings"]
    if per_page is None:
        return _Slice(bindings, page, None, None, False)
    total = len(bindings) if not results.get("truncated") and len(bindings) <= cap else None
    has_next = len(bindings) > page * per_page
    rows = bindings[(page - 1) * per_page : page * per_page]
    return _Slice(rows, page, per_page, total, has_next)


def _with_parameters(
    bindings: list[dict[str, Any]], head: list[str], query: NamedQuery, bound: dict[str, Any]
) -> list[dict[str, Any]]:
    """Rows in the head's column order (whichever store answered), a parameter projected as
    `$_name` given its value: the engine may leave a bound variable unbound in the row."""
    for row in bindings:
        for p in query.parameters:
            term = bound.get(p.variable)
            if term is not None and p.variable in head:
                row[p.variable] = term_json(term)
    return [{v: row[v] for v in head if v in row} for row in bindings]


def _paging_headers(headers: dict[str, str], sliced: _Slice) -> str | None:
    """Link, X-Total-Count and CORS exposure of both; the next page's URL, if any."""
    assert sliced.per_page is not None
    links = _page_links(sliced.page, sliced.per_page, sliced.total, sliced.has_next)
    if links:
        headers["Link"] = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())
    if sliced.total is not None:
        headers["X-Total-Count"] = str(sliced.total)
    # browsers' scripts may read the paging headers too
    headers["Access-Control-Expose-Headers"] = "ETag, X-Result-Truncated, Link, X-Total-Count"
    return links.get("next")


def _csv(
    head: dict[str, Any], bindings: list[dict[str, Any]], query: NamedQuery, headers: dict[str, str]
) -> Response:
    """For people and spreadsheets: labels and IRIs in separate, named columns, no internal
    variables (SPARQL CSV stays available at /sparql)."""
    rows = rows_from_sparql_json({"head": head, "results": {"bindings": bindings}})
    iris = {v for r in rows for v in r.values() if is_iri(v)}
    table = result_table(rows, fetch_labels(select_rows, iris), head["vars"], query.columns)
    return Response(result_csv(table), content_type="text/csv; charset=utf-8", headers=headers)


def _page_links(page: int, per_page: int, total: int | None, has_next: bool) -> dict[str, str]:
    """RFC 8288 links between the pages of an answer (next first: clients look for it)."""

    def url(number: int) -> str:
        args = request.args.to_dict()
        args["page"] = str(number)
        return f"{request.base_url}?{urlencode(args)}"

    links: dict[str, str] = {}
    if has_next:
        links["next"] = url(page + 1)
    if page > 1:
        links["prev"] = url(page - 1)
    links["first"] = url(1)
    if total is not None:
        links["last"] = url(max(1, -(-total // per_page)))
    return links


# -- JSON-LD answers --------------------------------------------------------------------------


def context_url() -> str:
    return request.host_url.rstrip("/") + jsonld.CONTEXT_URL_PATH


def answer_document(
    store: Store,
    query: NamedQuery,
    variables: list[str],
    bindings: list[dict[str, Any]],
    prepared: PreparedQuery,
    page: int,
    per_page: int | None,
    next_url: str | None,
) -> dict[str, Any]:
    """The rows as JSON-LD: each IRI with its label, each statement framed in full.

    Plain JSON (issue 14): every `id` a full IRI, labels strings, numbers JSON numbers (the
    context coerces no numeric term: a processor reads them as xsd:double or xsd:integer).
    """
    comp = jsonld.compactor(plain=True)
    iris = [cell["value"] for row in bindings for cell in row.values() if cell.get("type") == "uri"]
    statements = [i for i in dict.fromkeys(iris) if i.startswith(STATEMENT_NAMESPACES)]
    triples = _describe(store, iris, statements)
    framed = jsonld.frame(statements, triples, plain=True)
    labels: dict[str, ox.Literal] = {}
    label_iri = PREFIXES["rdfs"] + "label"
    for t in sorted(triples, key=str):
        label = t.object if t.predicate.value == label_iri else None
        if isinstance(label, ox.Literal) and not isinstance(t.subject, ox.Triple):
            labels.setdefault(t.subject.value, label)
    parameter_columns = {p.variable for p in query.parameters}  # given once, in "parameters"
    # An `xLabel` column is the label of `x`: it goes inside x's node as a plain string.
    label_columns = {f"{v}Label": v for v in variables if f"{v}Label" in variables}
    rows = []
    for row in bindings:
        out: dict[str, Any] = {}
        for var in variables:
            cell = row.get(var)
            if cell is None or var in parameter_columns or var in label_columns:
                continue
            term = term_from_json(cell)
            key = var if var not in ("id", "type") else var + "Column"
            if isinstance(term, ox.NamedNode):
                node = framed.get(term.value) or jsonld.label_node(
                    term.value, labels.get(term.value), comp
                )
                own = row.get(f"{var}Label")
                if own is not None and "label" not in node:
                    node = {**node, "label": own["value"]}
                out[key] = node
            else:
                out[key] = comp.value(term, comp.definitions.get(key, {}))
        rows.append(out)
    parameters = {
        v.value.lstrip("_").removesuffix("_iri"): (
            t.value if isinstance(t, ox.NamedNode) else comp.value(t, {})
        )
        for v, t in prepared.substitutions.items()
    }
    document: dict[str, Any] = {
        "@context": context_url(),
        "disclaimer": jsonld.DISCLAIMER,
        "query": query.name,
        "summary": query.summary,
        "parameters": parameters,
        "page": page,
    }
    if per_page is not None:
        document["perPage"] = per_page
        document["next"] = next_url
    document["results"] = rows
    return document


def _describe(store: Store, iris: list[str], statements: list[str]) -> list[ox.Triple]:
    """Labels of every IRI in the rows; statements in full with what they point at."""
    if not iris:
        return []
    cmp_ = PREFIXES["cmp"]
    linked = " ".join(f"<{cmp_}{p}>" for p in LINK_PROPERTIES if p != "label") + (
        f" <{PREFIXES['rdfs']}label> <{PREFIXES['skos']}notation> <{PREFIXES['rdf']}type>"
    )
    parts = [
        f"{{ VALUES ?s {{ {iri_values(iris)} }} ?s <{PREFIXES['rdfs']}label> ?o "
        f"BIND(<{PREFIXES['rdfs']}label> AS ?p) }}"
    ]
    if statements:
        values = iri_values(statements)
        parts.append(f"{{ VALUES ?st {{ {values} }} ?st ?p ?o BIND(?st AS ?s) }}")
        parts.append(
            f"{{ VALUES ?st {{ {values} }} ?st ?link ?s . FILTER(isIRI(?s)) "
            f"VALUES ?p {{ {linked} }} ?s ?p ?o }}"
        )
    text = "CONSTRUCT { ?s ?p ?o } WHERE { " + " UNION ".join(parts) + " }"
    return run_construct(store, text)
