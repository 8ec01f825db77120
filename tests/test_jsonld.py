"""JSON-LD: the published context, framed claims, and the export round trip.

Round trip: `cmpkg export --format jsonld`, expanded to RDF by an independent processor
(PyLD), gives exactly the triples of `cmpkg export --format ttl` (graph isomorphism).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path

import pyoxigraph as ox
import pytest
from conftest import shipped_client
from flask.testing import FlaskClient
from pyld import jsonld as pyld

from service.kb.build import ensure_artifact
from service.kb.sources import (
    PREFIXES,
    knowledge_files,
    load_dataset,
    load_store,
    load_triples,
)
from service.query import jsonld

CMPKG = Path(sys.executable).parent / "cmpkg"
CONTEXT_FILE = Path(__file__).resolve().parent.parent / "ontology" / "context.jsonld"
CMP = PREFIXES["cmp"]
XSD = PREFIXES["xsd"]
SHIPPED = load_store(knowledge_files())
# The built artifact (asserted + inferred) for the API: since issue 12,
# modalities-improving-outcome reads the bodies of evidence the rules derive.
BUILT = load_dataset(ensure_artifact())
BUSCH = PREFIXES["claim"] + "busch-2007-aerobic-physical-function"


def iri(value: str) -> ox.NamedNode:
    return ox.NamedNode(value)


def typed(value: str, datatype: str) -> ox.Literal:
    return ox.Literal(value, datatype=ox.NamedNode(XSD + datatype))


def local_loader(url: str, options: dict | None = None) -> dict:
    """PyLD's document loader, answering our context URL from the repository file only."""
    if not url.endswith("/context.jsonld"):
        raise ValueError(f"unexpected remote document {url}")
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": json.loads(CONTEXT_FILE.read_text(encoding="utf-8")),
    }


NUMERIC = {XSD + t for t in ("decimal", "double", "integer")}
LABEL = PREFIXES["rdfs"] + "label"


def by_value(triple: ox.Triple) -> tuple:
    """A triple with a numeric object as its value (Decimal) and a label as its text.

    The API writes numbers as JSON numbers and the context coerces none, so JSON-LD reads
    a fraction as xsd:double and a whole number as xsd:integer where the graph has
    xsd:decimal: equal values, other terms. Labels are plain strings, read back under the
    context's "@language": "en" where the graph may have none.
    """
    obj = triple.object
    value: object = obj
    if isinstance(obj, ox.Literal) and obj.datatype.value in NUMERIC:
        value = Decimal(obj.value)
    elif isinstance(obj, ox.Literal) and triple.predicate.value == LABEL:
        value = obj.value
    return (triple.subject, triple.predicate, value)


def to_triples(document: dict) -> set[ox.Triple]:
    nquads = pyld.to_rdf(
        document, {"format": "application/n-quads", "documentLoader": local_loader}
    )
    return {q.triple for q in ox.parse(nquads.encode(), format=ox.RdfFormat.N_QUADS)}


# -- the context ------------------------------------------------------------------------------


def test_the_context_covers_every_schema_property_and_class() -> None:
    ctx = jsonld.context()
    drafted = jsonld.draft_context(load_triples(knowledge_files()["ontology"]))
    missing = {term for term in drafted if term not in ctx}
    assert not missing, f"add these terms to ontology/context.jsonld: {sorted(missing)}"
    # a published term keeps its meaning: the drafted definitions are the published ones
    changed = {term for term, d in drafted.items() if ctx[term] != d}
    assert not changed


