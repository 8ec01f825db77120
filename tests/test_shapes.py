"""The shapes graph itself: valid SHACL, named shapes with curator messages, and the same
report from pyshacl-turbo (the default engine) as from pySHACL (the reference)."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib
from conftest import sparql_parsed_once
from pyshacl.entrypoints import meta_validate
from rdflib.collection import Collection
from rdflib.compare import to_isomorphic
from rdflib.namespace import RDF, SH

from service.kb.sources import knowledge_files, load_triples, to_rdflib_graph
from service.kb.validation import SHAPE_NS, run_shacl, shacl_engine

ROOT = Path(__file__).resolve().parent.parent
BROKEN = ROOT / "tests" / "fixtures" / "broken"
VALID = ROOT / "tests" / "fixtures" / "valid"
SHAPE_KINDS = (SH.NodeShape, SH.PropertyShape, SH.SPARQLConstraint)


@pytest.fixture(scope="module")
def shapes() -> rdflib.Graph:
    return to_rdflib_graph(load_triples(knowledge_files(ROOT)["shapes"]))


def test_shapes_graph_is_valid_shacl(shapes: rdflib.Graph) -> None:
    conforms, _graph, text = meta_validate(shapes, inference="none")
    assert conforms, text


def test_shacl_for_shacl_would_catch_a_broken_shape(shapes: rdflib.Graph) -> None:
    """The meta-check is not vacuous: a malformed constraint makes it fail."""
    broken = rdflib.Graph() + shapes
    broken.add((rdflib.URIRef(SHAPE_NS + "source-doi"), SH.minCount, rdflib.Literal("one")))
    # The shapes as shipped conform (the test above), so the first violation SHACL-for-SHACL
    # finds is the one added here: it may stop there (abort_on_first, a third of the time).
    conforms, results, _text = meta_validate(broken, inference="none", abort_on_first=True)
    assert not conforms
    assert set(results.objects(None, SH.focusNode)) == {rdflib.URIRef(SHAPE_NS + "source-doi")}


def test_every_shape_has_an_iri_under_the_shape_namespace(shapes: rdflib.Graph) -> None:
    named = [s for kind in SHAPE_KINDS for s in shapes.subjects(RDF.type, kind)]
    assert len(named) > 50
    for node in named:
        assert isinstance(node, rdflib.URIRef) and str(node).startswith(SHAPE_NS), node


def test_every_constraint_speaks_to_a_curator(shapes: rdflib.Graph) -> None:
    """Property shapes and SPARQL rules carry an English message that names what to do."""
    for kind in (SH.PropertyShape, SH.SPARQLConstraint):
        for node in shapes.subjects(RDF.type, kind):
            messages = list(shapes.objects(node, SH.message))
            assert messages, f"{node} has no sh:message"
            assert all(m.language == "en" for m in messages), node


def test_every_shape_is_used(shapes: rdflib.Graph) -> None:
    """No orphan property shape or rule: each hangs off a targeted node shape."""
    used = set(shapes.objects(None, SH.property)) | set(shapes.objects(None, SH.sparql))
    for kind in (SH.PropertyShape, SH.SPARQLConstraint):
        for node in shapes.subjects(RDF.type, kind):
            assert node in used, node
    for node in shapes.subjects(RDF.type, SH.NodeShape):
        assert shapes.value(node, SH.targetClass) is not None, node


def test_closed_value_sets_use_sh_in(shapes: rdflib.Graph) -> None:
    paths = {shapes.value(s, SH.path) for s in shapes.subjects(SH["in"], None)}
    cmp = "https://w3id.org/cmpkg/vocab/"
    for prop in ("certainty", "curationStatus", "strength", "reportingStatus", "ratedDownFor"):
        assert rdflib.URIRef(cmp + prop) in paths, prop


def test_default_engine_is_turbo() -> None:
    assert shacl_engine() == "turbo"


FIXTURES = sorted(p for p in BROKEN.glob("*.ttl") if p.stem != "syntax-error")


def test_fixtures_do_not_share_node_iris() -> None:
    """So they can be validated all at once below without their mistakes mixing."""
    subjects: dict[str, str] = {}
    for path in FIXTURES:
        for t in load_triples([path]):
            if isinstance(t.subject, ox.NamedNode) and "/source/" not in t.subject.value:
                assert subjects.setdefault(t.subject.value, path.stem) == path.stem, t.subject


def test_turbo_and_pyshacl_give_identical_reports(shapes: rdflib.Graph) -> None:
    """Every broken fixture on the mini stand-in KB. The same comparison on the shipped KB
    shares its one pySHACL run (over a minute) with the compiled shapes' oracle test in
    tests/test_shacl_sparql.py."""
    data = to_rdflib_graph(load_triples([*sorted(VALID.glob("*.ttl")), *FIXTURES]))
    turbo = run_shacl(data, shapes, engine="turbo")
    with sparql_parsed_once():  # each SPARQL constraint parsed once, not per focus node
        reference = run_shacl(data, shapes, engine="pyshacl")
    results = list(reference.objects(None, SH.result))
    assert len(results) >= len(FIXTURES)
    assert to_isomorphic(turbo) == to_isomorphic(reference)


def test_shapes_only_use_terms_the_ontology_declares(shapes: rdflib.Graph) -> None:
    """A shape about a misspelt property or value would silently check nothing."""
    # Terms only rules produce (bodies of evidence, issue 12) are declared in the rule
    # vocabulary, which the build treats as schema next to the ontology.
    vocabulary = ROOT / "ontology" / "rules" / "rule-vocabulary.ttl"
    ontology = to_rdflib_graph(load_triples([*knowledge_files(ROOT)["ontology"], vocabulary]))
    used = set()
    for _s, items in shapes.subject_objects(SH["in"]):
        used |= set(Collection(shapes, items))
    for pred in (SH.path, SH.targetClass, SH["class"]):
        used |= set(shapes.objects(None, pred))
    project = [t for t in used if str(t).startswith("https://w3id.org/cmpkg/")]
    assert len(project) > 50
    assert [t for t in project if (t, RDF.type, None) not in ontology] == []
