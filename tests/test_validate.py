"""`cmpkg validate` on the shipped knowledge base and on broken curation fixtures, plus HermiT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import owlready2
import pytest
import rdflib
from click.testing import CliRunner
from rdflib.namespace import SH

from service.cli import main
from service.kb.hermit import JavaNotFoundError, run_hermit
from service.kb.sources import knowledge_files, load_triples
from service.kb.validation import validate_graphs, validate_project

ROOT = Path(__file__).resolve().parent.parent
BROKEN = ROOT / "tests" / "fixtures" / "broken"
VALID = ROOT / "tests" / "fixtures" / "valid"
NS = "https://w3id.org/cmpkg/"


def draft(claim: str, fixture: str) -> str:
    """Each fixture's new claim has its own IRI, so fixtures can also be checked together."""
    return f"{NS}claim/{claim}-draft-{fixture}"


GWB = "busch-2007-aerobic-global-well-being"

# fixture -> (exit code, message substring, focus node, needs HermiT)
CASES: dict[str, tuple[int, str, str | None, bool]] = {
    "missing-source": (1, "This statement has no source", draft(GWB, "missing-source"), False),
    "two-sources": (1, "cites more than one source", draft(GWB, "two-sources"), False),
    "reversed-ci": (1, "The 95% CI is reversed", draft(GWB, "reversed-ci"), False),
    "estimate-outside-ci": (
        1,
        "lies outside its 95% CI",
        draft("bidonde-2014-aquatic-pain-severity", "estimate-outside-ci"),
        False,
    ),
    "unknown-certainty": (1, "Unknown certainty level", draft(GWB, "unknown-certainty"), False),
    "malformed-doi": (1, "Malformed DOI", NS + "source/busch-2007", False),
    "bad-pmid": (1, "Malformed PMID", NS + "source/busch-2007", False),
    "negative-participants": (
        1,
        "cmp:numberOfParticipants is one whole number, zero or more",
        draft("bidonde-2014-aquatic-pain-severity-smd", "negative-participants"),
        False,
    ),
    "modality-as-condition": (
        1,
        "HermiT: the knowledge base is inconsistent. mod:aquatic-exercise is used as the "
        "cmp:condition of claim:bartels-2007-aquatic-pain-severity-draft-modality-as-condition",
        draft("bartels-2007-aquatic-pain-severity", "modality-as-condition"),
        True,
    ),
    "missing-polarity": (1, "no cmp:higherIsBetter", draft(GWB, "missing-polarity"), False),
    "string-instead-of-number": (
        1,
        "cmp:estimate must be one number",
        draft(GWB, "string-instead-of-number"),
        False,
    ),
    "unknown-status": (1, "Unknown curation status", draft(GWB, "unknown-status"), False),
    "proportion-above-one": (
        1,
        "share between 0 and 1",
        NS + "finding/geneen-2017-adverse-event-reporting-draft-proportion-above-one",
        False,
    ),
    "typo-property": (
        1,
        "is not a property of the cmp-kg schema",
        draft(GWB, "typo-property"),
        False,
    ),
    "unknown-outcome": (
        1,
        "exactly one cmp:outcome, an outcome term",
        draft("busch-2007-aerobic-pain", "unknown-outcome"),
        False,
    ),
    "no-result": (
        1,
        "neither figures",
        draft("busch-2007-strength-training", "no-result"),
        False,
    ),
    "half-ci": (
        1,
        "Only one bound of the 95% CI",
        draft("busch-2007-aerobic-physical-function", "half-ci"),
        False,
    ),
    "blank-node-claim": (1, "needs its own IRI", None, False),
    "term-without-label": (1, "This term has no label", NS + "outcome/sleep-quality-draft", False),
    "term-without-definition": (
        1,
        "This term has no definition",
        NS + "pathology/rumination-draft",
        False,
    ),
    "unconfirmed-without-note": (
        0,
        "has no cmp:curationNote",
        draft("busch-2007-aerobic-tender-points", "unconfirmed-without-note"),
        False,
    ),
}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[int, dict]]:
    """One JSON validation run per fixture (HermiT only where the case needs it)."""
    out = {}
    for name, (_code, _msg, _focus, needs_hermit) in CASES.items():
        flags = [] if needs_hermit else ["--no-reasoner"]
        code, text = invoke(str(BROKEN / f"{name}.ttl"), "--format", "json", *flags)
        out[name] = (code, json.loads(text))
    return out


