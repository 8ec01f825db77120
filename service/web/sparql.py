"""`/sparql`: the query operation of SPARQL 1.1 Protocol, read-only, with cached answers.

The query text is never parsed in this process: the answer format is negotiated for both
kinds of result up front (solutions and booleans, or a graph), the cache is keyed by the text's
digest, and a sandboxed worker checks, parses, evaluates and serialises (service.store.backends).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyoxigraph as ox
from flask import Blueprint, Response, current_app, g, request
from werkzeug.http import parse_etags

from service.store.backends import Dataset, QueryJob, Store, StoreError
from service.store.results import GRAPH_FORMATS, Answer
from service.store.safety import select_dataset
from service.web.cache import AnswerCache, CacheKey, digest, normalize
from service.web.protocol import (
    CORS_HEADERS,
    GRAPH_MEDIA,
    MAX_ACCEPT,
    SOLUTION_MEDIA,
    ProtocolError,
    choose_format,
    error_response,
    parse_query_request,
)

bp = Blueprint("sparql", __name__)

SD = "http://www.w3.org/ns/sparql-service-description#"
VOID = "http://rdfs.org/ns/void#"
FORMATS = "http://www.w3.org/ns/formats/"
RDF_TYPE = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
DEFAULT_DATASET = Dataset()
NEGOTIATED_KEY = 512  # characters of format= values and Accept worth remembering
SOLUTIONS_OFFERED = tuple(SOLUTION_MEDIA)
GRAPHS_OFFERED = tuple(GRAPH_MEDIA)
RESULT_FORMAT_IRIS = [
    "SPARQL_Results_JSON",
    "SPARQL_Results_XML",
    "SPARQL_Results_CSV",
    "SPARQL_Results_TSV",
    "Turtle",
    "JSON-LD",
    "N-Triples",
    "RDF_XML",
    "N-Quads",
    "TriG",
]


@dataclass(frozen=True)
class Incoming:
    """What a /sparql request carries, read by whichever server received it (Flask, or the
    HTTP front's hot path in service.web.httpd): the one endpoint logic below serves both."""

    method: str
    content_type: str | None
    query_string: str
    body: bytes
    accept: str | None
    if_none_match: str | None
    base_url: str  # the endpoint's public URL: relative IRIs in the query resolve against it


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    cache: str | None = None  # hit / miss / not-modified, for the access log


@dataclass(frozen=True)
class Pending:
    """A query a worker must answer; `finish` turns its answer into the reply."""

    job: QueryJob
    key: CacheKey
    headers: dict[str, str]
    cache: AnswerCache
    timeout: float
    row_cap: int


@dataclass(frozen=True)
class Describe:
    """No query: the service description, in this format."""

    media: str


@bp.route("/sparql", methods=["GET", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"])
def sparql() -> Response:
    from service.web import state

    if request.method == "OPTIONS":  # CORS preflight
        return Response(status=204, headers=CORS_HEADERS)
    service = state(current_app)
    body = request.get_data(cache=False) if request.method == "POST" else b""
    incoming = Incoming(
        request.method,
        request.content_type,
        request.query_string.decode(),
        body,
        request.headers.get("Accept"),
        request.headers.get("If-None-Match"),
        request.base_url,
    )
    outcome = prepare(incoming, service.store, service.cache, current_app.config)
    if isinstance(outcome, Describe):
        return _service_description(outcome.media)
    if isinstance(outcome, Pending):
        try:
            answer = service.store.execute(outcome.job, outcome.timeout)
        except StoreError as err:
            outcome = failure(err.status, err.message, incoming.accept)
        else:
            outcome = finish(outcome, answer)
    g.cache_state = outcome.cache
    return Response(outcome.body, status=outcome.status, headers=outcome.headers)


def prepare(
    incoming: Incoming, store: Store, cache: AnswerCache, config: Mapping[str, Any]
) -> Reply | Pending | Describe:
    """Everything but the evaluation: protocol errors, 304, cached answers, or the job to run.

    The query text is only hashed here; a worker checks, parses and evaluates it."""
    try:
        parsed = parse_query_request(
            incoming.method, incoming.content_type, incoming.query_string, incoming.body
        )
        if parsed.query is None:
            return Describe(choose_format(parsed.format, incoming.accept, GRAPH_MEDIA))
    except ProtocolError as err:
        return failure(err.status, err.message, incoming.accept, err.headers)
    accept = incoming.accept
    solutions_media, solutions_refusal = _negotiate(parsed.format, accept, SOLUTIONS_OFFERED)
    graph_media, graph_refusal = _negotiate(parsed.format, accept, GRAPHS_OFFERED)
    dataset = (
        select_dataset(parsed.default_graph_uris, parsed.named_graph_uris, store.graph_counts())
        if parsed.default_graph_uris or parsed.named_graph_uris
        else DEFAULT_DATASET
    )
    formats = f"{solutions_media or '-'} {graph_media or '-'}"
    key = CacheKey(store.build_id, digest(normalize(parsed.query)), dataset, formats)
    etag = key.etag()
    headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "public, no-cache"}
    # werkzeug's If-None-Match parsing, as for every other route (weak comparison, "*");
    # answered here, before evaluation, and for POST too (the query is in the body).
    if incoming.if_none_match:
        tags = parse_etags(incoming.if_none_match)
        if tags.contains_weak(etag.strip('"')) or tags.star_tag:
            return Reply(304, list(headers.items()), cache="not-modified")
    row_cap = int(config["SPARQL_ROW_CAP"])
    pending = Pending(
        QueryJob(
            parsed.query,
            None,  # untrusted: the worker checks it and its result decides the format
            dataset,
            solutions_media,
            row_cap,
            graph_media_type=graph_media,
            refusals=(solutions_refusal, graph_refusal),
            base_iri=incoming.base_url,  # relative IRIs resolve against the endpoint URL
        ),
        key,
        headers,
        cache,
        float(config["SPARQL_TIMEOUT"]),
        row_cap,
    )
    answer = cache.get(key)
    if answer is not None:
        return finish(pending, answer, "hit")
    return pending


def finish(pending: Pending, answer: Answer, cache_state: str = "miss") -> Reply:
    """The reply for a worker's (or the cache's) answer; a fresh answer is cached."""
    if cache_state == "miss":
        pending.cache.put(pending.key, answer)
    headers = [("Content-Type", _content_type(answer.media_type)), *pending.headers.items()]
    if answer.truncated:
        headers.append(("X-Result-Truncated", f"row cap {pending.row_cap} reached"))
    return Reply(200, headers, answer.body, cache_state)


def failure(
    status: int, message: str, accept: str | None, headers: Mapping[str, str] | None = None
) -> Reply:
    """The service's one error shape (service.web.protocol.error_response) as a Reply."""
    response = error_response(status, message, accept, headers)
    return Reply(response.status_code, response.headers.to_wsgi_list(), response.get_data())


def _negotiate(
    fmt: tuple[str, ...], accept: str | None, offered: tuple[str, ...]
) -> tuple[str | None, str]:
    """The format for one kind of result, or None and the 406 message should it be that kind.
    Clients send the same few Accept headers over and over: each is negotiated once (only
    short ones are remembered, so the memory it takes stays small whatever clients send)."""
    accept = accept[:MAX_ACCEPT] if accept else accept
    if sum(map(len, fmt)) + len(accept or "") <= NEGOTIATED_KEY:
        return _negotiated(fmt, accept, offered)
    return _negotiated.__wrapped__(fmt, accept, offered)


@lru_cache(maxsize=256)
def _negotiated(
    fmt: tuple[str, ...], accept: str | None, offered: tuple[str, ...]
) -> tuple[str | None, str]:
    try:
        return choose_format(fmt, accept, offered), ""
    except ProtocolError as err:
        return None, err.message


def _content_type(media: str) -> str:
    textual = (
        media.startswith("text/")
        or media.endswith(("json", "xml"))
        or media in ("application/n-triples", "application/n-quads", "application/trig")
    )
    return f"{media}; charset=utf-8" if textual else media


def _service_description(media: str) -> Response:
    """SPARQL 1.1 Service Description with VoID triple counts per graph."""
    from service.web import state

    store = state(current_app).store
    counts = store.graph_counts()
    endpoint = ox.NamedNode(request.base_url)

    def sd(name: str) -> ox.NamedNode:
        return ox.NamedNode(SD + name)

    def void(name: str) -> ox.NamedNode:
        return ox.NamedNode(VOID + name)

    def count(n: int) -> ox.Literal:
        return ox.Literal(str(n), datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer"))

    dataset, default = ox.BlankNode("dataset"), ox.BlankNode("default")
    triples = [
        ox.Triple(endpoint, RDF_TYPE, sd("Service")),
        ox.Triple(endpoint, sd("endpoint"), endpoint),
        ox.Triple(endpoint, sd("supportedLanguage"), sd("SPARQL11Query")),
        ox.Triple(endpoint, sd("feature"), sd("UnionDefaultGraph")),
        ox.Triple(endpoint, sd("defaultDataset"), dataset),
        ox.Triple(dataset, RDF_TYPE, sd("Dataset")),
        ox.Triple(dataset, RDF_TYPE, void("Dataset")),
        ox.Triple(
            dataset,
            ox.NamedNode("http://purl.org/dc/terms/identifier"),
            ox.Literal(store.build_id),
        ),
        ox.Triple(dataset, void("triples"), count(sum(counts.values()))),
        ox.Triple(dataset, sd("defaultGraph"), default),
        ox.Triple(default, RDF_TYPE, sd("Graph")),
        ox.Triple(default, void("triples"), count(sum(counts.values()))),
    ]
    triples += [
        ox.Triple(endpoint, sd("resultFormat"), ox.NamedNode(FORMATS + f))
        for f in RESULT_FORMAT_IRIS
    ]
    for i, (iri, n) in enumerate(counts.items()):
        named, graph = ox.BlankNode(f"named{i}"), ox.BlankNode(f"graph{i}")
        triples += [
            ox.Triple(dataset, sd("namedGraph"), named),
            ox.Triple(named, RDF_TYPE, sd("NamedGraph")),
            ox.Triple(named, sd("name"), ox.NamedNode(iri)),
            ox.Triple(named, sd("graph"), graph),
            ox.Triple(graph, RDF_TYPE, sd("Graph")),
            ox.Triple(graph, RDF_TYPE, void("Dataset")),
            ox.Triple(graph, void("triples"), count(n)),
        ]
    fmt = GRAPH_FORMATS[media]
    items = (
        [ox.Quad(t.subject, t.predicate, t.object) for t in triples]
        if fmt in (ox.RdfFormat.N_QUADS, ox.RdfFormat.TRIG)
        else triples
    )
    prefixes = {"sd": SD, "void": VOID, "formats": FORMATS}
    if fmt in (ox.RdfFormat.TURTLE, ox.RdfFormat.TRIG):
        body = ox.serialize(items, format=fmt, prefixes=prefixes)
    else:
        body = ox.serialize(items, format=fmt)
    return Response(body, content_type=_content_type(media), headers={"Vary": "Accept"})