def test_terms_are_short_and_never_shadow_a_prefix() -> None:
    ctx = jsonld.context()
    # issue 14: no numeric coercion (under xsd:decimal, JSON-LD to-RDF would write a JSON
    # number 0.66 as "6.6E-1"^^xsd:decimal, not a decimal); the API writes JSON numbers
    assert ctx["estimate"] == {"@id": "cmp:estimate"}
    assert not [t for t, d in ctx.items() if isinstance(d, dict) and "xsd:" in d.get("@type", "")]
    assert ctx["ciLower"]["@nest"] == "ci" and ctx["ci"] == "@nest"
    assert ctx["source"] == {"@id": "cmp:source", "@type": "@id"}
    assert ctx["strength"] == {"@id": "cmp:strength", "@type": "@id"}
    assert ctx["EvidenceClaim"] == "cmp:EvidenceClaim"
    comp = jsonld.compactor()
    assert not set(comp.prefixes) & set(comp.definitions)
    # every column name a named query answers with can be a key of a result row
    assert not {
        "claim",
        "finding",
        "site",
        "strength",
        "measure",
        "report",
        "rule",
        "support",
    } & set(comp.prefixes)


def test_values_come_back_as_the_same_rdf_terms() -> None:
    comp = jsonld.compactor()
    subject = ox.NamedNode(BUSCH)
    label = iri(PREFIXES["rdfs"] + "label")
    odd = [
        ox.Triple(subject, iri(CMP + "estimate"), typed("0.660", "decimal")),
        ox.Triple(subject, iri(CMP + "estimate"), typed("7", "integer")),
        ox.Triple(subject, iri(CMP + "year"), typed("007", "integer")),
        ox.Triple(subject, iri(CMP + "year"), typed("2007", "integer")),
        ox.Triple(subject, label, ox.Literal("Busch 2007")),
        ox.Triple(subject, label, ox.Literal("Busch", language="de")),
        ox.Triple(subject, iri(CMP + "source"), ox.Literal("not an IRI")),
        ox.Triple(subject, iri(CMP + "doi"), iri("http://example.org/iri")),
        ox.Triple(subject, iri("http://example.org/p"), ox.BlankNode("b1")),
        ox.Triple(subject, iri(PREFIXES["rdf"] + "type"), iri("http://example.org/C")),
    ]
    document = {"@context": jsonld.context(), "@graph": [comp.node(subject, odd)]}
    back = to_triples(document)
    assert len(back) == len(odd)
    ground = {t for t in odd if not isinstance(t.object, ox.BlankNode)}
    assert ground <= back


# -- framing ----------------------------------------------------------------------------------


def test_a_claim_is_framed_with_source_certainty_and_ci() -> None:
    framed = jsonld.frame([BUSCH], list(SHIPPED), plain=True)[BUSCH]
    assert framed["id"] == BUSCH
    assert framed["ci"] == {"ciLower": 0.41, "ciUpper": 0.92}
    assert framed["estimate"] == 0.66
    assert framed["higherIsBetter"] is True
    assert framed["source"]["id"] == PREFIXES["src"] + "busch-2007"
    assert framed["source"]["label"] == "Busch 2007"
    assert framed["source"]["cochraneId"] == "CD003786.pub2"
    assert framed["source"]["year"] == 2007
    assert framed["certainty"]["id"] == PREFIXES["cert"] + "moderate"
    assert framed["certainty"]["rank"] == 3
    assert framed["intervention"]["id"] == PREFIXES["mod"] + "aerobic-exercise"
    # the framed object says nothing the graph does not, compared by value (see same_value)
    document = {"@context": jsonld.context(), "@graph": [framed]}
    graph = {by_value(q.triple) for q in SHIPPED}
    assert {by_value(t) for t in to_triples(document)} <= graph
    # exactly, the framing writes the graph's own terms: value objects for the decimals
    exact = jsonld.frame([BUSCH], list(SHIPPED))[BUSCH]
    assert exact["ci"]["ciLower"] == {"@value": "0.41", "@type": "xsd:decimal"}
    exact_document = {"@context": jsonld.context(), "@graph": [exact]}
    assert to_triples(exact_document) <= {q.triple for q in SHIPPED}


@pytest.fixture(scope="module")
def client() -> Iterator[FlaskClient]:
    yield from shipped_client(BUILT)


def test_context_is_served(client: FlaskClient) -> None:
    response = client.get("/context.jsonld")
    assert response.status_code == 200
    assert response.content_type == "application/ld+json"
    assert response.get_json() == json.loads(CONTEXT_FILE.read_text(encoding="utf-8"))