def test_every_fixture_is_in_the_table() -> None:
    names = {p.stem for p in BROKEN.glob("*.ttl")} - {"syntax-error"}
    assert names == set(CASES)
    assert len(names) + 1 >= 12


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_fixture_fails_with_its_message(name: str, runs) -> None:
    expected_code, message, focus, _ = CASES[name]
    code, report = runs[name]
    assert code == expected_code
    hits = [f for f in report["findings"] if message in f["message"]]
    assert hits, f"no finding with {message!r}: {[f['message'] for f in report['findings']]}"
    if focus is not None:
        assert focus in {f["focus_node"] for f in hits}
    else:
        assert all(f["focus_node"].startswith("_:") for f in hits)
    # The finding points the curator at the file that holds the mistake.
    assert any(f"tests/fixtures/broken/{name}.ttl" in (f["file"] or "") for f in hits)


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_fixture_has_one_kind_of_mistake(name: str, runs) -> None:
    """Nothing outside the fixture is flagged: the shipped KB itself stays clean."""
    _code, report = runs[name]
    for f in report["findings"]:
        if f["severity"] == "Violation":
            assert f"tests/fixtures/broken/{name}.ttl" in (f["file"] or ""), f


def test_modality_as_condition_is_found_by_hermit(runs) -> None:
    _code, report = runs["modality-as-condition"]
    owl = [f for f in report["findings"] if f["check"] == "owl"]
    assert report["owl_consistent"] is False
    assert owl and owl[0]["path"] == NS + "vocab/condition"
    assert owl[0]["value"] == NS + "modality/aquatic-exercise"
    assert "disjoint" in owl[0]["message"]


def test_warnings_fail_only_with_strict() -> None:
    fixture = str(BROKEN / "unconfirmed-without-note.ttl")
    assert invoke(fixture, "--no-reasoner")[0] == 0
    code, output = invoke(fixture, "--no-reasoner", "--strict")
    assert code == 1
    assert "[Warning]" in output


def test_syntax_error_names_file_and_line() -> None:
    code, output = invoke(str(BROKEN / "syntax-error.ttl"), "--no-reasoner")
    assert code == 2
    assert "tests/fixtures/broken/syntax-error.ttl:17" in output
    assert "line 17" in output


def test_missing_file_is_unreadable_input(tmp_path: Path) -> None:
    code, output = invoke(str(tmp_path / "nowhere.ttl"), "--no-reasoner")
    assert code == 2
    assert "nowhere.ttl" in output


def test_text_report_reads_like_the_curators_turtle() -> None:
    code, output = invoke(str(BROKEN / "reversed-ci.ttl"), "--no-reasoner")
    assert code == 1
    lines = output.splitlines()
    head = lines.index(
        "tests/fixtures/broken/reversed-ci.ttl: "
        "claim:busch-2007-aerobic-global-well-being-draft-reversed-ci "
        "(Draft: Busch 2007, aerobic training vs control, global well-being, fibromyalgia)"
    )
    assert lines[head + 1].startswith("  cmp:ciLower = 0.75: [Violation] The 95% CI is reversed")
    assert "shape:ci-order" in lines[head + 1]
    assert lines[-1].startswith("NOT valid: 1 violation(s)")


