"""SPARQL 1.1 Protocol query operation, against a real `cmpkg serve` over HTTP."""

from __future__ import annotations

import io
import json
import warnings
from urllib.parse import quote, urlencode

import pyoxigraph as ox
import pytest
import rdflib
from conftest import DRAFT_GRAPH, GRAPH, http, readyz
from SPARQLWrapper import (
    CSV,
    GET,
    JSON,
    JSONLD,
    N3,
    POST,
    RDF,
    RDFXML,
    TSV,
    TURTLE,
    XML,
    SPARQLWrapper,
)

from service.web.protocol import ProtocolError, choose_format, negotiate, parse_accept

PREFIXES = """PREFIX cmp: <https://w3id.org/cmpkg/vocab/>
PREFIX cond: <https://w3id.org/cmpkg/condition/>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
"""
CLAIMS = (
    PREFIXES
    + """SELECT ?claim ?estimate ?lower ?upper WHERE {
  ?claim a cmp:EvidenceClaim ; cmp:condition cond:fibromyalgia ;
         cmp:estimate ?estimate ; cmp:ciLower ?lower ; cmp:ciUpper ?upper .
} ORDER BY ?claim"""
)
EXPECTED_CLAIMS = {
    "https://w3id.org/cmpkg/claim/busch-2007-aerobic-global-well-being": ("0.49", "0.23", "0.75"),
    "https://w3id.org/cmpkg/claim/busch-2007-aerobic-pain": ("0.65", "-0.09", "1.39"),
    "https://w3id.org/cmpkg/claim/busch-2007-aerobic-physical-function": ("0.66", "0.41", "0.92"),
}
CONSTRUCT = (
    PREFIXES
    + """CONSTRUCT { ?c rdfs:label ?l } WHERE {
  ?c rdfs:subClassOf* cond:chronic-widespread-pain ; rdfs:label ?l }"""
)


def get(server: str, query: str, accept: str | None = None, **params: str):
    headers = {"Accept": accept} if accept else {}
    url = f"{server}/sparql?" + urlencode({"query": query, **params})
    return http(url, headers=headers)


def solutions(body: bytes, media: str) -> list[dict[str, str]]:
    fmt = ox.QueryResultsFormat.from_media_type(media)
    parsed = ox.parse_query_results(body, format=fmt)
    names = [v.value for v in parsed.variables]
    return [{n: s[n].value for n in names if s[n] is not None} for s in parsed]


def claims_of(rows: list[dict[str, str]]) -> dict[str, tuple[str, str, str]]:
    return {r["claim"]: (r["estimate"], r["lower"], r["upper"]) for r in rows}


# --- the three query operations ------------------------------------------------------------


def test_get_query_returns_json_results(server):
    status, headers, body = get(server, CLAIMS)
    assert status == 200
    assert headers["content-type"].startswith("application/sparql-results+json")
    assert claims_of(solutions(body, "application/sparql-results+json")) == EXPECTED_CLAIMS


def test_post_form_query(server):
    data = urlencode({"query": CLAIMS}).encode()
    status, _, body = http(
        f"{server}/sparql", data, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200
    assert claims_of(solutions(body, "application/sparql-results+json")) == EXPECTED_CLAIMS


def test_post_direct_query(server):
    status, _, body = http(
        f"{server}/sparql", CLAIMS.encode(), {"Content-Type": "application/sparql-query"}
    )
    assert status == 200
    assert claims_of(solutions(body, "application/sparql-results+json")) == EXPECTED_CLAIMS


@pytest.mark.parametrize(
    "media",
    [
        "application/sparql-results+json",
        "application/sparql-results+xml",
        "text/tab-separated-values",
    ],
)
def test_select_in_every_parseable_result_format(server, media):
    status, headers, body = get(server, CLAIMS, accept=media)
    assert status == 200
    assert headers["content-type"].split(";")[0] == media
    assert claims_of(solutions(body, media)) == EXPECTED_CLAIMS


def test_select_as_csv(server):
    # pyoxigraph cannot parse CSV results back (CSV loses term types); the csv module can.
    import csv

    status, headers, body = get(server, CLAIMS, accept="text/csv")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert {r["claim"]: (r["estimate"], r["lower"], r["upper"]) for r in rows} == EXPECTED_CLAIMS


@pytest.mark.parametrize("media", ["application/sparql-results+json", "text/csv"])
def test_ask(server, media):
    status, _, body = get(server, PREFIXES + "ASK { cond:fibromyalgia rdfs:label ?l }", media)
    assert status == 200
    if media == "text/csv":
        assert body.strip() == b"true"
    else:
        assert bool(ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON)) is True
    _, _, body = get(server, PREFIXES + "ASK { cond:fibromyalgia rdfs:label 'no such' }")
    assert bool(ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON)) is False


