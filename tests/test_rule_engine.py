"""How the rules engine runs a rule (reasoning.run_rules): as a query whose triples come back
serialised, only the new ones loaded into the target; the queries of one round on several
threads, kept only when the serial order would have given the same result; what is new told
by a lookup per triple or, for a large output, by a hash of every stored line. Each way must
give exactly what the one-at-a-time, lookup-per-triple way gives."""

from __future__ import annotations

import pyoxigraph as ox
import pytest
from conftest import RULE_PREMISES as PREMISES
from conftest import RULE_TARGET as TARGET
from conftest import graph_triples
from conftest import make_rule as rule
from conftest import rule_store as store_with

from service.kb.reasoning import (
    Rule,
    RuleError,
    run_rules,
)
from service.kb.sources import PREFIXES

CMP = PREFIXES["cmp"]
XSD_INTEGER = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")


WAYS = [  # (threads, lookup_limit): the reference first
    (1, 10**9),
    (2, 10**9),
    (1, 0),
    (2, 0),
]


def run_every_way(turtle: str, rules: list[Rule]) -> list[tuple]:
    out = []
    for threads, limit in WAYS:
        store = store_with(turtle)
        added, rounds = run_rules(
            store, rules, [PREMISES], TARGET, threads=threads, lookup_limit=limit
        )
        out.append((added, rounds, graph_triples(store), sorted(map(str, store.named_graphs()))))
    return out


def test_what_is_known_already_is_not_derived_again_either_way():
    # The rule restates an asserted triple (in another lexical form of the same integer: the
    # store keeps one canonical form) and derives a new one; only the new one counts.
    rules = [rule("copy", "CONSTRUCT { ?c cmp:rank 1 ; cmp:note ?l } WHERE { ?c rdfs:label ?l }")]
    turtle = '<urn:c:a> rdfs:label "a" ; cmp:rank "01"^^xsd:integer .'
    results = run_every_way(turtle, rules)
    reference = results[0]
    assert reference[0] == {"copy": 1}
    assert reference[2] == {f'<urn:c:a> <{CMP}note> "a"'}
    assert all(r == reference for r in results), results


def test_concurrent_queries_give_the_serial_fixpoint_when_a_rule_reads_an_earlier_ones_output():
    # One stratum: `second` reads what `first` writes in the same round. On two threads its
    # query runs alongside `first`'s, before `first`'s output is loaded; that result must be
    # dropped and the rule run again, as serially it sees `first`'s triples in the same round.
    # (Kept, it would derive nothing, and no rerun would follow: `first` ran before it.)
    first = rule("first", "CONSTRUCT { ?c cmp:marked true } WHERE { ?c a cmp:Condition }")
    second = rule("second", "CONSTRUCT { ?c cmp:seen true } WHERE { ?c cmp:marked true }")
    third = rule("third", "CONSTRUCT { ?c cmp:other true } WHERE { ?c a cmp:Condition }")
    turtle = "<urn:c:a> a cmp:Condition . <urn:c:b> a cmp:Condition ."
    results = run_every_way(turtle, [first, second, third])
    reference = results[0]
    assert reference[0] == {"first": 2, "second": 2, "third": 2}
    assert reference[1] == 1  # nothing derived after a rule's run can take part in its result
    assert all(r == reference for r in results), results


def test_a_failed_rule_leaves_nothing_behind():
    # The second rule copies a blank node out of the data: refused, and nothing of its output
    # reaches the target; what the rule before it derived stays, as when run one by one.
    good = rule("good", "CONSTRUCT { ?c cmp:ok true } WHERE { ?c a cmp:Condition }")
    bad = rule("bad", "CONSTRUCT { ?c cmp:note ?x } WHERE { ?c cmp:has ?x }")
    turtle = "<urn:c:a> a cmp:Condition ; cmp:has [ rdfs:label 'x' ] ."
    for threads, limit in WAYS:
        store = store_with(turtle)
        with pytest.raises(RuleError, match="rule/bad produced a blank node"):
            run_rules(store, [good, bad], [PREMISES], TARGET, threads=threads, lookup_limit=limit)
        assert graph_triples(store) == {f'<urn:c:a> <{CMP}ok> "true"^^<{PREFIXES["xsd"]}boolean>'}
        # No graph of the engine's own is left in the store.
        assert set(store.named_graphs()) == {PREMISES, TARGET}


def test_a_literal_that_reads_like_a_blank_node_is_not_one():
    text = "see _:b0 and _:x ."
    rules = [rule("quote", "CONSTRUCT { ?c cmp:note ?l } WHERE { ?c rdfs:label ?l }")]
    results = run_every_way(f'<urn:c:a> rdfs:label "{text}" .', rules)
    assert results[0][2] == {f'<urn:c:a> <{CMP}note> "{text}"'}
    assert all(r == results[0] for r in results)


@pytest.mark.parametrize(("threads", "limit"), WAYS[1:])
def test_shipped_rules_give_the_reference_every_way(shipped_rule_input, threads, limit):
    """On the shipped knowledge files, into the default graph as the build runs them: the
    same triples, counts and rounds as one query at a time with a lookup per triple."""
    premises, rules = shipped_rule_input

    def run(threads: int, limit: int) -> tuple[dict[str, int], int, list[str], set[str]]:
        store = ox.Store()
        store.extend(ox.Quad(t.subject, t.predicate, t.object) for t in premises)
        outputs: list[ox.Triple] = []
        added, rounds = run_rules(
            store, rules, [], ox.DefaultGraph(), outputs=outputs, threads=threads,
            lookup_limit=limit,
        )  # fmt: skip
        return added, rounds, sorted(map(str, outputs)), graph_triples(store, ox.DefaultGraph())

    reference = run(1, 10**9)
    got = run(threads, limit)
    assert got[:2] == reference[:2]
    assert got[2] == reference[2] and len(got[2]) > 5000
    assert len(set(got[2])) == len(got[2])  # each new triple once in the outputs
    # ... and exactly what the store gained.
    store = ox.Store()
    store.extend(ox.Quad(t.subject, t.predicate, t.object) for t in premises)
    before = graph_triples(store, ox.DefaultGraph())  # in the store's own (canonical) terms
    assert set(got[2]) == got[3] - before
    assert got[3] == reference[3]
