"""A prescription runs only the rules its presentation can affect (engine.derive seeds
run_rules with the presentation): the oracle is the run of every rule, which must give
exactly the same derived triples, counts and answer bytes for every presentation the other
tests and the README use, and a knowledge base whose premises are not at the rules'
fixpoint must fall back to running every rule."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest

from service.kb.reasoning import (
    HERMIT_RULE,
    Rule,
    derivation_records,
    load_rule_statements,
    load_rules,
    reason,
)
from service.kb.sources import GRAPHS, PREFIXES, knowledge_files, load_triples, parse_file
from service.prescribe.engine import (
    DERIVED_GRAPH,
    KnowledgeBase,
    derive,
    error_document,
    knowledge_base,
    prescribe,
    render,
    validate,
)
from service.prescribe.presentation import InvalidPresentation, build_presentation

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).name

# Beyond the other tests' presentations: several conditions, goals, pathologies (elevated or
# not, with and without a score) and every kind of preference at once.
VARIED: list[dict[str, Any]] = [
    {
        "conditions": ["knee osteoarthritis", "fibromyalgia", "chronic low back pain"],
        "goals": ["pain", "function"],
        "pathologies": ["fear of movement", {"pathology": "catastrophizing", "elevated": True}],
        "preferences": {"setting": ["water", "land"], "modality": "yoga", "format": "group"},
    },
    {
        "conditions": ["hip osteoarthritis", "rheumatoid arthritis", "fibromyalgia"],
        "goals": ["pain", "fatigue", "physical function"],
        "pathologies": [
            {"pathology": "anxiety", "elevated": True},
            {"pathology": "kinesiophobia", "elevated": False},
        ],
        "preferences": {"modality": ["aquatic exercise", "yoga"], "supervision": "home"},
    },
    {
        "conditions": ["mechanical neck pain", "chronic low back pain", "patellofemoral pain"],
        "goals": ["pain severity", "function", "healthcare use"],
        "preferences": {"setting": "land", "supervision": "supervised"},
    },
]


def _test_presentations() -> list[dict[str, Any]]:
    """Every presentation written as a literal in a test file that mentions prescribe (built
    from names, like `{**BODY, ...}`, it is not a literal: its parts are collected anyway)."""
    found = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name == HERE or "prescribe" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "conditions" for k in node.keys
            ):
                try:
                    found.append(ast.literal_eval(node))
                except ValueError:
                    continue
    return found


def _readme_presentations() -> list[dict[str, Any]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        try:
            value = json.loads(block)
        except ValueError:
            continue
        if isinstance(value, dict) and "conditions" in value:
            found.append(value)
    return found


README = _readme_presentations()
PRESENTATIONS = list(
    {json.dumps(b, sort_keys=True): b for b in [*_test_presentations(), *README, *VARIED]}.values()
)


def test_the_presentations_are_collected():
    # The oracle below is only as good as what it is run on.
    assert README, "the README's worked example"
    assert len(PRESENTATIONS) >= 25, len(PRESENTATIONS)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return knowledge_base()


@pytest.fixture(scope="module")
def full_kb(kb: KnowledgeBase) -> KnowledgeBase:
    """The same knowledge base, every rule run for every prescription (the reference)."""
    return dataclasses.replace(kb, at_fixpoint=False)


def test_the_shipped_build_is_at_the_fixpoint(kb):
    # Else every prescription runs every rule, and the oracle below compares that with itself.
    assert kb.at_fixpoint


def derived(body: Any, kb: KnowledgeBase) -> tuple[dict[str, int], set[ox.Triple]] | None:
    """What derive() adds for the presentation (None when it is refused before derive)."""
    try:
        pres = build_presentation(body, kb.resolver)
        store = kb.store()
        validate(pres, kb, store)
    except InvalidPresentation:
        return None
    per_rule = derive(pres, kb, store)
    return per_rule, {q.triple for q in store.quads_for_pattern(None, None, None, DERIVED_GRAPH)}


def answer(body: Any, kb: KnowledgeBase) -> bytes:
    try:
        return render(prescribe(body, kb))
    except InvalidPresentation as err:
        return render(error_document(err))


@pytest.mark.parametrize("body", PRESENTATIONS, ids=lambda b: json.dumps(b)[:60])
def test_seeded_prescription_is_the_full_run(kb, full_kb, body):
    assert kb.at_fixpoint and not full_kb.at_fixpoint
    assert derived(body, kb) == derived(body, full_kb)


@pytest.mark.parametrize("body", [*README, *VARIED], ids=lambda b: json.dumps(b)[:60])
def test_seeded_prescription_answers_the_same_bytes(kb, full_kb, body):
    # The document is made from the store derive() leaves (and a refused presentation never
    # reaches derive), so equal derived triples give equal answers: checked end to end on
    # the README's example and the varied presentations, not again on every one.
    assert answer(body, kb) == answer(body, full_kb)


def broken(of: Rule) -> Rule:
    """The rule, reading what it declares, with a query that fails if it is ever run."""
    return dataclasses.replace(of, query="CONSTRUCT { not sparql")


@pytest.mark.parametrize("body", [README[0], *VARIED], ids=lambda b: json.dumps(b)[:60])
def test_a_prescription_never_runs_the_knowledge_base_rules(kb, body):
    # The presentation's triples (presentation, pathology statuses, preferences) are read by
    # none of the knowledge-base rules (order < 40): broken, they are never run, and the
    # answer is the one the real rules give.
    assert all(r.declared_reads is not None for r in kb.rules if r.query)
    rules = [broken(r) if r.query and r.order < 40 else r for r in kb.rules]
    assert rules != kb.rules
    assert derived(body, dataclasses.replace(kb, rules=rules)) == derived(body, kb)


# --- a knowledge base not at the fixpoint --------------------------------------------------------
LINK = ox.Triple(
    ox.NamedNode(PREFIXES["cond"] + "fibromyalgia"),
    ox.NamedNode(PREFIXES["rdfs"] + "subClassOf"),
    ox.NamedNode(PREFIXES["cond"] + "chronic-widespread-pain"),
)


def small_artifact(path: Path, late: bool) -> Path:
    """A small artifact built as the build does (the shipped ontology, the prescription rule
    fixture's claims, every rule to its fixpoint); `late`: one true subclass link of the
    ontology reaches the inferred graph only after the rules, with a HermiT derivation
    record, as `_HermitAnswer.with_links` adds a link HermiT finds and OWL RL missed."""
    ontology = [t for t in load_triples(knowledge_files(ROOT)["ontology"]) if not late or t != LINK]
    rule_statements = load_rule_statements(ROOT)
    vocabulary = load_triples([ROOT / "ontology" / "rules" / "rule-vocabulary.ttl"])
    presentation = PREFIXES["presentation"]
    data = [
        q.triple
        for q in parse_file(ROOT / "tests" / "fixtures" / "rules" / "prescribe-positive.ttl")
        if not q.subject.value.startswith(presentation)  # the fixture's own presentation
    ]
    result = reason(ontology + vocabulary, data, load_rules(rule_statements))
    inferred = [*result.inferred, *([LINK, *derivation_records([LINK], HERMIT_RULE)] * late)]
    graphs = {"ontology": ontology, "asserted": data, "inferred": inferred}
    quads = [ox.Quad(t.subject, t.predicate, t.object, GRAPHS[g]) for g, ts in graphs.items()
             for t in ts]  # fmt: skip
    quads += [ox.Quad(q.subject, q.predicate, q.object, GRAPHS["rules"]) for q in rule_statements]
    path.write_bytes(ox.serialize(quads, format=ox.RdfFormat.N_QUADS) or b"")
    return path


def test_a_knowledge_base_not_at_the_fixpoint_runs_every_rule(tmp_path):
    # The control: with the link among the rules' input, the artifact is at the fixpoint.
    assert KnowledgeBase.from_artifact(small_artifact(tmp_path / "a.nq", False), ROOT).at_fixpoint
    kb = KnowledgeBase.from_artifact(small_artifact(tmp_path / "late.nq", True), ROOT)
    assert not kb.at_fixpoint  # the late link lets indirect evidence and more derive again
    body = {"conditions": ["fibromyalgia"], "goals": ["physical function"]}
    full = derived(body, dataclasses.replace(kb, at_fixpoint=False))
    assert derived(body, kb) == full
    # What the fallback prevents: seeded with the presentation alone, the rules that read
    # the link (indirect evidence, bodies of evidence ...) are skipped and their triples lost.
    seeded = derived(body, dataclasses.replace(kb, at_fixpoint=True))
    assert seeded is not None and full is not None
    assert seeded[1] < full[1]
    lost = {t.predicate.value for t in full[1] - seeded[1]}
    assert PREFIXES["cmp"] + "indirectlyInforms" in lost
