"""`/openapi.json` and `/docs`: generated from queries/ plus the fixed routes; the document
validates (openapi-spec-validator) and schemathesis, run against the live service (waitress
on a free loopback port, serving the shipped KG), finds no 5xx and no response that breaks
the schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
import schemathesis
from conftest import http, start_service, stop
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.kb.sources import knowledge_files, load_store
from service.query.named import load_queries

QUERIES = load_queries()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cmpkg serve` on the shipped KG (ontology + data written as an artifact)."""
    folder = tmp_path_factory.mktemp("openapi")
    artifact = folder / "cmpkg.nq"
    artifact.write_bytes(
        ox.serialize(list(load_store(knowledge_files())), format=ox.RdfFormat.N_QUADS)
    )
    base, process = start_service(
        "--artifact", str(artifact), "--timeout", "10", "--workers", "2", log=folder / "log"
    )
    yield base
    stop(process)


@pytest.fixture(scope="module")
def document(live: str) -> dict:
    status, _, body = http(live + "/openapi.json")
    assert status == 200
    return json.loads(body)


def test_the_document_validates(document: dict) -> None:
    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["openapi"].startswith("3.1")


def test_every_query_is_an_operation_with_its_parameters(document: dict) -> None:
    for name, query in QUERIES.items():
        operation = document["paths"][f"/api/queries/{name}"]["get"]
        assert operation["operationId"] == name
        assert operation["summary"] == query.summary
        described = {p["name"]: p for p in operation["parameters"]}
        for p in query.parameters:
            assert described[p.name]["required"] == p.required
        assert "format" in described
        assert ("page" in described) == (query.pagination is not None)


def test_fixed_routes_are_described(document: dict) -> None:
    for path in ("/api/queries", "/cmpkg/{path}", "/context.jsonld", "/healthz", "/readyz"):
        assert "get" in document["paths"][path]
    assert "requestBody" in document["paths"]["/api/prescribe"]["post"]


def test_docs_page_lists_every_operation(live: str, document: dict) -> None:
    status, headers, body = http(live + "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = body.decode()
    for item in document["paths"].values():
        for operation in item.values():
            assert f'id="{operation["operationId"]}"' in page
    assert "<script" not in page and "cdn" not in page.lower()  # served from our origin


def test_schemathesis_finds_no_5xx_and_no_broken_response(live: str) -> None:
    # Each operation is fuzzed in turn (schemathesis' lazy pytest loader does not run under
    # pytest 9); call_and_validate runs every default check: no 5xx, status code, content
    # type, headers and body conform to the document.
    api = schemathesis.openapi.from_url(live + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    paths = {operation.path for operation in operations}
    described = {f"/api/queries/{name}" for name in QUERIES}
    assert described | {"/api/queries", "/cmpkg/{path}", "/api/prescribe"} <= paths

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
            database=None,
        )
        def fuzz(case) -> None:
            # A schema-valid presentation may still name no term we hold, or a score outside
            # its stated range: those are SHACL's 404/422, so only that one check is waived.
            waived = [positive_data_acceptance] if case.operation.path == "/api/prescribe" else []
            case.call_and_validate(excluded_checks=waived)

        fuzz()


def test_context_file_is_the_one_in_the_repository(live: str) -> None:
    status, _, body = http(live + "/context.jsonld")
    assert status == 200
    path = Path(__file__).resolve().parent.parent / "ontology" / "context.jsonld"
    assert json.loads(body) == json.loads(path.read_text(encoding="utf-8"))