def test_an_api_answer_expands_to_triples_of_the_graph(client: FlaskClient) -> None:
    body = client.get("/api/queries/modalities-improving-outcome").get_json()
    triples = to_triples(body)
    claim = ox.NamedNode(BUSCH)
    # The answer writes 0.41 as a JSON number and the context coerces no number (issue 14),
    # so JSON-LD reads it as "4.1E-1"^^xsd:double: the same value as the graph's
    # "0.41"^^xsd:decimal, not the same term. Numbers are compared by value.
    assert ox.Triple(claim, iri(CMP + "ciLower"), typed("4.1E-1", "double")) in triples
    expected = {
        ox.Triple(claim, iri(CMP + "certainty"), iri(PREFIXES["cert"] + "moderate")),
        ox.Triple(claim, iri(CMP + "ciLower"), typed("0.41", "decimal")),
        ox.Triple(claim, iri(CMP + "ciUpper"), typed("0.92", "decimal")),
        ox.Triple(claim, iri(CMP + "source"), iri(PREFIXES["src"] + "busch-2007")),
    }
    assert {by_value(t) for t in expected} <= {by_value(t) for t in triples}
    statements = {by_value(t) for t in triples if t.subject == claim}
    # the claim comes out whole: every statement the graph makes about it, nothing else
    graph = {by_value(q.triple) for q in BUILT.quads_for_pattern(claim, None, None)}
    assert statements == graph
    disclaimer = ox.NamedNode(PREFIXES["dcterms"] + "rights")
    assert any(t.predicate == disclaimer for t in triples)


# -- export -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped KG as an N-Quads artifact (no reasoning needed to test the export)."""
    path = tmp_path_factory.mktemp("export") / "cmpkg.nq"
    path.write_bytes(ox.serialize(list(SHIPPED), format=ox.RdfFormat.N_QUADS))
    return path


def export(artifact: Path, fmt: str, out: Path) -> bytes:
    done = subprocess.run(
        [str(CMPKG), "export", "--format", fmt, "--artifact", str(artifact), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def test_json_ld_export_round_trips_through_pyld(artifact: Path, tmp_path: Path) -> None:
    document = json.loads(export(artifact, "jsonld", tmp_path / "kg.jsonld"))
    assert isinstance(document["@context"], dict)  # embedded: expands offline
    turtle = export(artifact, "ttl", tmp_path / "kg.ttl")
    from_turtle = list(ox.parse(turtle, format=ox.RdfFormat.TURTLE))
    from_jsonld = to_triples(document)
    assert len(from_jsonld) == len({q.triple for q in SHIPPED}) == len(from_turtle)
    assert canonical(from_jsonld) == canonical(from_turtle)


def canonical(triples: Iterable[ox.Triple]) -> set[ox.Quad]:
    """The graph with its blank nodes named by RDFC-1.0: two graphs are isomorphic exactly when
    these sets are equal (rdflib.compare.isomorphic, used before, took ten times as long, and
    compares literals after rdflib's normalisation: this compares them as written)."""
    dataset = ox.Dataset(
        ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in triples
    )
    dataset.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    return set(dataset)


def test_n_quads_export_keeps_the_graphs(artifact: Path, tmp_path: Path) -> None:
    data = export(artifact, "nq", tmp_path / "kg.nq")
    quads = set(ox.parse(data, format=ox.RdfFormat.N_QUADS))
    assert quads == set(SHIPPED)
    assert {q.graph_name for q in quads} == {
        ox.NamedNode(PREFIXES["graph"] + g) for g in ("ontology", "asserted", "shapes")
    }


def test_export_to_stdout_and_unknown_format(artifact: Path) -> None:
    done = subprocess.run(
        [str(CMPKG), "export", "--format", "ttl", "--artifact", str(artifact)],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert b"cond:fibromyalgia" in done.stdout
    bad = subprocess.run(
        [str(CMPKG), "export", "--format", "xml", "--artifact", str(artifact)],
        capture_output=True,
        timeout=120,
    )
    assert bad.returncode == 2
