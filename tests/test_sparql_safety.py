"""Safe by default: read-only, no outbound requests, queries stopped at the timeout, caps."""

from __future__ import annotations

import threading
from urllib.parse import urlencode

import pyoxigraph as ox
import pytest
from conftest import GRAPH, http, readyz

from service.store.safety import (
    Dataset,
    QueryRejected,
    analyze,
    select_dataset,
    strip_dataset_clauses,
)

CARTESIAN = (
    "SELECT (COUNT(*) AS ?n) WHERE { GRAPH <urn:test:filler> "
    "{ ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o } }"
)


def get(base: str, query: str, **params: str):
    return http(f"{base}/sparql?" + urlencode({"query": query, **params}))


def rows(body: bytes) -> list:
    return list(ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON))


# --- the checker itself -----------------------------------------------------------------------


def test_service_clause_is_rejected_at_any_depth():
    for query in (
        "SELECT * { SERVICE <http://127.0.0.1:9/> { ?s ?p ?o } }",
        "SELECT * { ?s ?p ?o OPTIONAL { SERVICE SILENT ?x { ?s ?q ?r } } }",
        "ASK { { SELECT ?s { SERVICE <urn:x> { ?s ?p ?o } } } }",
    ):
        with pytest.raises(QueryRejected) as err:
            analyze(query)
        assert err.value.status == 400 and "SERVICE" in err.value.message


def test_the_word_service_in_strings_iris_and_comments_is_harmless():
    query = """# SERVICE <http://127.0.0.1:9/> { }
    SELECT ?s WHERE { ?s ?p "SERVICE <http://x/> { ?a ?b ?c }" .
      FILTER(?p != <http://example.org/SERVICE>) }"""
    assert analyze(query).form == "SELECT"


def test_load_and_updates_are_rejected():
    for query, word in (("LOAD <http://127.0.0.1:9/x>", "LOAD"), ("CLEAR ALL", "read-only")):
        with pytest.raises(QueryRejected) as err:
            analyze(query)
        assert err.value.status == 400 and word in err.value.message


def test_dataset_is_restricted_to_held_graphs():
    held = set(GRAPH.values())
    query = f"SELECT * FROM <http://127.0.0.1:9/x> FROM <{GRAPH['asserted']}> {{ ?s ?p ?o }}"
    analysis = analyze(query)
    assert select_dataset(analysis, [], [], held) == Dataset((GRAPH["asserted"],), ())
    # Protocol parameters replace FROM entirely.
    assert select_dataset(analysis, [GRAPH["rules"]], [], held) == Dataset((GRAPH["rules"],), ())
    assert select_dataset(analyze("ASK {}"), [], [], held).is_default


def test_strip_dataset_clauses_keeps_everything_else():
    query = (
        "PREFIX g: <https://w3id.org/cmpkg/graph/>\nSELECT ?from # FROM <urn:comment>\n"
        "FROM g:asserted FROM NAMED <http://127.0.0.1:9/x>\n"
        'WHERE { ?from ?p "FROM <urn:string>" }'
    )
    stripped = strip_dataset_clauses(query)
    assert "g:asserted" not in stripped and "127.0.0.1" not in stripped
    assert "# FROM <urn:comment>" in stripped and '"FROM <urn:string>"' in stripped
    assert analyze(stripped).from_default == () and analyze(stripped).from_named == ()


# --- zero outbound requests, on both backends -------------------------------------------------


@pytest.fixture(params=["embedded", "remote"])
def backend(request) -> str:
    return request.getfixturevalue("server" if request.param == "embedded" else "remote_server")


def test_nothing_is_ever_fetched(backend, hit_counter):
    url = hit_counter.url
    rejected = [
        f"SELECT * WHERE {{ SERVICE <{url}/sparql> {{ ?s ?p ?o }} }}",
        f"SELECT * WHERE {{ SERVICE SILENT <{url}/sparql> {{ ?s ?p ?o }} }}",
        f"LOAD <{url}/data.ttl>",
        f"LOAD SILENT <{url}/data.ttl> INTO GRAPH <urn:g>",
    ]
    for query in rejected:
        status, _, body = get(backend, query)
        assert status == 400, query
        assert b"SERVICE" in body or b"LOAD" in body
    empty = [
        (f"SELECT * FROM <{url}/x> WHERE {{ ?s ?p ?o }}", {}),
        (f"SELECT * FROM NAMED <{url}/x> WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}", {}),
        (f"SELECT * WHERE {{ GRAPH <{url}/x> {{ ?s ?p ?o }} }}", {}),
        ("SELECT * WHERE { ?s ?p ?o }", {"default-graph-uri": f"{url}/x"}),
        ("SELECT * WHERE { GRAPH ?g { ?s ?p ?o } }", {"named-graph-uri": f"{url}/x"}),
    ]
    for query, params in empty:
        status, _, body = get(backend, query, **params)
        assert status == 200, query
        assert rows(body) == [], query
    described = get(backend, f"DESCRIBE <{url}/resource>")
    assert described[0] == 200
    assert hit_counter.hits == []


# --- timeout and caps --------------------------------------------------------------------------


def test_cartesian_product_is_stopped_while_another_client_is_served(server):
    replaced_before = readyz(server)["workers_replaced"]
    slow: dict = {}
    thread = threading.Thread(target=lambda: slow.update(result=get(server, CARTESIAN)))
    thread.start()
    # The second client is answered while the cartesian product is still being evaluated.
    status, _, body = get(server, "ASK { ?s ?p ?o } # second client")
    still_running = thread.is_alive()
    thread.join(timeout=60)
    assert status == 200 and bool(ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON))
    assert still_running
    status, _, message = slow["result"]
    assert status == 503 and b"2 s limit" in message
    # The stopped worker was replaced: the service keeps answering on every worker.
    assert readyz(server)["workers_replaced"] == replaced_before + 1
    for i in range(4):
        assert get(server, f"ASK {{ ?s ?p ?o }} # after {i}")[0] == 200


def test_remote_query_past_the_timeout_answers_503(remote_server):
    status, _, message = get(remote_server, CARTESIAN)
    assert status == 503 and b"in time" in message
    assert get(remote_server, "ASK { ?s ?p ?o } # after remote timeout")[0] == 200


@pytest.mark.parametrize("backend_name", ["server", "remote_server"])
def test_row_cap_truncates_and_says_so(request, backend_name):
    base = request.getfixturevalue(backend_name)
    query = "SELECT * WHERE { GRAPH <urn:test:filler> { ?a ?b ?c . ?d ?e ?f } }"  # 60 x 60 rows
    status, headers, body = get(base, query)
    assert status == 200
    assert len(rows(body)) == 1000
    assert "row cap 1000" in headers["x-result-truncated"]
    status, headers, body = get(base, query + " LIMIT 10")
    assert len(rows(body)) == 10 and "x-result-truncated" not in headers
