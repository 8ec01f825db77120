"""The W3C SPARQL 1.1 Protocol tests (rdf-tests `sparql/sparql11/protocol`, vendored in
tests/w3c/protocol with its licence), query side, against a real `cmpkg serve`.

The cases are generated from the manifest: each `ht:Request` is sent as written (method,
path, headers, body in its declared encoding; no header the manifest does not give), and
its `ht:Response` checked (status class, result format, ASK answer). The seven `update_*`
cases need SPARQL Update, which this read-only endpoint refuses; the `bad_update_*` cases
run, since a read-only endpoint must answer them 4xx as well. The graphs the manifest names
(`ut:graphData`) are served as extra named graphs with `--data`.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pyoxigraph as ox
import pytest
import rdflib
from conftest import SERVICE_FLAGS, start_service, stop
from rdflib.collection import Collection

SUITE = Path(__file__).resolve().parent / "w3c" / "protocol"
MF = rdflib.Namespace("http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#")
HT = rdflib.Namespace("http://www.w3.org/2011/http#")
HTS = rdflib.Namespace("http://www.w3.org/2011/http-statusCodes#")
CNT = rdflib.Namespace("http://www.w3.org/2011/content#")
UT = rdflib.Namespace("http://www.w3.org/2009/sparql/tests/test-update#")
RDFS = rdflib.RDFS
QUERY_SIDE = 27
STATUS_CLASSES = {HTS[f"StatusCode{n}xx"]: n for n in range(1, 6)}
BOOLEAN_MEDIA = {"application/sparql-results+json", "application/sparql-results+xml"}
TABULAR_MEDIA = BOOLEAN_MEDIA | {"text/csv", "text/tab-separated-values"}
RDF_MEDIA = {"application/rdf+xml", "text/turtle", "application/n-triples"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    statuses: set[int]  # acceptable status classes: 2 for 2xx ...
    result_format: str | None
    boolean: bool | None


@dataclass
class Case:
    name: str
    title: str
    requests: list[Request]
    graphs: dict[str, Path] = field(default_factory=dict)  # graph IRI -> data file


def _list(graph: rdflib.Graph, head: rdflib.term.Node) -> list[rdflib.term.Node]:
    return list(Collection(graph, head))


def load_cases() -> list[Case]:
    graph = rdflib.Graph().parse(SUITE / "manifest.ttl", format="turtle")
    manifest = graph.value(predicate=rdflib.RDF.type, object=MF.Manifest)
    cases = []
    for entry in _list(graph, graph.value(manifest, MF.entries)):
        name = str(entry).rsplit("#", 1)[1]
        action = graph.value(entry, MF.action)
        requests = []
        for node in _list(graph, graph.value(action, HT.requests)):
            headers = {}
            header_list = graph.value(node, HT.headers)
            for header in _list(graph, header_list) if header_list else []:
                headers[str(graph.value(header, HT.fieldName))] = str(
                    graph.value(header, HT.fieldValue)
                )
            body_node = graph.value(node, HT.body)
            body = None
            if body_node is not None:
                encoding = str(graph.value(body_node, CNT.characterEncoding) or "UTF-8")
                body = str(graph.value(body_node, CNT.chars)).encode(encoding)
            response = graph.value(node, HT.resp)
            boolean = graph.value(response, MF.expectedBoolean)
            result_format = graph.value(response, MF.expectedFormat)
            requests.append(
                Request(
                    method=str(graph.value(node, HT.methodName)),
                    path=str(graph.value(node, HT.absolutePath)),
                    headers=headers,
                    body=body,
                    statuses={
                        STATUS_CLASSES[s] for s in graph.objects(response, MF.expectedStatus)
                    },
                    result_format=str(result_format) if result_format is not None else None,
                    boolean=boolean.toPython() if boolean is not None else None,
                )
            )
        graphs = {
            str(graph.value(data, RDFS.label)): SUITE
            / Path(urlsplit(str(graph.value(data, UT.graph))).path).name
            for data in graph.objects(entry, UT.graphData)
        }
        cases.append(Case(name, str(graph.value(entry, MF.name)), requests, graphs))
    return cases


CASES = load_cases()
QUERY_CASES = [c for c in CASES if not c.name.startswith("update_")]


@pytest.fixture(scope="module")
def endpoint(artifact: Path, tmp_path_factory) -> Iterator[tuple[str, int]]:
    graphs = {iri: path for case in QUERY_CASES for iri, path in case.graphs.items()}
    data = [arg for iri, path in sorted(graphs.items()) for arg in ("--data", f"{path}={iri}")]
    log = tmp_path_factory.mktemp("logs") / "w3c.log"
    base, process = start_service("--artifact", str(artifact), *data, *SERVICE_FLAGS, log=log)
    parts = urlsplit(base)
    yield parts.hostname or "127.0.0.1", parts.port or 80
    stop(process)


def test_the_manifest_has_27_query_side_cases():
    assert len(CASES) == 34
    assert len(QUERY_CASES) == QUERY_SIDE


def check_result(request: Request, media: str, body: bytes) -> None:
    if request.result_format == "boolean":
        assert media in BOOLEAN_MEDIA, media
        if request.boolean is not None:
            if media.endswith("json"):
                assert json.loads(body)["boolean"] is request.boolean
            else:
                parsed = ox.parse_query_results(body, format=ox.QueryResultsFormat.XML)
                assert bool(parsed) is request.boolean
    elif request.result_format == "tabular":
        assert media in TABULAR_MEDIA, media
        ox.parse_query_results(body, format=ox.QueryResultsFormat.from_media_type(media))
    elif request.result_format == "RDF":
        assert media in RDF_MEDIA, media
        list(ox.parse(body, format=ox.RdfFormat.from_media_type(media)))


@pytest.mark.parametrize("case", QUERY_CASES, ids=[c.name for c in QUERY_CASES])
def test_w3c_protocol_case(endpoint: tuple[str, int], case: Case):
    host, port = endpoint
    for request in case.requests:
        # The manifest's paths start with /sparql/; our endpoint is /sparql.
        assert request.path.startswith("/sparql/")
        path = "/sparql" + request.path.removeprefix("/sparql/")
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            connection.request(request.method, path, body=request.body, headers=request.headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status // 100 in request.statuses, (case.title, response.status, body)
        if response.status // 100 == 2:
            media = (response.getheader("Content-Type") or "").split(";")[0].strip()
            check_result(request, media, body)
