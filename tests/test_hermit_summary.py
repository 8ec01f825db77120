"""HermiT's summary (no JVM here: the oracle against HermiT on everything is in test_build):
what it keeps of the data, and what sends the whole input to HermiT instead."""

from __future__ import annotations

import random

import pyoxigraph as ox
import pytest

from service.kb.hermit import SUMMARY_NS, summarize, summary_blocker
from service.kb.sources import PREFIXES, knowledge_files, load_triples

CMP, XSD = PREFIXES["cmp"], PREFIXES["xsd"]
RDF_TYPE = ox.NamedNode(PREFIXES["rdf"] + "type")


@pytest.fixture(scope="module")
def schema() -> list[ox.Triple]:
    return load_triples(knowledge_files()["ontology"])


def claim(i: int, estimate: str = "0.5", datatype: str = "decimal") -> list[ox.Triple]:
    node = ox.NamedNode(f"{PREFIXES['claim']}s{i}")
    return [
        ox.Triple(node, RDF_TYPE, ox.NamedNode(CMP + "EvidenceClaim")),
        ox.Triple(
            node,
            ox.NamedNode(CMP + "estimate"),
            ox.Literal(estimate, datatype=ox.NamedNode(XSD + datatype)),
        ),
        ox.Triple(node, ox.NamedNode(PREFIXES["rdfs"] + "label"), ox.Literal(f"claim {i}")),
    ]


def test_claims_of_one_kind_become_one_node_with_one_stand_in_figure(schema):
    data = [t for i in range(50) for t in claim(i, f"0.{i}")]
    assert summary_blocker(schema, data) is None
    summary = summarize(schema, data)
    extra = [t for t in summary if t not in set(schema)]
    # One representative: typed, one estimate (a stand-in, whatever the figures), no label.
    assert {str(t.subject) for t in extra} == {str(extra[0].subject)}
    assert extra[0].subject.value.startswith(SUMMARY_NS)
    assert sorted(t.predicate.value for t in extra) == sorted([CMP + "estimate", RDF_TYPE.value])
    assert summarize(schema, [t for i in range(50) for t in claim(i, "0.9")]) == summary


def test_an_estimate_as_text_sends_everything_to_hermit(schema):
    data = [*claim(1), *claim(2, "0.66", "string")]
    assert summary_blocker(schema, data) == "a literal outside its property's range"


def test_two_values_of_a_functional_property_send_everything_to_hermit(schema):
    data = [*claim(1), *claim(1, "0.7")]  # the same claim with two estimates
    why = summary_blocker(schema, data)
    assert why and "two values of functional cmp:estimate" in why


def test_data_stating_schema_sends_everything_to_hermit(schema):
    sub = ox.Triple(
        ox.NamedNode(CMP + "Thing"),
        ox.NamedNode(PREFIXES["rdfs"] + "subClassOf"),
        ox.NamedNode(CMP + "EvidenceClaim"),
    )
    why = summary_blocker(schema, [*claim(1), sub])
    assert why and "rdfs:subClassOf" in why


def test_the_summary_does_not_depend_on_the_order_of_the_data(schema):
    """The build cache keys HermiT's answer by the summary, and the data's order (the rules'
    output among it) varies with the process's hash seed: a summary that took a functional
    property's value from whichever node came first missed the cache in every new `cmpkg
    build` process."""
    data = load_triples(knowledge_files()["asserted"])
    assert summary_blocker(schema, data) is None
    summary = summarize(schema, data)
    for seed in range(3):
        shuffled = list(data)
        random.Random(seed).shuffle(shuffled)
        assert summarize(schema, shuffled) == summary
