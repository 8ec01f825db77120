"""run_rules told what is `changed` since the premises' fixpoint (what a prescription does):
a rule whose first query nothing changed can take part in is not run, and the result is
exactly the full run's, every way the engine runs (threads, ways of telling what is new)."""

from __future__ import annotations

import pyoxigraph as ox
import pytest
from conftest import RULE_PREMISES as PREMISES
from conftest import RULE_TARGET as TARGET
from conftest import graph_triples
from conftest import make_rule as rule
from conftest import rule_store as store_with

from service.kb.reasoning import Rule, RuleError, run_rules
from service.kb.sources import PREFIXES

CMP = PREFIXES["cmp"]
RDF_TYPE = ox.NamedNode(PREFIXES["rdf"] + "type")
WAYS = [(1, 10**9), (2, 10**9), (1, 0), (2, 0)]  # (threads, lookup_limit)

# Three strata. 10: conditions are marked (`mark`), and in the same stratum `unmarked` reads
# what `mark` writes under a NOT EXISTS (so when it runs decides what it derives) and `label`
# reads only labels; 20: `count` aggregates the marks; 30: `note` reads only comments.
RULES = [
    rule("mark", "CONSTRUCT { ?c cmp:marked true } WHERE { ?c a cmp:Condition }"),
    rule(
        "unmarked",
        """CONSTRUCT { ?c cmp:unmarked true } WHERE { ?c a cmp:Outcome .
             FILTER NOT EXISTS { ?c cmp:marked true } }""",
    ),
    rule("label", "CONSTRUCT { ?c cmp:named ?l } WHERE { ?c rdfs:label ?l }"),
    rule(
        "count",
        """CONSTRUCT { <urn:c:all> cmp:marks ?n } WHERE {
             { SELECT (COUNT(?c) AS ?n) WHERE { ?c cmp:marked true } } }""",
        order=20,
    ),
    rule("note", "CONSTRUCT { ?c cmp:noted ?x } WHERE { ?c rdfs:comment ?x }", order=30),
]
BASE = """<urn:c:a> a cmp:Condition ; rdfs:label "a" ; rdfs:comment "x" .
          <urn:c:o> a cmp:Outcome ."""


def at_fixpoint(turtle: str) -> ox.Store:
    """A store whose premises graph holds `turtle` and everything RULES derive from it."""
    store = store_with(turtle)
    run_rules(store, RULES, [PREMISES], PREMISES, threads=1)
    return store


def run(rules: list[Rule], changed: list[ox.Triple], seeded: bool, threads: int, limit: int):
    """`rules` (RULES, or some of them broken) over BASE at RULES' fixpoint plus `changed`."""
    store = at_fixpoint(BASE)
    store.extend(ox.Quad(t.subject, t.predicate, t.object, PREMISES) for t in changed)
    added, rounds = run_rules(
        store,
        rules,
        [PREMISES],
        TARGET,
        threads=threads,
        lookup_limit=limit,
        changed=changed if seeded else None,
    )
    return added, rounds, graph_triples(store), sorted(map(str, store.named_graphs()))


def n(iri: str) -> ox.NamedNode:
    return ox.NamedNode(iri)


CHANGES = {
    # A new condition: `mark` runs, then `count` (a new mark), and `unmarked` is not run.
    "condition": [ox.Triple(n("urn:c:b"), RDF_TYPE, n(CMP + "Condition"))],
    # The outcome becomes a condition too: `mark` marks it in round 1, before `unmarked`,
    # which the seed alone would skip; serially it sees the mark, so nothing more comes.
    "outcome marked": [ox.Triple(n("urn:c:o"), RDF_TYPE, n(CMP + "Condition"))],
    # A new outcome: only `unmarked` runs.
    "outcome": [ox.Triple(n("urn:c:p"), RDF_TYPE, n(CMP + "Outcome"))],
    # A new comment, and a label on a node already labelled: only `label` and `note` run.
    "text": [
        ox.Triple(n("urn:c:a"), n(PREFIXES["rdfs"] + "comment"), ox.Literal("y")),
        ox.Triple(n("urn:c:o"), n(PREFIXES["rdfs"] + "label"), ox.Literal("o")),
    ],
    "nothing": [],
}


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize(("threads", "limit"), WAYS)
def test_seeded_run_is_the_full_run(change, threads, limit):
    full = run(RULES, CHANGES[change], False, threads, limit)
    seeded = run(RULES, CHANGES[change], True, threads, limit)
    assert seeded == full
    if change == "nothing":
        assert full[0] == {r.id: 0 for r in RULES}
    else:
        assert full[2], "the change must derive something, or the comparison says little"


def broken(of: Rule, reads: frozenset[str] | None) -> Rule:
    """A rule that fails if it is ever run (its query is not SPARQL), reading `reads`."""
    return Rule(of.iri, of.label, of.order, "CONSTRUCT { not sparql", declared_reads=reads)


def test_a_rule_the_change_cannot_affect_is_not_run():
    # `note` reads only comments: with it broken, the seeded run never runs it (no RuleError)
    # and still gives what the full run with the real rule gives.
    rules = [*RULES[:-1], broken(RULES[-1], frozenset([PREFIXES["rdfs"] + "comment"]))]
    change = CHANGES["condition"]
    seeded = run(rules, change, True, 2, 10**9)
    assert seeded == run(RULES, change, True, 2, 10**9) == run(RULES, change, False, 2, 10**9)
    with pytest.raises(RuleError):
        run(rules, change, False, 2, 10**9)  # run in full, it is run and fails
    with pytest.raises(RuleError):
        run(rules, CHANGES["text"], True, 2, 10**9)  # a new comment: it must run, and fails


def test_a_blank_node_among_the_changes_runs_every_rule():
    # A blank node loaded into needs_rerun's scratch graph would be a new node, matching
    # nothing of the store's: the seed cannot be used, so everything runs (and fails here).
    rules = [*RULES[:-1], broken(RULES[-1], frozenset([PREFIXES["rdfs"] + "comment"]))]
    change = [ox.Triple(n("urn:c:b"), n(CMP + "about"), ox.BlankNode("x"))]
    with pytest.raises(RuleError):
        run(rules, change, True, 1, 10**9)
