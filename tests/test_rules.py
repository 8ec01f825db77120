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
    rule_reads,
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
    # One record per claim (it was one per derived triple, 6, before records were per rule and
    # node) naming the rule, both derived properties and the claim it used.
    records = out.derivations("rule:significance-direction")
    assert len(records) == 3
    for record in records:
        assert out.objects(record, "cmp:derivedProperty") == {
            iri("cmp:significance").value,
            iri("cmp:direction").value,
        }
        (claim,) = out.objects(record, "cmp:derivedSubject")
        assert claim in out.objects(record, "prov:used")
        assert claim in {
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
    # One record for the claim's two derived statements (per rule and node, not per triple).
    (record,) = out.derivations("rule:reported-significance")
    assert out.objects(record, "cmp:derivedSubject") == {iri("claim:t-narrative").value}
    assert out.objects(record, "cmp:derivedProperty") == {
        iri("cmp:significance").value,
        iri("cmp:direction").value,
    }


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
    # One record per flagged claim (one statement each, so as many as before).
    assert len(out.derivations("rule:imprecision-concern")) == 2


def test_imprecision_concern_negative(rules, fixture_ontology):
    out = run("imprecision-concern-negative.ttl", rules, fixture_ontology)
    for claim in ("claim:t-large", "claim:t-threshold", "claim:t-ratio", "claim:t-uncounted"):
        assert not out.objects(claim, "cmp:imprecisionConcern"), claim


# --- bodies of evidence (issue 12) -------------------------------------------------------------
def body(out: Inferred, key: str) -> dict[str, set[str]]:
    """The facts of one body, by short property name (empty sets when the body is absent)."""
    node = iri("body:" + key)
    props = ("conclusion", "certainty", "evidenceDirectness", "curationStatus", "carriedBy",
             "includesClaim", "projectRatedDownFor", "certaintyCappedBy", "ratedDownFor",
             "ratingDown")  # fmt: skip
    return {p: out.objects(node, "cmp:" + p) for p in props}


def v(*curies: str) -> set[str]:
    return {iri(c).value for c in curies}


def test_body_positive(rules, fixture_ontology):
    out = run("body-positive.ttl", rules, fixture_ontology)
    # Q1: benefit from two direct claims; the certainty is the lowest of them (low), not the
    # best (moderate), as a support statement used to give. The narrower-outcome claim rated
    # high is in the body but does not carry: direct evidence exists.
    q1 = body(out, "aerobic-exercise--physical-function--fibromyalgia")
    assert q1["conclusion"] == v("concl:benefit")
    assert q1["certainty"] == v("cert:low")
    assert q1["evidenceDirectness"] == {"direct"}
    assert q1["carriedBy"] == v("claim:t-fm-moderate", "claim:t-fm-low")
    assert q1["includesClaim"] == v(
        "claim:t-fm-moderate", "claim:t-fm-low", "claim:t-fm-disability"
    )
    assert q1["projectRatedDownFor"] == set() and q1["curationStatus"] == v("status:confirmed")
    node = iri("body:aerobic-exercise--physical-function--fibromyalgia")
    assert out.objects(node, "prov:wasGeneratedBy") == v("rule:body-of-evidence")
    assert v("claim:t-fm-disability") <= out.objects(node, "prov:wasDerivedFrom")
    # Q2: the claims disagree (one crosses zero): inconsistent, both carry, rated down once.
    q2 = body(out, "aerobic-exercise--pain-severity--fibromyalgia")
    assert q2["conclusion"] == v("concl:inconsistent")
    assert q2["carriedBy"] == v("claim:t-pain-crosses", "claim:t-pain-benefit")
    assert q2["projectRatedDownFor"] == v("dom:inconsistency")
    assert q2["certainty"] == v("cert:low")  # moderate - 1
    (down,) = q2["ratingDown"]
    key = "aerobic-exercise--pain-severity--fibromyalgia--inconsistency"
    assert down == iri("rating-down:" + key).value
    assert out.objects(ox.NamedNode(down), "cmp:domain") == v("dom:inconsistency")
    assert out.objects(ox.NamedNode(down), "cmp:reason") == {
        "the claims this conclusion rests on disagree, unexplained: 1 with a clear benefit; "
        "1 with no clear difference"
    }
    assert out.objects(ox.NamedNode(down), "prov:wasDerivedFrom") == q2["carriedBy"]
    assert out.objects(ox.NamedNode(down), "dcterms:source") == v("src:guyatt-2011-inconsistency")
    # Q3: resting only on secondary figures, unrated: the body says so itself.
    q3 = body(out, "exercise--physical-function--knee-osteoarthritis")
    assert q3["conclusion"] == v("concl:benefit") and q3["evidenceDirectness"] == {"direct"}
    assert q3["certainty"] == v("cert:not-reported")
    assert q3["curationStatus"] == v("status:secondary-source")
    oa = body(out, "exercise--physical-function--osteoarthritis")
    assert oa["evidenceDirectness"] == {"indirect"}
    # Not rated stays not rated: the indirectness is recorded, the level is not invented.
    assert oa["certainty"] == v("cert:not-reported")
    assert oa["projectRatedDownFor"] == v("dom:indirectness")
    (oa_down,) = oa["ratingDown"]
    assert out.objects(ox.NamedNode(oa_down), "cmp:reason") == {
        "evidence from knee osteoarthritis applied to osteoarthritis"
    }
    assert out.objects(ox.NamedNode(oa_down), "dcterms:source") == v("src:guyatt-2011-indirectness")
    # Q4: hip OA rated high applied to chronic pain: high - 1 = moderate, capped at low by the
    # finding that rates exercise for chronic pain low; the cap is named.
    q4 = body(out, "exercise--pain-severity--chronic-pain")
    assert q4["certainty"] == v("cert:low")
    assert q4["certaintyCappedBy"] == v("finding:t-chronic-pain-low")
    assert q4["projectRatedDownFor"] == v("dom:indirectness")
    assert body(out, "exercise--pain-severity--osteoarthritis")["certainty"] == v("cert:moderate")
    assert body(out, "exercise--pain-severity--osteoarthritis")["certaintyCappedBy"] == set()
    assert body(out, "exercise--pain-severity--hip-osteoarthritis")["certainty"] == v("cert:high")
    # Q5: significant, judged not clinically important: no important effect; for hip OA it is
    # a broader pooled population, so indirect, with the reason in words.
    q5 = body(out, "exercise--stiffness--osteoarthritis")
    assert q5["conclusion"] == v("concl:no-important-effect")
    hip = body(out, "exercise--stiffness--hip-osteoarthritis")
    assert hip["conclusion"] == v("concl:no-important-effect")
    assert hip["evidenceDirectness"] == {"indirect"}
    (hip_down,) = hip["ratingDown"]
    assert out.objects(ox.NamedNode(hip_down), "cmp:reason") == {
        "evidence from osteoarthritis, a broader population, applied to hip osteoarthritis"
    }
    # Q6: harm; the source's rated-down-for stays on its claim, never on the body.
    q6 = body(out, "exercise--fatigue--fibromyalgia")
    assert q6["conclusion"] == v("concl:harm") and q6["certainty"] == v("cert:low")
    assert q6["ratedDownFor"] == set() and q6["projectRatedDownFor"] == set()
    # Narrower outcome and narrower condition, both named as reasons.
    cwp = body(out, "aerobic-exercise--physical-function--chronic-widespread-pain")
    assert cwp["carriedBy"] == v("claim:t-fm-moderate", "claim:t-fm-low", "claim:t-fm-disability")
    (cwp_down,) = cwp["ratingDown"]
    assert out.objects(ox.NamedNode(cwp_down), "cmp:reason") == {
        "evidence from fibromyalgia applied to chronic widespread pain",
        "evidence measured as disability, a narrower outcome, applied to physical function",
    }
    assert cwp["certainty"] == v("cert:very-low")  # lowest carrying rating low, - 1


def test_body_negative(rules, fixture_ontology):
    out = run("body-negative.ttl", rules, fixture_ontology)
    unconfirmed = body(out, "exercise--physical-function--chronic-widespread-pain")
    assert unconfirmed["includesClaim"] == v("claim:t-unconfirmed")
    assert unconfirmed["carriedBy"] == set()
    assert unconfirmed["conclusion"] == v("concl:inconclusive")
    assert unconfirmed["certainty"] == v("cert:not-reported")  # never the claim's "high"
    assert unconfirmed["curationStatus"] == v("status:unconfirmed")
    bodies = out.of_type("cmp:EvidenceBody")
    # No broader question is asked from an unconfirmed claim or a narrative one.
    assert iri("body:exercise--physical-function--chronic-musculoskeletal-pain").value not in bodies
    assert iri("body:exercise--quality-of-life--chronic-widespread-pain").value not in bodies
    # Head-to-head comparisons belong to no body; siblings never inform each other.
    assert not any(
        t.predicate == iri("cmp:includesClaim") and t.object == iri("claim:t-head-to-head")
        for t in out.triples
    )
    assert iri("body:aerobic-exercise--physical-function--knee-osteoarthritis").value not in bodies
    assert iri("body:aerobic-exercise--physical-function--hip-osteoarthritis").value in bodies
    narrative = body(out, "exercise--quality-of-life--fibromyalgia")
    assert narrative["includesClaim"] == v("claim:t-narrative") and not narrative["carriedBy"]
    assert narrative["conclusion"] == v("concl:inconclusive")


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
    # A caution resting on the curators' reading (issue 12) says so and never reads as what
    # the source reports; the status travels to the caution itself.
    (eih_text,) = out.objects(fm_eih, "cmp:cautionText")
    assert eih_text.startswith("Curators' reading of Naugle 2012 (about fibromyalgia)")
    assert "Naugle 2012 reports" not in eih_text
    assert out.objects(fm_eih, "cmp:curationStatus") == {iri("status:curator-interpretation").value}
    assert out.objects(fm_inherited, "cmp:curationStatus") == {iri("status:confirmed").value}
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
    """Every inferred statement that is not about a node a rule minted (those carry their own
    prov:wasGeneratedBy) is explained by exactly one derivation record naming its rule.

    Records are per rule and node now (cmp:derivedSubject + cmp:derivedProperty), no longer a
    reified triple each, so "explained" reads: a record names the statement's subject and
    property; when several rules' records do (two rating-downs of one body), exactly one of
    them used the statement's object. The meaning is the one the per-triple check had."""
    data = [q for p in positive_fixtures() for q in parse_file(p)]
    inferred = reason(fixture_ontology, data, rules).inferred
    derived_nodes = {t.subject for t in inferred if t.predicate == iri("prov:wasGeneratedBy")}
    records: dict[ox.NamedNode, dict[str, set]] = {}
    for t in inferred:
        if t.subject.value.startswith(DERIVATION_NS):
            fields = records.setdefault(t.subject, {})
            fields.setdefault(t.predicate.value, set()).add(t.object)
    by_statement: dict[tuple, list[dict[str, set]]] = {}
    for fields in records.values():
        assert fields.get(iri("prov:wasGeneratedBy").value), f"a record without a rule: {fields}"
        (subject,) = fields[iri("cmp:derivedSubject").value]
        for prop in fields[iri("cmp:derivedProperty").value]:
            by_statement.setdefault((subject, prop), []).append(fields)
    used = iri("prov:used").value
    checked = 0
    for t in inferred:
        if is_provenance(t):
            continue
        candidates = by_statement.get((t.subject, t.predicate), [])
        if t.subject in derived_nodes and not candidates:
            continue  # written by the rule that minted the node
        assert candidates, f"unexplained: {t}"
        if len(candidates) > 1:
            users = [c for c in candidates if t.object in c.get(used, set())]
            assert len(users) == 1, f"ambiguous: {t} has {len(candidates)} records"
        checked += 1
    assert checked > 50  # the fixtures do derive plain statements about asserted nodes
    assert not any(isinstance(x, ox.BlankNode) for t in inferred for x in (t.subject, t.object))


def test_fixpoint_is_stable_and_deterministic(rules, fixture_ontology):
    data = [q for p in positive_fixtures() for q in parse_file(p)]
    first = reason(fixture_ontology, data, rules)
    second = reason(fixture_ontology, data, rules)
    # The same triples each time; their order in the list is the store's iteration order,
    # which reason() leaves unsorted by design (the artifact writer sorts its lines).
    assert len(first.inferred) == len(second.inferred)
    assert sorted(map(str, first.inferred)) == sorted(map(str, second.inferred))
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


def test_declared_reads_are_what_the_parsed_rule_reads(rules):
    """Rule files declare what their WHERE reads (cmp:reads, cmp:readsType), so a build does
    not parse every rule with rdflib. A declaration short of the parse would stop a stratum's
    fixpoint early; one beyond it would rerun rules for nothing: it must be exactly the parse."""
    for rule in rules:
        if rule.query:
            assert rule.declared_reads is not None, f"{rule.id} declares no cmp:reads"
            parsed = rule_reads(rule.query)
            assert rule.declared_reads == parsed, (
                f"{rule.id}: declared {sorted(rule.declared_reads)}, parsed {sorted(parsed or [])}"
            )


def test_reads_include_exists_inside_expressions():
    # rdflib leaves an EXISTS inside FILTER or BIND untranslated (a TriplesBlock, not a BGP);
    # its patterns are reads all the same.
    cmp = PREFIXES["cmp"]
    reads = rule_reads(
        """CONSTRUCT { ?b cmp:note ?s } WHERE { ?b a cmp:EvidenceBody .
             FILTER NOT EXISTS { ?b cmp:carriedBy ?c . ?c a cmp:EvidenceClaim }
             BIND (IF(EXISTS { ?b cmp:includesClaim/cmp:outcome ?o }, 1, 2) AS ?s) }"""
    )
    assert reads == {
        "type:" + cmp + "EvidenceBody",
        "type:" + cmp + "EvidenceClaim",
        cmp + "carriedBy",
        cmp + "includesClaim",
        cmp + "outcome",
    }
    anything = (
        "CONSTRUCT { ?b cmp:note 1 } WHERE { ?b a cmp:EvidenceBody FILTER EXISTS { ?b ?p 1 } }"
    )
    assert rule_reads(anything) is None


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


def test_which_rules_rate_bodies_is_a_sparql_question():
    store = ox.Store()
    store.extend(load_rule_statements(ROOT))
    rows = store.query(
        "SELECT ?r WHERE { ?r a cmp:Rule ; cmp:derives cmp:certainty } ORDER BY ?r",
        prefixes=PREFIXES,
    )
    assert [row["r"].value for row in rows] == [NS + "rule/body-certainty"]
    # The rules that encode a GRADE method paper cite it (reference notes give these papers).
    cites = {
        (row["r"].value, row["s"].value)
        for row in store.query(
            "SELECT ?r ?s WHERE { ?r a cmp:Rule ; dcterms:source ?s }", prefixes=PREFIXES
        )
    }
    assert (NS + "rule/body-indirectness", NS + "source/guyatt-2011-indirectness") in cites
    assert (NS + "rule/body-inconsistency", NS + "source/guyatt-2011-inconsistency") in cites
    # Rules that encode clinical knowledge name their source.
    sourced = {
        row["r"].value
        for row in store.query(
            "SELECT ?r WHERE { ?r a cmp:Rule ; dcterms:source ?s }", prefixes=PREFIXES
        )
    }
    assert {NS + "rule/prescription-component", NS + "rule/exercise-caution"} <= sourced


# --- OWL RL: the fast reasoners agree with the reference on the shipped files -----------------
@pytest.fixture(scope="module")
def shipped_owl_rl() -> tuple[list[ox.Triple], list[ox.Triple], set[ox.Triple]]:
    """The shipped schema (ontology + rule vocabulary), its data, and owlrl's closure of the
    two: the reference both fast paths below are compared with. owlrl (pure Python) is most
    of either comparison's time and gives the same closure to both, so it runs once."""
    files = knowledge_files(ROOT)
    vocabulary = [p for p in rule_files(ROOT) if p.name == "rule-vocabulary.ttl"]
    schema = load_triples(files["ontology"] + vocabulary)
    data = load_triples(files["asserted"])
    return schema, data, set(owl_rl_entailments(schema + data, engine="owlrl"))


@pytest.mark.slow
def test_reasonable_agrees_with_owlrl_on_shipped_knowledge(shipped_owl_rl):
    schema, data, reference = shipped_owl_rl
    fast = set(owl_rl_entailments(schema + data, engine="reasonable"))
    assert fast == reference, (
        f"only reasonable: {sorted(map(str, fast - reference))[:5]}; "
        f"only owlrl: {sorted(map(str, reference - fast))[:5]}"
    )
    assert fast  # the subclass closure alone is not empty


@pytest.mark.slow
def test_fast_owl_rl_gives_the_full_owlrl_closure_on_shipped_data(shipped_owl_rl):
    """The build's OWL RL fast path (schema closure plus instance types) against owlrl."""
    from service.kb.reasoning import owl_rl_fast

    schema, data, reference = shipped_owl_rl
    fast, fallback = owl_rl_fast(schema, data)
    assert fallback is None  # the shipped schema is inside the fast path's subset
    assert set(fast) == reference, (
        f"only fast: {sorted(map(str, set(fast) - reference))[:5]}; "
        f"only owlrl: {sorted(map(str, reference - set(fast)))[:5]}"
    )
    assert any(t.predicate.value == PREFIXES["rdf"] + "type" for t in fast)