EXPECTED_LABELS = {
    ("https://w3id.org/cmpkg/condition/fibromyalgia", "fibromyalgia"),
    ("https://w3id.org/cmpkg/condition/chronic-widespread-pain", "chronic widespread pain"),
}


@pytest.mark.parametrize(
    ("media", "rdflib_format"),
    [
        ("text/turtle", "turtle"),
        ("application/ld+json", "json-ld"),
        ("application/n-triples", "nt"),
        ("application/rdf+xml", "xml"),
        ("application/n-quads", "nquads"),
        ("application/trig", "trig"),
    ],
)
def test_construct_in_every_rdf_format(server, media, rdflib_format):
    status, headers, body = get(server, CONSTRUCT, accept=media)
    assert status == 200
    assert headers["content-type"].split(";")[0] == media
    graph = rdflib.Dataset()
    graph.parse(data=body, format=rdflib_format)
    got = {(str(s), str(o)) for s, _, o, _ in graph.quads((None, None, None, None))}
    assert got == EXPECTED_LABELS


def test_describe(server):
    query = "DESCRIBE <https://w3id.org/cmpkg/source/busch-2007>"
    status, headers, body = get(server, query, accept="text/turtle")
    assert status == 200 and headers["content-type"].startswith("text/turtle")
    triples = list(ox.parse(body, format=ox.RdfFormat.TURTLE))
    values = {t.object.value for t in triples}
    assert {"17943797", "CD003786.pub2"} <= values


# --- negotiation ----------------------------------------------------------------------------


def test_q_values_pick_the_preferred_format(server):
    accept = "application/sparql-results+json;q=0.5, application/sparql-results+xml;q=0.9"
    status, headers, body = get(server, CLAIMS, accept=accept)
    assert status == 200 and headers["content-type"].startswith("application/sparql-results+xml")
    assert claims_of(solutions(body, "application/sparql-results+xml")) == EXPECTED_CLAIMS


def test_format_parameter_overrides_accept(server):
    status, headers, _ = get(server, CLAIMS, accept="application/sparql-results+xml", format="tsv")
    assert status == 200 and headers["content-type"].startswith("text/tab-separated-values")
    status, headers, _ = get(server, CONSTRUCT, format="application/n-triples")
    assert status == 200 and headers["content-type"].startswith("application/n-triples")


def test_unproducible_accept_is_406(server):
    status, _, body = get(server, CLAIMS, accept="image/png")
    assert status == 406 and b"available" in body
    status, _, _ = get(server, CONSTRUCT, accept="application/sparql-results+json")
    assert status == 406
    status, _, _ = get(server, CLAIMS, format="turtle")
    assert status == 406


def test_negotiation_rules():
    offered = ["application/sparql-results+json", "text/csv"]
    assert negotiate(None, offered) == "application/sparql-results+json"
    assert negotiate("text/*", offered) == "text/csv"
    assert negotiate("*/*;q=0.1, text/csv;q=0.2", offered) == "text/csv"
    # A more specific range's q wins over a wildcard's, even when lower.
    assert negotiate("text/csv;q=0, */*", offered) == "application/sparql-results+json"
    assert negotiate("application/json", offered) == "application/sparql-results+json"
    assert negotiate("text/html", offered) is None
    # werkzeug parses Accept now (one negotiation path for the app): ranges come best first,
    # media parameters other than q are dropped, as before.
    assert parse_accept("a/b;q=0.3;level=1, c/d") == [("c/d", 1.0), ("a/b", 0.3)]
    with pytest.raises(ProtocolError) as err:
        choose_format("png", None, offered)
    assert err.value.status == 406


