"""`/sparql`: the query operation of SPARQL 1.1 Protocol, read-only, with cached answers."""

from __future__ import annotations

import pyoxigraph as ox
from flask import Blueprint, Response, current_app, g, request

from service.store.backends import QueryJob, StoreError
from service.store.results import GRAPH_FORMATS
from service.store.safety import QueryRejected, analyze, select_dataset
from service.web.cache import CacheKey, etag_matches, normalize
from service.web.protocol import (
    CORS_HEADERS,
    GRAPH_MEDIA,
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


@bp.route("/sparql", methods=["GET", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"])
def sparql() -> Response:
    accept = request.headers.get("Accept")
    if request.method == "OPTIONS":  # CORS preflight
        return Response(status=204, headers=CORS_HEADERS)
    try:
        body = request.get_data(cache=False) if request.method == "POST" else b""
        parsed = parse_query_request(
            request.method, request.content_type, request.query_string.decode(), body
        )
        if parsed.query is None:
            media = choose_format(parsed.format, accept, GRAPH_MEDIA)
            return _service_description(media)
        return _answer(parsed.query, parsed, accept)
    except ProtocolError as err:
        return error_response(err.status, err.message, accept, err.headers)
    except QueryRejected as err:
        return error_response(err.status, err.message, accept)
    except StoreError as err:
        return error_response(err.status, err.message, accept)


def _answer(query: str, parsed, accept: str | None) -> Response:
    from service.web import state

    service = state(current_app)
    analysis = analyze(query)
    offered = GRAPH_MEDIA if analysis.returns_graph else SOLUTION_MEDIA
    media = choose_format(parsed.format, accept, offered)
    dataset = select_dataset(
        analysis,
        parsed.default_graph_uris,
        parsed.named_graph_uris,
        service.store.graph_counts(),
    )
    key = CacheKey(service.store.build_id, normalize(query), dataset, media)
    etag = key.etag()
    headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "public, no-cache"}
    if etag_matches(request.headers.get("If-None-Match"), etag):
        g.cache_state = "not-modified"
        return Response(status=304, headers=headers)
    answer = service.cache.get(key)
    g.cache_state = "hit" if answer is not None else "miss"
    if answer is None:
        job = QueryJob(query, analysis.form, dataset, media, current_app.config["SPARQL_ROW_CAP"])
        answer = service.store.execute(job, float(current_app.config["SPARQL_TIMEOUT"]))
        service.cache.put(key, answer)
    if answer.truncated:
        headers["X-Result-Truncated"] = f"row cap {current_app.config['SPARQL_ROW_CAP']} reached"
    return Response(answer.body, content_type=_content_type(media), headers=headers)


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