def test_turtle_report_is_a_shacl_validation_report() -> None:
    code, output = invoke(str(BROKEN / "reversed-ci.ttl"), "--no-reasoner", "--format", "turtle")
    assert code == 1
    g = rdflib.Graph().parse(data=output, format="turtle")
    report = next(g.subjects(rdflib.RDF.type, SH.ValidationReport))
    assert g.value(report, SH.conforms) == rdflib.Literal(False)
    values = {g.value(r, SH.value) for r in g.objects(report, SH.result)}
    assert rdflib.Literal("0.75", datatype=rdflib.XSD.decimal) in values


def test_shipped_knowledge_base_is_valid_without_violations() -> None:
    report = validate_project(reasoner=False)
    assert [f for f in report.findings if f.severity == "Violation"] == []


def test_cmpkg_validate_exits_0_on_the_shipped_knowledge_base() -> None:
    """The real console script, HermiT included, as a curator runs it."""
    cmpkg = Path(sys.executable).parent / "cmpkg"
    proc = subprocess.run(
        [str(cmpkg), "validate"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OWL DL: consistent" in proc.stdout


# --- HermiT on the tiny stand-in knowledge base ------------------------------------------------
MINI = [VALID / "mini-ontology.ttl", VALID / "mini-data.ttl"]
MINI_BAD = """
@prefix cmp: <https://w3id.org/cmpkg/vocab/> .
@prefix mod: <https://w3id.org/cmpkg/modality/> .
<https://w3id.org/cmpkg/claim/x> a cmp:EvidenceClaim ; cmp:condition mod:aerobic-exercise .
"""


@pytest.fixture(scope="module")
def mini_clash(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hermit") / "clash.ttl"
    path.write_text(MINI_BAD)
    return path


def test_hermit_finds_the_mini_kb_consistent() -> None:
    result = run_hermit(load_triples(MINI))
    assert result.consistent
    assert result.clashes == []


def test_hermit_explains_a_modality_used_as_condition(mini_clash: Path) -> None:
    result = run_hermit(load_triples([*MINI, mini_clash]))
    assert not result.consistent
    assert "mod:aerobic-exercise is used as the cmp:condition of claim:x" in result.explanation
    assert "disjoint" in result.explanation


def test_hermit_reports_inferred_subclass_links(tmp_path: Path) -> None:
    extra = tmp_path / "defined.ttl"
    # A claim class restricted to fibromyalgia is classified under a class defined as claims
    # about some chronic pain: a link nobody asserted.
    extra.write_text(
        "@prefix owl: <http://www.w3.org/2002/07/owl#> .\n"
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
        "@prefix cmp: <https://w3id.org/cmpkg/vocab/> .\n"
        "@prefix cond: <https://w3id.org/cmpkg/condition/> .\n"
        "cmp:FibromyalgiaClaim a owl:Class ; rdfs:subClassOf cmp:EvidenceClaim ,\n"
        "  [ a owl:Restriction ; owl:onProperty cmp:condition ;\n"
        "    owl:someValuesFrom cond:fibromyalgia ] .\n"
        "cmp:ChronicPainClaim a owl:Class ; owl:equivalentClass [ a owl:Class ;\n"
        "  owl:intersectionOf ( cmp:EvidenceClaim [ a owl:Restriction ;\n"
        "    owl:onProperty cmp:condition ; owl:someValuesFrom cond:chronic-pain ] ) ] .\n"
    )
    result = run_hermit(load_triples([*MINI, extra]))
    assert result.consistent
    inferred = set(result.inferred_subclass_of)
    assert (NS + "vocab/FibromyalgiaClaim", NS + "vocab/ChronicPainClaim") in inferred
    # Asserted links are not reported as inferred.
    assert (NS + "vocab/FibromyalgiaClaim", NS + "vocab/EvidenceClaim") not in inferred
    assert (NS + "condition/fibromyalgia", NS + "condition/chronic-widespread-pain") not in inferred


def test_hermit_names_a_literal_outside_its_datatype_range(tmp_path: Path) -> None:
    extra = tmp_path / "string.ttl"
    extra.write_text(
        "@prefix cmp: <https://w3id.org/cmpkg/vocab/> .\n"
        "<https://w3id.org/cmpkg/claim/busch-2007-aerobic-physical-function> "
        'cmp:estimate "0.66" .\n'
    )
    result = run_hermit(load_triples([*MINI, extra]))
    assert not result.consistent
    assert "cmp:estimate '0.66'" in result.explanation


def test_hermit_names_two_values_of_a_functional_property(tmp_path: Path) -> None:
    extra = tmp_path / "twice.ttl"
    extra.write_text(
        "@prefix cmp: <https://w3id.org/cmpkg/vocab/> .\n"
        "<https://w3id.org/cmpkg/claim/busch-2007-aerobic-physical-function> "
        "cmp:estimate 0.67 .\n"
    )
    ontology = knowledge_files(ROOT)["ontology"]  # declares cmp:estimate functional
    result = run_hermit(load_triples([*ontology, MINI[1], extra]))
    assert not result.consistent
    assert "2 different values for cmp:estimate (0.66, 0.67)" in result.explanation


def test_input_hermit_rejects_is_reported_not_raised(tmp_path: Path) -> None:
    """xsd:gYear and friends are outside the OWL 2 datatype map: HermiT refuses the input."""
    extra = tmp_path / "gyear.ttl"
    extra.write_text(
        "@prefix cmp: <https://w3id.org/cmpkg/vocab/> .\n"
        "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
        '<https://w3id.org/cmpkg/source/busch-2007> cmp:year "2007"^^xsd:gYear .\n'
    )
    shapes = load_triples(sorted((ROOT / "shapes").glob("*.ttl")))
    report = validate_graphs(load_triples([MINI[1], extra]), load_triples(MINI[:1]), shapes)
    owl = [f for f in report.findings if f.check == "owl"]
    assert len(owl) == 1 and "not part of the OWL 2 datatype map" in owl[0].message
    assert report.exit_code() == 1
    # The shapes flag the same literal for the curator.
    assert any(f.path == NS + "vocab/year" and f.check == "shacl" for f in report.findings)


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owlready2, "JAVA_EXE", "/nonexistent/java")
    with pytest.raises(JavaNotFoundError, match="Java"):
        run_hermit(load_triples(MINI))


def test_validate_graphs_on_the_mini_kb_is_clean_and_deterministic(mini_clash: Path) -> None:
    shapes = load_triples(sorted((ROOT / "shapes").glob("*.ttl")))
    ontology = load_triples(MINI[:1])
    clean = validate_graphs(load_triples(MINI[1:]), ontology, shapes)
    assert clean.conforms and clean.exit_code() == 0
    assert {f.severity for f in clean.findings} <= {"Warning"}
    a = validate_graphs(load_triples([MINI[1], mini_clash]), ontology, shapes, reasoner=False)
    b = validate_graphs(load_triples([MINI[1], mini_clash]), ontology, shapes, reasoner=False)
    assert a.render("json") == b.render("json")
    assert a.exit_code() == 1


def test_a_draft_is_checked_on_what_it_touches_and_whole_checks_everything() -> None:
    """cmpkg validate FILE names its scope (it is not a verdict on the whole knowledge base);
    --whole runs every shape on every node and finds the same mistake."""
    fixture = str(BROKEN / "reversed-ci.ttl")
    code, scoped = invoke(fixture, "--no-reasoner")
    assert code == 1
    assert "SHACL checked the 1 node(s) the draft touches" in scoped
    code, whole = invoke(fixture, "--no-reasoner", "--whole")
    assert code == 1
    assert "node(s) the draft touches" not in whole
    mistake = "The 95% CI is reversed"
    assert [x for x in scoped.splitlines() if mistake in x] == [
        x for x in whole.splitlines() if mistake in x
    ]
