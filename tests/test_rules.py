"""The domain rules, each run by the real engine on a small ontology + a positive and a negative
fixture (tests/fixtures/rules/), plus the engine's contracts (provenance, fixpoint, no blank
nodes) and the OWL RL engines' agreement on the shipped knowledge files."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest

from service.kb.reasoning import (
    DERIVATION_NS,
    Rule,
    RuleError,
    is_provenance,
    load_rule_statements,
    load_rules,
    owl_rl_entailments,
    reason,
    rule_files,
    run_rules,
)
from service.kb.sources import (
    GRAPHS,
    PREFIXES,
    expand_curie,
    knowledge_files,
    load_triples,
    parse_file,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "rules"
NS = "https://w3id.org/cmpkg/"


def iri(curie: str) -> ox.NamedNode:
    return ox.NamedNode(expand_curie(curie))


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return load_rules(load_rule_statements(ROOT))


@pytest.fixture(scope="module")
def fixture_ontology() -> list[ox.Quad]:
    return parse_file(FIXTURES / "ontology.ttl")


class Inferred:
    """The inferred triples of one run, with helpers that read like the rules."""

    def __init__(self, triples: list[ox.Triple]) -> None:
        self.triples = set(triples)

    def has(self, s: str | ox.NamedNode, p: str, o: str | ox.Literal | ox.NamedNode) -> bool:
        s = iri(s) if isinstance(s, str) else s
        o = iri(o) if isinstance(o, str) else o
        return ox.Triple(s, iri(p), o) in self.triples

    def objects(self, s: str | ox.NamedNode, p: str) -> set[str]:
        s = iri(s) if isinstance(s, str) else s
        return {t.object.value for t in self.triples if t.subject == s and t.predicate == iri(p)}

    def of_type(self, cls: str) -> set[str]:
        return {
            t.subject.value
            for t in self.triples
            if t.predicate == iri("rdf:type") and t.object == iri(cls)
        }

    def derivations(self, rule: str) -> list[ox.NamedNode]:
        return [
            t.subject
            for t in self.triples
            if t.predicate == iri("prov:wasGeneratedBy")
            and t.object == iri(rule)
            and t.subject.value.startswith(DERIVATION_NS)
        ]


def run(name: str, rules: list[Rule], ontology: list[ox.Quad]) -> Inferred:
    return Inferred(reason(ontology, parse_file(FIXTURES / name), rules).inferred)


# --- significance and direction ----------------------------------------------------------------
def test_significance_direction_positive(rules, fixture_ontology):
    out = run("significance-direction-positive.ttl", rules, fixture_ontology)
    for claim, direction in [
        ("claim:t-benefit-up", "dir:benefit"),
        ("claim:t-benefit-down", "dir:benefit"),
        ("claim:t-harm-ratio", "dir:harm"),
    ]:
        assert out.has(claim, "cmp:significance", "sig:significant"), claim
        assert out.objects(claim, "cmp:direction") == {iri(direction).value}, claim
    # Each derived triple has a record naming the rule and the claim it used.
    records = out.derivations("rule:significance-direction")
    assert len(records) == 6
    for record in records:
        assert out.objects(record, "prov:used") & {
            iri("claim:t-benefit-up").value,
            iri("claim:t-benefit-down").value,
            iri("claim:t-harm-ratio").value,
        }


def test_significance_direction_negative(rules, fixture_ontology):
    out = run("significance-direction-negative.ttl", rules, fixture_ontology)
    for claim in ("claim:t-crosses-zero", "claim:t-crosses-one", "claim:t-touches-zero"):
        assert out.objects(claim, "cmp:significance") == {iri("sig:inconclusive").value}, claim
        assert out.objects(claim, "cmp:direction") == {iri("dir:no-clear-difference").value}
    assert not out.objects("claim:t-no-ci", "cmp:significance")
    assert not out.objects("claim:t-no-ci", "cmp:direction")


# --- narrative results -------------------------------------------------------------------------
def test_reported_significance_positive(rules, fixture_ontology):
    out = run("reported-significance-positive.ttl", rules, fixture_ontology)
    assert out.has("claim:t-narrative", "cmp:significance", "sig:significant")
    assert out.has("claim:t-narrative", "cmp:direction", "dir:benefit")
    assert len(out.derivations("rule:reported-significance")) == 2


def test_reported_significance_negative(rules, fixture_ontology):
    out = run("reported-significance-negative.ttl", rules, fixture_ontology)
    # The CI (-0.5 to 0.5) decides, not the words next to it.
    assert out.objects("claim:t-has-ci", "cmp:significance") == {iri("sig:inconclusive").value}
    assert not out.derivations("rule:reported-significance")
    assert not out.objects("finding:t-overview", "cmp:significance")


# --- indirect evidence -------------------------------------------------------------------------
def test_indirect_evidence_positive(rules, fixture_ontology):
    out = run("indirect-evidence-positive.ttl", rules, fixture_ontology)
    assert out.objects("claim:t-knee", "cmp:indirectlyInforms") == {
        iri(c).value
        for c in ("cond:osteoarthritis", "cond:chronic-musculoskeletal-pain", "cond:chronic-pain")
    }


def test_indirect_evidence_negative(rules, fixture_ontology):
    out = run("indirect-evidence-negative.ttl", rules, fixture_ontology)
    informed = out.objects("claim:t-oa", "cmp:indirectlyInforms")
    assert iri("cond:knee-osteoarthritis").value not in informed
    assert iri("cond:hip-osteoarthritis").value not in informed
    assert iri("cond:osteoarthritis").value not in informed
    assert not out.objects("claim:t-root", "cmp:indirectlyInforms")


# --- imprecision -------------------------------------------------------------------------------
def test_imprecision_concern_positive(rules, fixture_ontology):
    out = run("imprecision-concern-positive.ttl", rules, fixture_ontology)
    true = ox.Literal("true", datatype=iri("xsd:boolean"))
    assert out.has("claim:t-small-smd", "cmp:imprecisionConcern", true)
    assert out.has("claim:t-small-md", "cmp:imprecisionConcern", true)
    assert len(out.derivations("rule:imprecision-concern")) == 2


def test_imprecision_concern_negative(rules, fixture_ontology):
    out = run("imprecision-concern-negative.ttl", rules, fixture_ontology)
    for claim in ("claim:t-large", "claim:t-threshold", "claim:t-ratio", "claim:t-uncounted"):
        assert not out.objects(claim, "cmp:imprecisionConcern"), claim


# --- support -----------------------------------------------------------------------------------
def test_supported_positive(rules, fixture_ontology):
    out = run("supported-positive.ttl", rules, fixture_ontology)
    direct = iri("support:aerobic-exercise--physical-function--fibromyalgia")
    assert direct.value in out.of_type("cmp:Support")
    assert out.objects(direct, "cmp:certainty") == {iri("cert:moderate").value}  # best of two
    assert out.objects(direct, "cmp:restsOn") == {
        iri("claim:t-fm-moderate").value,
        iri("claim:t-fm-low").value,
    }
    assert out.objects(direct, "cmp:evidenceDirectness") == {"direct"}
    assert out.objects(direct, "prov:wasGeneratedBy") == {iri("rule:supported-direct").value}
    # Knee-OA evidence answers the osteoarthritis question, marked as indirect.
    indirect = iri("support:exercise--physical-function--osteoarthritis--indirect")
    assert out.objects(indirect, "cmp:condition") == {iri("cond:osteoarthritis").value}
    assert out.objects(indirect, "cmp:evidenceDirectness") == {"indirect"}
    assert out.objects(indirect, "cmp:restsOn") == {iri("claim:t-knee-function").value}


def test_supported_negative(rules, fixture_ontology):
    out = run("supported-negative.ttl", rules, fixture_ontology)
    conditions_with_support = {
        (
            next(iter(out.objects(ox.NamedNode(s), "cmp:condition"))),
            next(iter(out.objects(ox.NamedNode(s), "cmp:outcome"))),
        )
        for s in out.of_type("cmp:Support")
    }
    pain, function = iri("out:pain-severity").value, iri("out:physical-function").value
    assert (iri("cond:fibromyalgia").value, pain) not in conditions_with_support  # CI crosses 0
    assert (iri("cond:hip-osteoarthritis").value, pain) not in conditions_with_support  # harm
    assert (iri("cond:chronic-widespread-pain").value, function) not in conditions_with_support
    assert (iri("cond:knee-osteoarthritis").value, function) not in conditions_with_support
    # Head-to-head with low-intensity exercise: significant, beneficial, but no support.
    assert out.has("claim:t-head-to-head", "cmp:direction", "dir:benefit")
    assert (iri("cond:knee-osteoarthritis").value, pain) not in conditions_with_support
    assert (iri("cond:osteoarthritis").value, pain) not in conditions_with_support
    # The one significant beneficial confirmed claim does support its own condition.
    assert (iri("cond:osteoarthritis").value, function) in conditions_with_support


# --- prescription components ------------------------------------------------------------------
def test_prescription_component_positive(rules, fixture_ontology):
    out = run("prescription-component-positive.ttl", rules, fixture_ontology)
    key = "principle-perceived-safe-non-threatening--fear-of-movement"
    cmp_node = iri(f"prescription-component:chronic-musculoskeletal-pain--{key}")
    fm_node = iri(f"prescription-component:fibromyalgia--{key}")
    assert {cmp_node.value, fm_node.value} <= out.of_type("cmp:PrescriptionComponent")
    assert out.objects(fm_node, "cmp:condition") == {iri("cond:fibromyalgia").value}
    assert out.objects(fm_node, "cmp:inheritedFrom") == {
        iri("cond:chronic-musculoskeletal-pain").value
    }
    assert not out.objects(cmp_node, "cmp:inheritedFrom")
    assert out.objects(fm_node, "prov:wasDerivedFrom") == {
        iri("finding:t-addressing").value,
        iri("finding:t-contribution").value,
    }
    # Never passed up to the broader condition.
    assert not any(
        s.endswith(f"/chronic-pain--{key}") for s in out.of_type("cmp:PrescriptionComponent")
    )


def test_prescription_component_negative(rules, fixture_ontology):
    out = run("prescription-component-negative.ttl", rules, fixture_ontology)
    assert not out.of_type("cmp:PrescriptionComponent")


# --- cautions ----------------------------------------------------------------------------------
def test_exercise_caution_positive(rules, fixture_ontology):
    out = run("exercise-caution-positive.ttl", rules, fixture_ontology)
    cmp_caution = iri("caution:chronic-musculoskeletal-pain--t-eip")
    fm_inherited = iri("caution:fibromyalgia--t-eip")
    fm_eih = iri("caution:fibromyalgia--t-eih")
    assert {cmp_caution.value, fm_inherited.value, fm_eih.value} <= out.of_type("cmp:Caution")
    assert out.objects(cmp_caution, "dcterms:source") == {iri("src:sluka-2018").value}
    assert out.objects(fm_eih, "dcterms:source") == {iri("src:naugle-2012").value}
    assert out.objects(fm_eih, "prov:wasDerivedFrom") == {iri("finding:t-eih").value}
    (text,) = out.objects(fm_inherited, "cmp:cautionText")
    # What the source reports (as curated) and the project's dosing reading are told apart.
    assert text.startswith(
        "Sluka 2018 reports (about chronic musculoskeletal pain): "
        "A single bout of exercise can increase pain."
    )
    assert "Project reading, not a source statement: in fibromyalgia, start" in text
    assert out.objects(fm_inherited, "cmp:inheritedFrom") == {
        iri("cond:chronic-musculoskeletal-pain").value
    }


def test_exercise_caution_negative(rules, fixture_ontology):
    out = run("exercise-caution-negative.ttl", rules, fixture_ontology)
    assert not out.of_type("cmp:Caution")


# --- engine contracts --------------------------------------------------------------------------
def positive_fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*-positive.ttl"))


def test_every_rule_has_positive_and_negative_fixture(rules):
    # Fixtures may live in any folder under tests/fixtures/ (the rules' owners keep them next to
    # their tests); `<stem>-positive.ttl` covers every rule whose id starts with the stem.
    everywhere = ROOT / "tests" / "fixtures"
    positive = {p.name.removesuffix("-positive.ttl") for p in everywhere.rglob("*-positive.ttl")}
    negative = {p.name.removesuffix("-negative.ttl") for p in everywhere.rglob("*-negative.ttl")}
    assert {p.name.removesuffix("-positive.ttl") for p in positive_fixtures()} == {
        p.name.removesuffix("-negative.ttl") for p in FIXTURES.glob("*-negative.ttl")
    }
    missing = [
        rule.id
        for rule in rules
        if rule.query
        and not (
            any(rule.id.startswith(stem) for stem in positive)
            and any(rule.id.startswith(stem) for stem in negative)
        )
    ]
    assert not missing, f"rules without <id>-positive.ttl / <id>-negative.ttl fixtures: {missing}"


def test_every_inferred_statement_is_explained(rules, fixture_ontology):
    data = [q for p in positive_fixtures() for q in parse_file(p)]
    inferred = reason(fixture_ontology, data, rules).inferred
    derived_nodes = {t.subject for t in inferred if t.predicate == iri("prov:wasGeneratedBy")}
    parts: dict[ox.NamedNode, dict[str, object]] = {}
    for t in inferred:
        if t.subject.value.startswith(DERIVATION_NS) and t.predicate.value.startswith(
            PREFIXES["rdf"]
        ):
            parts.setdefault(t.subject, {})[t.predicate.value.removeprefix(PREFIXES["rdf"])] = (
                t.object
            )
    recorded = {(r.get("subject"), r.get("predicate"), r.get("object")) for r in parts.values()}
    for t in inferred:
        if is_provenance(t) or t.subject in derived_nodes:
            continue
        assert (t.subject, t.predicate, t.object) in recorded, f"unexplained: {t}"
    assert not any(isinstance(x, ox.BlankNode) for t in inferred for x in (t.subject, t.object))


def test_fixpoint_is_stable_and_deterministic(rules, fixture_ontology):
    data = [q for p in positive_fixtures() for q in parse_file(p)]
    first = reason(fixture_ontology, data, rules)
    second = reason(fixture_ontology, data, rules)
    assert first.inferred == second.inferred
    # Running the rules once more over their own output adds nothing.
    store = ox.Store()
    store.extend(
        ox.Quad(q.subject, q.predicate, q.object, GRAPHS["ontology"]) for q in fixture_ontology
    )
    store.extend(ox.Quad(q.subject, q.predicate, q.object, GRAPHS["asserted"]) for q in data)
    store.extend(
        ox.Quad(t.subject, t.predicate, t.object, GRAPHS["inferred"]) for t in first.inferred
    )
    added, _rounds = run_rules(
        store, rules, [GRAPHS["ontology"], GRAPHS["asserted"]], GRAPHS["inferred"]
    )
    assert sum(added.values()) == 0


def test_rule_producing_blank_nodes_is_refused(fixture_ontology):
    bad = Rule(
        iri=NS + "rule/bad",
        label="bad",
        order=10,
        query="CONSTRUCT { ?c cmp:note [ rdfs:label 'x' ] } WHERE { ?c a cmp:Condition }",
    )
    with pytest.raises(RuleError, match="blank node"):
        reason(fixture_ontology, [], [bad])


def test_rule_with_bad_sparql_names_the_rule(fixture_ontology):
    bad = Rule(iri=NS + "rule/typo", label="typo", order=10, query="CONSTRUCT { ?s ?p } WHERE {")
    with pytest.raises(RuleError, match="rule/typo"):
        reason(fixture_ontology, [], [bad])


# --- rules as data ----------------------------------------------------------------------------
def test_each_rule_file_describes_one_documented_rule():
    for path in rule_files(ROOT):
        if path.name == "rule-vocabulary.ttl":
            continue
        quads = parse_file(path)
        described = load_rules(quads)
        assert len(described) == 1, path.name
        (rule,) = described
        assert path.stem == rule.id, path.name
        store = ox.Store()
        store.extend(quads)
        facts = store.query(
            "ASK { ?r rdfs:label ?l ; cmp:rationale ?why ; cmp:derives ?d . "
            "FILTER (lang(?l) = 'en' && STRLEN(STR(?why)) > 80) }",
            prefixes=PREFIXES,
        )
        assert bool(facts), path.name


def test_which_rules_derive_support_is_a_sparql_question():
    store = ox.Store()
    store.extend(load_rule_statements(ROOT))
    rows = store.query(
        "SELECT ?r WHERE { ?r a cmp:Rule ; cmp:derives cmp:Support } ORDER BY ?r", prefixes=PREFIXES
    )
    assert [row["r"].value for row in rows] == [
        NS + "rule/supported-direct",
        NS + "rule/supported-indirect",
    ]
    # Rules that encode clinical knowledge name their source.
    sourced = {
        row["r"].value
        for row in store.query(
            "SELECT ?r WHERE { ?r a cmp:Rule ; dcterms:source ?s }", prefixes=PREFIXES
        )
    }
    assert {NS + "rule/prescription-component", NS + "rule/exercise-caution"} <= sourced


# --- OWL RL: the fast reasoner agrees with the reference on the shipped files -------------------
def test_reasonable_agrees_with_owlrl_on_shipped_knowledge():
    files = knowledge_files(ROOT)
    vocabulary = [p for p in rule_files(ROOT) if p.name == "rule-vocabulary.ttl"]
    triples = load_triples(files["ontology"] + files["asserted"] + vocabulary)
    fast = set(owl_rl_entailments(triples, engine="reasonable"))
    reference = set(owl_rl_entailments(triples, engine="owlrl"))
    assert fast == reference, (
        f"only reasonable: {sorted(map(str, fast - reference))[:5]}; "
        f"only owlrl: {sorted(map(str, reference - fast))[:5]}"
    )
    assert fast  # the subclass closure alone is not empty
