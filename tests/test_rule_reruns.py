"""When the rules engine runs a rule again within its stratum (reasoning.needs_rerun), and the
read-pattern analysis behind it (service/kb/rule_analysis.py): a rerun is skipped only when
no triple derived since the rule last ran can take part in its result, so the fixpoint is the
one that rerunning on every written predicate reaches; rules that feed themselves or each
other still get there."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
from conftest import RULE_PREMISES as PREMISES
from conftest import RULE_TARGET as TARGET
from conftest import graph_triples
from conftest import make_rule as rule
from conftest import rule_store as store_with

from service.kb.reasoning import (
    RULE_PREFIXES,
    read_patterns_text,
    run_rules,
)
from service.kb.rule_analysis import PATTERNS_FILE, Alternatives, analyse
from service.kb.sources import PREFIXES

ROOT = Path(__file__).resolve().parent.parent
CMP = PREFIXES["cmp"]
NS = "https://w3id.org/cmpkg/"
RDFS = PREFIXES["rdfs"]
PREFIXES_KEY = tuple(RULE_PREFIXES.items())


def test_stored_read_patterns_are_current():
    """The build reads each rule's analysis from ontology/rules/read-patterns.json instead of
    parsing the rule; a rule edited without regenerating it would be parsed at every build."""
    stored = (ROOT / PATTERNS_FILE).read_text(encoding="utf-8")
    assert stored == read_patterns_text(ROOT), (
        "ontology/rules/read-patterns.json is stale; regenerate it with "
        '.venv/bin/python -c "from service.kb.reasoning import write_read_patterns as w; w()"'
    )


# A rule that mints a note for each condition, labelled from the condition's label: at the
# predicate level its output (rdfs:label) feeds what it reads (rdfs:label).
NOTE_RULE = """CONSTRUCT { ?n a cmp:Note ; rdfs:label ?l2 }
WHERE { ?c a cmp:Condition ; rdfs:label ?l .
        BIND (CONCAT(?l, "+") AS ?l2) BIND (IRI(CONCAT(STR(?c), "-note")) AS ?n) }"""
CONDITIONS = """<urn:c:a> a cmp:Condition ; rdfs:label "a" .
<urn:c:b> a cmp:Condition ; rdfs:label "b" ."""


def test_a_rule_its_own_output_cannot_take_part_in_runs_once():
    # The new labels are on notes, and the rule reads only the labels of conditions.
    rules = [rule("note", NOTE_RULE)]
    store = store_with(CONDITIONS)
    added, rounds = run_rules(store, rules, [PREMISES], TARGET)
    assert added == {"note": 4} and rounds == 1
    # The reference: rerunning on any written predicate it reads takes a second round for
    # nothing, and reaches the same triples.
    reference = store_with(CONDITIONS)
    added, rounds = run_rules(reference, rules, [PREMISES], TARGET, reruns_by_predicate=True)
    assert added == {"note": 4} and rounds == 2
    assert graph_triples(store) == graph_triples(reference)


def test_a_rule_that_feeds_itself_reaches_its_fixpoint():
    # Each new node is itself a condition, so its label takes part in the next round.
    query = """CONSTRUCT { ?n a cmp:Condition ; rdfs:label ?l2 }
    WHERE { ?c a cmp:Condition ; rdfs:label ?l . FILTER (STRLEN(?l) < 5)
            BIND (CONCAT(?l, "+") AS ?l2) BIND (IRI(CONCAT(STR(?c), "-")) AS ?n) }"""
    store = store_with('<urn:c:a> a cmp:Condition ; rdfs:label "a" .')
    added, rounds = run_rules(store, [rule("grow", query)], [PREMISES], TARGET)
    labels = {
        q.object.value
        for q in store.quads_for_pattern(None, ox.NamedNode(RDFS + "label"), None, TARGET)
    }
    assert labels == {"a+", "a++", "a+++", "a++++"}
    assert added == {"grow": 8}
    assert rounds == 5  # four that derive, one that finds nothing more


def test_rules_that_feed_each_other_in_a_stratum_reach_the_fixpoint():
    # A cycle between two rules of one stratum: each extends what the other derived.
    a = rule(
        "reach-a",
        "CONSTRUCT { ?y cmp:reachedA true } WHERE { ?x cmp:reachedB true ; cmp:next ?y }",
    )
    b = rule(
        "reach-b",
        "CONSTRUCT { ?y cmp:reachedB true } WHERE { ?x cmp:reachedA true ; cmp:next ?y }",
    )
    chain = " ".join(f"<urn:n:{i}> cmp:next <urn:n:{i + 1}> ." for i in range(6))
    store = store_with(chain + " <urn:n:0> cmp:reachedB true .")
    added, _rounds = run_rules(store, [a, b], [PREMISES], TARGET)
    assert added == {"reach-a": 3, "reach-b": 3}
    got = graph_triples(store)
    true = '"true"^^<http://www.w3.org/2001/XMLSchema#boolean>'
    for i in range(1, 7):
        which, other = ("reachedA", "reachedB") if i % 2 else ("reachedB", "reachedA")
        assert f"<urn:n:{i}> <{CMP}{which}> {true}" in got
        assert f"<urn:n:{i}> <{CMP}{other}> {true}" not in got


def test_a_negated_read_of_new_output_reruns():
    # The second rule's NOT EXISTS reads what the first derives in the same stratum, after
    # the second has run: the new triple takes part in its result, so it runs again (and
    # finds nothing more: the fixpoint only adds), in a third round the analysis must not skip.
    first = rule(
        "mark",
        "CONSTRUCT { ?c cmp:marked true } WHERE { ?c cmp:flagged true }",
    )
    second = rule(
        "unmarked",
        """CONSTRUCT { ?c cmp:seen true } WHERE { ?c a cmp:Condition .
             FILTER NOT EXISTS { ?c cmp:marked true } }""",
    )
    third = rule(
        "flag",
        "CONSTRUCT { ?c cmp:flagged true } WHERE { ?c cmp:seen true }",
    )
    store = store_with(CONDITIONS)
    reference = store_with(CONDITIONS)
    rules = [first, second, third]
    added, rounds = run_rules(store, rules, [PREMISES], TARGET)
    expected = run_rules(reference, rules, [PREMISES], TARGET, reruns_by_predicate=True)
    assert (added, rounds) == expected
    assert added == {"mark": 2, "unmarked": 2, "flag": 2} and rounds == 3
    assert graph_triples(store) == graph_triples(reference)


def test_shipped_rules_reach_the_reference_fixpoint_with_fewer_runs(shipped_rule_input):
    """The oracle: on the shipped knowledge files, skipping the reruns no new triple can take
    part in gives exactly the triples of rerunning on every written predicate."""
    premises, rules = shipped_rule_input

    def run(by_predicate: bool) -> tuple[dict[str, int], int, set[str]]:
        store = ox.Store()
        store.extend(ox.Quad(t.subject, t.predicate, t.object, PREMISES) for t in premises)
        added, rounds = run_rules(
            store, rules, [PREMISES], TARGET, reruns_by_predicate=by_predicate
        )
        return added, rounds, graph_triples(store)

    precise, reference = run(False), run(True)
    assert precise[0] == reference[0]
    assert precise[2] == reference[2] and len(precise[2]) > 5000
    assert precise[1] < reference[1]  # body-of-evidence and body-certainty run once


# --- the analysis -----------------------------------------------------------------------------
def reads(query: str) -> dict[str, list]:
    found = analyse(query, PREFIXES_KEY)
    assert found is not None
    out: dict[str, list] = {}
    for r in found:
        assert r.pattern is not None
        out.setdefault(" ".join(r.pattern), []).append(r.context)
    return out


def test_optional_patterns_have_the_left_side_as_context():
    got = reads(
        """CONSTRUCT { ?b cmp:note ?l } WHERE { ?b a cmp:EvidenceBody ; cmp:modality ?m .
             OPTIONAL { ?m rdfs:label ?l } }"""
    )
    (context,) = got[f"?m <{RDFS}label> ?l"]
    assert set(context) == {
        ("?b", f"<{PREFIXES['rdf']}type>", f"<{CMP}EvidenceBody>"),
        ("?b", f"<{CMP}modality>", "?m"),
    }
    # The left side does not depend on the optional part.
    (context,) = got[f"?b <{CMP}modality> ?m"]
    assert ("?m", f"<{RDFS}label>", "?l") not in context


def test_a_subquery_shares_only_its_projected_variables():
    got = reads(
        """CONSTRUCT { ?b cmp:note ?n } WHERE { ?b cmp:carriedBy ?x .
             { SELECT ?b (COUNT(?x) AS ?n) WHERE { ?b cmp:ratingDown ?x } GROUP BY ?b } }"""
    )
    (context,) = got[f"?b <{CMP}ratingDown> ?x"]
    # The outer ?x is another variable than the subquery's ?x; ?b is the same.
    ((s, p, o),) = context
    assert s == "?b" and p == f"<{CMP}carriedBy>" and o not in ("?x", "?b")


def test_union_branches_are_alternatives_in_the_context():
    got = reads(
        """CONSTRUCT { ?b cmp:note ?c } WHERE {
             { ?k a cmp:BodyOfEvidenceFinding } UNION { ?b cmp:includesClaim ?k }
             ?k cmp:certainty ?c }"""
    )
    (context,) = got[f"?k <{CMP}certainty> ?c"]
    (alternatives,) = context
    assert isinstance(alternatives, Alternatives) and len(alternatives.branches) == 2


def test_exists_patterns_have_the_filtered_group_as_context():
    got = reads(
        """CONSTRUCT { ?c cmp:note 1 } WHERE { ?c a cmp:EvidenceClaim .
             FILTER NOT EXISTS { ?c cmp:curationStatus status:unconfirmed } }"""
    )
    (context,) = got[f"?c <{CMP}curationStatus> <{NS}status/unconfirmed>"]
    assert context == (("?c", f"<{PREFIXES['rdf']}type>", f"<{CMP}EvidenceClaim>"),)


def test_what_the_analysis_does_not_model_means_always_rerun():
    assert analyse("CONSTRUCT { ?s cmp:note 1 } WHERE { ?s ?p 1 }", PREFIXES_KEY) is None
    graph = "CONSTRUCT { ?s cmp:note 1 } WHERE { GRAPH ?g { ?s cmp:outcome ?o } }"
    assert analyse(graph, PREFIXES_KEY) is None
    assert analyse("CONSTRUCT { ?s ?p } WHERE {", PREFIXES_KEY) is None
