"""Linked Data: every IRI of our namespace dereferences at its own path, with content
negotiation (HTML, Turtle, JSON-LD, N-Triples) and `Vary: Accept`, on the shipped KG."""

from __future__ import annotations

import json
from pathlib import Path

import pyoxigraph as ox
import pytest
from conftest import shipped_client, shipped_store
from flask.testing import FlaskClient
from pyld import jsonld as pyld

from service.kb.sources import NS, PREFIXES

SHIPPED = shipped_store()
CONTEXT_FILE = Path(__file__).resolve().parent.parent / "ontology" / "context.jsonld"
FIBROMYALGIA = PREFIXES["cond"] + "fibromyalgia"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture(scope="module")
def client(shipped_app_client: FlaskClient) -> FlaskClient:
    return shipped_app_client


def description(iri: str) -> set[ox.Triple]:
    """What the graph says about an IRI and what points at it (each triple once)."""
    node = ox.NamedNode(iri)
    out = {q.triple for q in SHIPPED.quads_for_pattern(node, None, None)}
    into = {q.triple for q in SHIPPED.quads_for_pattern(None, None, node)}
    return out | into


def path_of(iri: str) -> str:
    return "/cmpkg/" + iri[len(NS) :]


def test_turtle_for_rdf_clients(client: FlaskClient) -> None:
    response = client.get(path_of(FIBROMYALGIA), headers={"Accept": "text/turtle"})
    assert response.status_code == 200
    assert response.content_type == "text/turtle; charset=utf-8"
    assert response.headers["Vary"] == "Accept"
    triples = {q.triple for q in ox.parse(response.data, format=ox.RdfFormat.TURTLE)}
    assert triples == description(FIBROMYALGIA)
    mesh = ox.Triple(
        ox.NamedNode(FIBROMYALGIA),
        ox.NamedNode(PREFIXES["skos"] + "exactMatch"),
        ox.NamedNode(PREFIXES["mesh"] + "D005356"),
    )
    assert mesh in triples


def test_json_ld_and_n_triples_say_the_same(client: FlaskClient) -> None:
    response = client.get(path_of(FIBROMYALGIA), headers={"Accept": "application/ld+json"})
    assert response.content_type == "application/ld+json"
    assert response.headers["Vary"] == "Accept"
    document = response.get_json()
    # the resource itself first, its id a full IRI (issue 14: one convention for ids)
    assert document["@graph"][0]["id"] == FIBROMYALGIA
    assert document["@graph"][0]["label"] == "fibromyalgia"

    def loader(url: str, options: dict | None = None) -> dict:
        assert url == "http://localhost/context.jsonld"
        return {
            "contextUrl": None,
            "documentUrl": url,
            "document": json.loads(CONTEXT_FILE.read_text()),
        }

    nquads = pyld.to_rdf(document, {"format": "application/n-quads", "documentLoader": loader})
    from_jsonld = {q.triple for q in ox.parse(nquads.encode(), format=ox.RdfFormat.N_QUADS)}
    assert from_jsonld == description(FIBROMYALGIA)
    nt = client.get(path_of(FIBROMYALGIA), headers={"Accept": "application/n-triples"})
    assert nt.content_type == "application/n-triples; charset=utf-8"
    assert {q.triple for q in ox.parse(nt.data, format=ox.RdfFormat.N_TRIPLES)} == from_jsonld


def test_format_parameter_overrides_accept(client: FlaskClient) -> None:
    response = client.get(path_of(FIBROMYALGIA) + "?format=ttl", headers={"Accept": BROWSER})
    assert response.content_type.startswith("text/turtle")
    html = client.get(path_of(FIBROMYALGIA) + "?format=html", headers={"Accept": "text/turtle"})
    assert html.content_type.startswith("text/html")


def test_browsers_get_a_page(client: FlaskClient) -> None:
    response = client.get(path_of(FIBROMYALGIA), headers={"Accept": BROWSER})
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert response.headers["Vary"] == "Accept"
    page = response.get_data(as_text=True)
    assert "<h1>fibromyalgia</h1>" in page
    # the definition (reworded in issue 13 to what the sources support)
    assert "A chronic widespread pain condition that the fibromyalgia reviews here" in page
    assert 'href="http://id.nlm.nih.gov/mesh/D005356"' in page  # external match
    assert "FMS" in page  # synonym
    # links out and in, to pages of this server
    assert f'href="{path_of(PREFIXES["cond"] + "chronic-widespread-pain")}"' in page
    busch = path_of(PREFIXES["claim"] + "busch-2007-aerobic-physical-function")
    assert f'href="{busch}"' in page
    # the evidence that mentions it, with source and certainty
    assert "Busch 2007: aerobic training vs control, physical function, fibromyalgia" in page
    assert f'href="{path_of(PREFIXES["src"] + "busch-2007")}"' in page
    assert "moderate certainty" in page
    # the one disclaimer (service/vocab.py) since the three wordings were merged
    assert "Not advice to patients" in page