# --- protocol errors ------------------------------------------------------------------------


def test_malformed_query_is_400_with_position(server):
    status, _, body = get(server, "SELECT * WHERE { ?s ?p }")
    assert status == 400
    assert b"1:" in body and b"malformed" in body


def test_two_query_parameters_are_400(server):
    url = f"{server}/sparql?query={quote('ASK {}')}&query={quote('ASK {}')}"
    status, _, body = http(url)
    assert status == 400 and b"one 'query'" in body


def test_wrong_media_type_is_400(server):
    status, _, _ = http(f"{server}/sparql", CLAIMS.encode(), {"Content-Type": "text/plain"})
    assert status == 400


@pytest.mark.parametrize(
    "update",
    ["INSERT DATA { <urn:a> <urn:b> <urn:c> }", "CLEAR ALL", "DELETE WHERE { ?s ?p ?o }"],
)
def test_updates_are_refused_and_change_nothing(server, update):
    before = readyz(server)["triples"]
    assert get(server, update)[0] == 400
    status, _, body = http(
        f"{server}/sparql", update.encode(), {"Content-Type": "application/sparql-update"}
    )
    assert status == 400 and b"read-only" in body
    form = urlencode({"update": update}).encode()
    status, _, _ = http(
        f"{server}/sparql", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 400
    assert readyz(server)["triples"] == before


def test_graph_store_writes_are_405(server):
    status, headers, _ = http(
        f"{server}/sparql", b"<urn:a> <urn:b> <urn:c> .", {"Content-Type": "text/turtle"}, "PUT"
    )
    assert status == 405 and "GET" in headers["allow"]


def test_oversized_body_is_413(server):
    query = "ASK {}  #" + "x" * 70_000
    status, _, body = http(
        f"{server}/sparql", query.encode(), {"Content-Type": "application/sparql-query"}
    )
    assert status == 413 and b"too large" in body


def test_errors_as_json_when_asked(server):
    status, headers, body = get(server, "SELECT", accept="application/json")
    # One error format (issue 14): a JSON client gets RFC 9457 problem details.
    assert status == 400 and headers["content-type"].startswith("application/problem+json")
    doc = json.loads(body)
    assert doc["status"] == 400 and doc["title"] == "Bad Request" and doc["detail"]


def test_errors_as_text_when_only_text_is_asked(server):
    status, headers, body = get(server, "SELECT", accept="text/plain")
    # The one exception to problem+json: text-only SPARQL tools print the body as the error.
    assert status == 400 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert text.strip() and not text.lstrip().startswith("{")


def test_errors_without_accept_are_problem_json(server):
    status, headers, body = get(server, "SELECT")
    assert status == 400 and headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["detail"]


# --- dataset ---------------------------------------------------------------------------------

COUNT_BY_GRAPH = "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g"


def count_default(server: str, **params: str) -> int:
    status, _, body = get(server, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }", **params)
    assert status == 200
    return int(solutions(body, "application/sparql-results+json")[0]["n"])


def test_default_graph_is_the_union_of_named_graphs(server):
    counts = readyz(server)["graphs"]
    assert set(GRAPH.values()) <= set(counts)
    assert count_default(server) == sum(counts.values())
    body = get(server, COUNT_BY_GRAPH)[2]
    by_graph = {r["g"]: int(r["n"]) for r in solutions(body, "application/sparql-results+json")}
    assert by_graph == counts


def test_default_graph_uri_selects_graphs(server):
    counts = readyz(server)["graphs"]
    assert (
        count_default(server, **{"default-graph-uri": GRAPH["asserted"]})
        == counts[GRAPH["asserted"]]
    )
    url = (
        f"{server}/sparql?query={quote('SELECT (COUNT(*) AS ?n) { ?s ?p ?o }')}"
        f"&default-graph-uri={quote(GRAPH['asserted'])}"
        f"&default-graph-uri={quote(GRAPH['inferred'])}"
    )
    body = http(url)[2]
    n = int(solutions(body, "application/sparql-results+json")[0]["n"])
    assert n == counts[GRAPH["asserted"]] + counts[GRAPH["inferred"]]


def test_named_graph_uri_limits_graph_patterns(server):
    status, _, body = get(server, COUNT_BY_GRAPH, **{"named-graph-uri": GRAPH["inferred"]})
    assert status == 200
    rows = solutions(body, "application/sparql-results+json")
    assert [r["g"] for r in rows] == [GRAPH["inferred"]]


def test_from_and_from_named_select_graphs(server):
    counts = readyz(server)["graphs"]
    query = f"SELECT (COUNT(*) AS ?n) FROM <{GRAPH['shapes']}> WHERE {{ ?s ?p ?o }}"
    body = get(server, query)[2]
    assert (
        int(solutions(body, "application/sparql-results+json")[0]["n"]) == counts[GRAPH["shapes"]]
    )
    query = f"SELECT ?g FROM NAMED <{GRAPH['rules']}> WHERE {{ GRAPH ?g {{ }} }}"
    body = get(server, query)[2]
    assert solutions(body, "application/sparql-results+json") == [{"g": GRAPH["rules"]}]


def test_protocol_dataset_overrides_from(server):
    counts = readyz(server)["graphs"]
    query = f"SELECT (COUNT(*) AS ?n) FROM <{GRAPH['shapes']}> WHERE {{ ?s ?p ?o }}"
    body = get(server, query, **{"default-graph-uri": GRAPH["rules"]})[2]
    n = int(solutions(body, "application/sparql-results+json")[0]["n"])
    assert n == counts[GRAPH["rules"]]


def test_graph_we_do_not_hold_is_empty(server):
    assert count_default(server, **{"default-graph-uri": "http://example.org/not-ours"}) == 0


def test_extra_data_is_served_as_a_named_graph(server):
    query = f"SELECT ?s WHERE {{ GRAPH <{DRAFT_GRAPH}> {{ ?s ?p ?o }} }}"
    rows = solutions(get(server, query)[2], "application/sparql-results+json")
    assert rows == [{"s": "https://w3id.org/cmpkg/claim/draft-preview-example"}]


# --- service description, caching, CORS, operations ------------------------------------------


def test_service_description_with_void(server):
    status, headers, body = http(f"{server}/sparql", headers={"Accept": "text/turtle"})
    assert status == 200 and headers["content-type"].startswith("text/turtle")
    graph = rdflib.Graph().parse(data=body, format="turtle")
    sd = rdflib.Namespace("http://www.w3.org/ns/sparql-service-description#")
    void = rdflib.Namespace("http://rdfs.org/ns/void#")
    assert (None, rdflib.RDF.type, sd.Service) in graph
    assert (None, sd.supportedLanguage, sd.SPARQL11Query) in graph
    names = {str(o) for o in graph.objects(None, sd.name)}
    assert set(GRAPH.values()) <= names
    counts = readyz(server)["graphs"]
    rows = graph.query(
        "SELECT ?name ?n { ?ng sd:name ?name ; sd:graph/void:triples ?n }",
        initNs={"sd": sd, "void": void},
    )
    assert {str(name): int(n) for name, n in rows} == counts


def test_etag_and_conditional_get(server):
    query = CLAIMS + " # etag test"
    status, headers, body = get(server, query)
    etag = headers["etag"]
    assert status == 200 and etag
    status, headers2, body2 = get(server, query)
    assert headers2["etag"] == etag and body2 == body
    url = f"{server}/sparql?" + urlencode({"query": query})
    status, _, body = http(url, headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    # Another format is another representation: another ETag.
    other = get(server, query, accept="text/csv")[1]["etag"]
    assert other != etag


def test_repeated_query_comes_from_cache(server):
    query = CLAIMS + " # cache test"
    before = readyz(server)["cache"]["hits"]
    get(server, query)
    get(server, query)
    assert readyz(server)["cache"]["hits"] == before + 1


def test_cors_allows_any_origin_without_credentials(server):
    _, headers, _ = get(server, "ASK {}")
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers
    status, headers, _ = http(f"{server}/sparql", method="OPTIONS")
    assert status == 204 and "POST" in headers["access-control-allow-methods"]


def test_health_and_readiness(server):
    status, _, body = http(f"{server}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    ready = readyz(server)
    assert ready["status"] == "ready" and ready["build_id"]
    assert ready["triples"] == sum(ready["graphs"].values()) > 0


# --- SPARQLWrapper, the client guideline authors use -----------------------------------------


@pytest.mark.parametrize("method", ["GET", POST])
def test_sparqlwrapper_select(server, method):
    client = SPARQLWrapper(f"{server}/sparql")
    client.setMethod(method)
    client.setQuery(CLAIMS)
    client.setReturnFormat(JSON)
    bindings = client.queryAndConvert()["results"]["bindings"]
    got = {b["claim"]["value"]: (b["estimate"]["value"], b["lower"]["value"], b["upper"]["value"])
           for b in bindings}  # fmt: skip
    assert got == EXPECTED_CLAIMS


def test_sparqlwrapper_xml_and_construct(server):
    client = SPARQLWrapper(f"{server}/sparql")
    client.setQuery(PREFIXES + "ASK { cond:fibromyalgia rdfs:subClassOf+ cond:chronic-pain }")
    client.setReturnFormat(XML)
    document = client.queryAndConvert()
    assert document.getElementsByTagName("boolean")[0].firstChild.data == "true"
    client = SPARQLWrapper(f"{server}/sparql")
    client.setQuery(CONSTRUCT)
    client.setReturnFormat(TURTLE)
    graph = rdflib.Graph().parse(data=client.queryAndConvert(), format="turtle")
    assert {(str(s), str(o)) for s, _, o in graph} == EXPECTED_LABELS


# --- SPARQLWrapper in every one of its formats ------------------------------------------------
ASK_QUERY = PREFIXES + "ASK { cond:fibromyalgia rdfs:subClassOf+ cond:chronic-pain }"
DESCRIBE = PREFIXES + "DESCRIBE cond:fibromyalgia"
FIBROMYALGIA = "https://w3id.org/cmpkg/condition/fibromyalgia"
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
# The formats SPARQLWrapper documents for each query form (XML is its default).
SOLUTION_WRAPPER_FORMATS = [XML, JSON, CSV, TSV]
GRAPH_WRAPPER_FORMATS = [XML, RDFXML, RDF, TURTLE, N3, JSONLD, JSON]


def wrapper_answer(server: str, query: str, fmt: str, method: str) -> object:
    client = SPARQLWrapper(f"{server}/sparql")
    client.setMethod(method)
    client.setQuery(query)
    client.setReturnFormat(fmt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = client.queryAndConvert()
    # "unknown response content type" / "Format requested was X, but Y": a wrong answer.
    wrong = [str(w.message) for w in caught if "returned by the endpoint" in str(w.message)
             or "unknown response content type" in str(w.message)]  # fmt: skip
    assert wrong == []
    return converted


def triples_of(converted: object, fmt: str) -> set[tuple[str, str, str]]:
    if isinstance(converted, bytes | str):  # Turtle/N3 come back as text
        converted = rdflib.Graph().parse(data=converted, format="turtle")
    assert isinstance(converted, rdflib.Graph), type(converted)
    return {(str(s), str(p), str(o)) for s, p, o in converted}


@pytest.mark.parametrize("method", [GET, POST])
@pytest.mark.parametrize("fmt", SOLUTION_WRAPPER_FORMATS)
def test_sparqlwrapper_select_in_every_format(server, fmt, method):
    converted = wrapper_answer(server, CLAIMS, fmt, method)
    if fmt == JSON:
        rows = converted["results"]["bindings"]  # type: ignore[index]
        assert {r["claim"]["value"] for r in rows} == set(EXPECTED_CLAIMS)
    elif fmt == XML:
        uris = {u.firstChild.data for u in converted.getElementsByTagName("uri")}  # type: ignore[attr-defined]
        assert uris == set(EXPECTED_CLAIMS)
    else:
        text = converted.decode() if isinstance(converted, bytes) else str(converted)
        assert all(claim in text for claim in EXPECTED_CLAIMS)


@pytest.mark.parametrize("fmt", SOLUTION_WRAPPER_FORMATS)
def test_sparqlwrapper_ask_in_every_format(server, fmt):
    converted = wrapper_answer(server, ASK_QUERY, fmt, GET)
    if fmt == JSON:
        assert converted["boolean"] is True  # type: ignore[index]
    elif fmt == XML:
        assert converted.getElementsByTagName("boolean")[0].firstChild.data == "true"  # type: ignore[attr-defined]
    else:
        text = converted.decode() if isinstance(converted, bytes) else str(converted)
        assert "true" in text.lower()


@pytest.mark.parametrize("fmt", GRAPH_WRAPPER_FORMATS)
def test_sparqlwrapper_construct_in_every_format(server, fmt):
    triples = triples_of(wrapper_answer(server, CONSTRUCT, fmt, GET), fmt)
    assert {(s, o) for s, _, o in triples} == EXPECTED_LABELS


@pytest.mark.parametrize("fmt", GRAPH_WRAPPER_FORMATS)
def test_sparqlwrapper_describe_in_every_format(server, fmt):
    triples = triples_of(wrapper_answer(server, DESCRIBE, fmt, POST), fmt)
    assert (FIBROMYALGIA, RDFS_LABEL, "fibromyalgia") in triples


@pytest.mark.parametrize(
    ("query", "params", "media"),
    [
        (CONSTRUCT, [("format", "xml")], "application/rdf+xml"),
        (CONSTRUCT, [("format", "json")], "application/ld+json"),
        (
            CONSTRUCT,
            [("format", "json-ld"), ("format", "application/ld+json")],
            "application/ld+json",
        ),
        (
            CLAIMS,
            [("format", "xml"), ("output", "xml"), ("results", "xml")],
            "application/sparql-results+xml",
        ),
        (
            CLAIMS,
            [("format", "tsv"), ("format", "text/tab-separated-values")],
            "text/tab-separated-values",
        ),
        (CLAIMS, [("output", "csv")], "text/csv"),
        # The first value we can produce wins, whatever comes after it.
        (CONSTRUCT, [("format", "png"), ("format", "application/rdf+xml")], "application/rdf+xml"),
    ],
)
def test_format_parameter_is_read_as_other_endpoints_read_it(server, query, params, media):
    url = f"{server}/sparql?" + urlencode([("query", query), *params])
    status, headers, body = http(url)
    assert status == 200, body
    assert headers["content-type"].split(";")[0] == media


@pytest.fixture(params=["embedded", "remote"])
def either_server(request) -> str:
    return request.getfixturevalue("server" if request.param == "embedded" else "remote_server")


def test_relative_iris_resolve_against_the_endpoint(either_server):
    server = either_server  # both backends resolve against *our* endpoint, not the store's
    status, _, body = get(
        server, "CONSTRUCT { <s> <p> 1 } WHERE {}", accept="application/n-triples"
    )
    assert status == 200, body
    (triple,) = ox.parse(body, format=ox.RdfFormat.N_TRIPLES)
    assert triple.subject == ox.NamedNode(f"{server}/s")
    assert triple.predicate == ox.NamedNode(f"{server}/p")
    status, _, body = get(server, "SELECT ?o { <s> ?p ?o }")
    assert status == 200, body
    # A query's own BASE still wins over the endpoint's.
    status, _, body = get(
        server, "BASE <http://example.org/> CONSTRUCT { <s> <p> 1 } WHERE {}",
        accept="application/n-triples",
    )  # fmt: skip
    assert status == 200 and body.startswith(b"<http://example.org/s>")