def test_a_claim_page_shows_its_figures(client: FlaskClient) -> None:
    claim = PREFIXES["claim"] + "busch-2007-aerobic-physical-function"
    page = client.get(path_of(claim), headers={"Accept": BROWSER}).get_data(as_text=True)
    for text in ("0.66", "0.41", "0.92", "moderate certainty", "Busch 2007"):
        assert text in page


def test_every_iri_of_our_namespace_dereferences(client: FlaskClient) -> None:
    ours = {
        term.value
        for quad in SHIPPED
        for term in (quad.subject, quad.predicate, quad.object)
        if isinstance(term, ox.NamedNode) and term.value.startswith(NS)
    }
    assert len(ours) > 500
    failed = [
        iri
        for iri in sorted(ours)
        if client.get(path_of(iri), headers={"Accept": "application/n-triples"}).status_code != 200
    ]
    assert not failed


@pytest.mark.parametrize(
    "path",
    [
        "/cmpkg/condition/no-such-condition",
        "/cmpkg/condition/fibromyalgia%3E%20%3Fs%20%3Fp%20%3Fo",
        "/cmpkg/condition/fibro myalgia",
        "/cmpkg/condition/%22%7D%20UNION%20%7B",
        "/cmpkg/nothing",
    ],
)
@pytest.mark.parametrize("accept", [BROWSER, "text/turtle", "application/ld+json"])
def test_unknown_or_malformed_iris_are_404(client: FlaskClient, path: str, accept: str) -> None:
    response = client.get(path, headers={"Accept": accept})
    assert response.status_code == 404
    assert response.headers["Vary"] == "Accept"


def test_a_newline_in_the_path_is_404(client: FlaskClient) -> None:
    # no route matches a path with a line break: Flask's own 404
    assert client.get("/cmpkg/condition/x%0A%23y").status_code == 404


def test_unacceptable_is_406(client: FlaskClient) -> None:
    response = client.get(path_of(FIBROMYALGIA), headers={"Accept": "image/png"})
    assert response.status_code == 406


def test_short_paths_redirect_to_the_iri_path(client: FlaskClient) -> None:
    response = client.get("/condition/fibromyalgia?format=ttl")
    assert response.status_code == 308
    assert response.headers["Location"] == "/cmpkg/condition/fibromyalgia?format=ttl"


def test_entity_pages_have_navigation_and_statuses_in_words(client: FlaskClient) -> None:
    page = client.get(path_of(FIBROMYALGIA), headers={"Accept": BROWSER}).get_data(as_text=True)
    assert '<nav aria-label="Main">' in page and 'href="/evidence-map"' in page
    # the curation status as its label, never the raw CURIE (issue 14)
    assert "status:confirmed" not in page and "<td>confirmed</td>" in page


def test_application_json_gets_json_ld_and_errors_are_problem_json(client: FlaskClient) -> None:
    # issue 14: the API answers Accept: application/json, so entity IRIs do too
    response = client.get(path_of(FIBROMYALGIA), headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == client.get(path_of(FIBROMYALGIA) + "?format=jsonld").get_json()
    missing = client.get("/cmpkg/condition/no-such-thing", headers={"Accept": "application/json"})
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert missing.get_json()["status"] == 404 and "no-such-thing" in missing.get_json()["detail"]


def test_derivation_records_are_collapsed_behind_a_summary() -> None:
    from service.kb.build import ensure_artifact
    from service.kb.sources import parse_file

    built = ox.Store()
    built.extend(parse_file(ensure_artifact()))
    for served in shipped_client(built):
        claim = PREFIXES["claim"] + "busch-2007-aerobic-physical-function"
        page = served.get(path_of(claim), headers={"Accept": BROWSER}).get_data(as_text=True)  # type: ignore[attr-defined]
        records = page.split('<details class="derivations"', 1)
        assert len(records) == 2, "derivation records are not behind a <details>"
        before, inside = records
        assert "/cmpkg/derivation/" not in before  # none among the plain links in
        assert "<summary>" in inside and "/cmpkg/derivation/" in inside
        # the body of evidence the rules built from it stays a plain link in
        assert "body of evidence: aerobic exercise for physical function in fibromyalgia" in before
