"""Every figure and identifier in data/ can be traced to the reference texts.

The one test module allowed to read outside the repository: it reads the seed abstracts and
the evidence notes from $CMPKG_SHARED or <repo>/../shared, and fails (never skips) when they
are missing, because an untraceable knowledge base must not look green.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyoxigraph as ox
import pytest

from service.kb.sources import PREFIXES, knowledge_files, load_triples

ROOT = Path(__file__).resolve().parent.parent
CMP = PREFIXES["cmp"]
XSD = PREFIXES["xsd"]
RDF_TYPE = PREFIXES["rdf"] + "type"
RDFS_LABEL = PREFIXES["rdfs"] + "label"

NUMERIC_TYPES = {
    XSD + name
    for name in (
        "decimal", "integer", "double", "float", "int", "long", "short",
        "nonNegativeInteger", "positiveInteger", "nonPositiveInteger", "negativeInteger",
    )
}  # fmt: skip
# Schema constants, not figures taken from a source.
NOT_FIGURES = {CMP + "year", CMP + "rank", CMP + "nullValue"}
IDENTIFIERS = ("doi", "pmid", "pmcid", "cochraneId")
STATUSES = {
    PREFIXES["status"] + s
    for s in ("confirmed", "unconfirmed", "secondary-source", "curator-interpretation")
}
STATEMENT_CLASSES = {
    CMP + c
    for c in (
        "SourcedStatement", "EvidenceClaim", "BodyOfEvidenceFinding", "AdverseEventReport",
        "PathologyContribution", "PathologyAddressing", "MechanismFinding",
        "PhenomenonObservation", "ConditionFinding", "GuidelineRecommendation",
    )
}  # fmt: skip
# Namespaces whose members must be defined in ontology/ before data/ may use them.
TERM_PREFIXES = (
    "cmp", "cond", "mod", "path", "princ", "mech", "phen", "site", "out", "comp", "measure",
    "cert", "dom", "strength", "status", "report", "ae", "dir", "sig",
)  # fmt: skip
COCHRANE_DOI_PREFIX = "10.1002/14651858."

# A number as written in prose: optional sign (ASCII hyphen, Unicode minus or en dash), digits
# with optional thousands separators and decimals, optional percent sign. Digits glued to
# letters (CD011279, PMC5461882, pub2) are identifiers, not figures.
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9.,])(?P<sign>[-−–]?)(?P<num>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?"
    r"(?P<pct>%?)(?![A-Za-z0-9])"
)


def shared_dir() -> Path:
    candidate = Path(os.environ.get("CMPKG_SHARED", ROOT.parent / "shared"))
    if not (candidate / "reference" / "evidence-notes.md").is_file():
        pytest.fail(
            f"Reference texts not found at {candidate}: set CMPKG_SHARED to the directory "
            "holding seeds/*.txt and reference/evidence-notes.md. Traceability cannot be "
            "checked without them."
        )
    return candidate


def reference_text() -> str:
    shared = shared_dir()
    seeds = sorted((shared / "seeds").glob("*.txt"))
    if not seeds:
        pytest.fail(f"No seed abstracts (*.txt) under {shared / 'seeds'}.")
    parts = [p.read_text(encoding="utf-8") for p in seeds]
    parts.append((shared / "reference" / "evidence-notes.md").read_text(encoding="utf-8"))
    return "\n".join(parts)


# Counts the texts spell out ("only three reviews", "all but six reviews", "None of the reviews").
_NUMBER_WORDS = {
    "none": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def number_tokens(text: str) -> set[Decimal]:
    """Every number the text states, normalised so "37,143", "−0.59" and "25%" compare as numbers.

    A hyphen between two numbers ("4-32 weeks", "0-100") is a range, not a sign, so the
    unsigned value counts too.
    """
    found: set[Decimal] = set()
    for m in _NUMBER.finditer(text):
        value = Decimal(m["num"].replace(",", "") + (m["frac"] or ""))
        start = m.start("sign")
        is_range = bool(m["sign"]) and start > 0 and text[start - 1].isdigit()
        if m["sign"] and not is_range:
            value = -value
        found.add(value)
        if is_range:
            found.add(-value)
        if m["pct"]:
            found.add(value / 100)
    found.update(Decimal(_NUMBER_WORDS[w.lower()]) for w in _WORD.findall(text))
    return found


def test_number_tokens_normalise_prose() -> None:
    prose = (
        "37,143 people; SMD -0.49 (−0.59 to -0.39); 25% of studies; 82.8/1000; 4-32 weeks; "
        "CD011279 PMC5461882; all but six reviews"
    )
    tokens = number_tokens(prose)
    for expected in ("37143", "-0.49", "-0.59", "-0.39", "0.25", "82.8", "1000", "4", "32", "6"):
        assert Decimal(expected) in tokens, expected
    assert Decimal("11279") not in tokens and Decimal("5461882") not in tokens
    assert Decimal("0.59") not in tokens, "a leading minus must not be dropped"


# ---- the data under test ----------------------------------------------------------------------

DATA_FILES = knowledge_files(ROOT)["asserted"]
TRIPLES = load_triples(DATA_FILES)


def _short(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> str:
    value = term.value
    for prefix, iri in PREFIXES.items():
        if isinstance(term, ox.NamedNode) and value.startswith(iri):
            return f"{prefix}:{value[len(iri) :]}"
    return str(term)


def _objects() -> dict[str, dict[str, list]]:
    by_subject: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for t in TRIPLES:
        by_subject[t.subject.value][t.predicate.value].append(t.object)
    return by_subject


NODES = _objects()
STATEMENTS = {
    s
    for s, props in NODES.items()
    if any(o.value in STATEMENT_CLASSES for o in props.get(RDF_TYPE, []))
}


def test_data_present() -> None:
    assert len(DATA_FILES) >= 30, "data/ should hold one Turtle file per source"
    assert len(STATEMENTS) > 100


def test_every_number_is_in_the_reference_texts() -> None:
    allowed = number_tokens(reference_text())
    missing = []
    for t in TRIPLES:
        obj = t.object
        if not isinstance(obj, ox.Literal) or obj.datatype.value not in NUMERIC_TYPES:
            continue
        if t.predicate.value in NOT_FIGURES:
            continue
        try:
            value = Decimal(obj.value)
        except InvalidOperation:
            missing.append(
                f"{_short(t.subject)} {_short(t.predicate)} {obj.value!r} (not a number)"
            )
            continue
        if value not in allowed:
            missing.append(f"{_short(t.subject)} {_short(t.predicate)} {obj.value}")
    assert not missing, "numbers in data/ not found in the seeds or evidence notes:\n" + "\n".join(
        missing
    )


def _mentioned(identifier: str, text: str) -> bool:
    """The identifier occurs as a whole token: CD004376 does not count as given by CD004376.pub2."""
    pattern = rf"(?<![A-Za-z0-9./]){re.escape(identifier)}(?![A-Za-z0-9]|\.[A-Za-z0-9])"
    return re.search(pattern, text) is not None


def test_every_identifier_is_in_the_notes() -> None:
    notes = (shared_dir() / "reference" / "evidence-notes.md").read_text(encoding="utf-8")
    unknown = []
    for t in TRIPLES:
        name = t.predicate.value.removeprefix(CMP)
        if name not in IDENTIFIERS:
            continue
        value = t.object.value
        if _mentioned(value, notes):
            continue
        # The notes state the rule: a Cochrane review's DOI is 10.1002/14651858.<ID>.
        if (
            name == "doi"
            and value.startswith(COCHRANE_DOI_PREFIX)
            and _mentioned(value.removeprefix(COCHRANE_DOI_PREFIX), notes)
        ):
            continue
        # ... and so a Cochrane ID may be read off a Cochrane DOI the notes give.
        if name == "cochraneId" and _mentioned(COCHRANE_DOI_PREFIX + value, notes):
            continue
        unknown.append(f"{_short(t.subject)} cmp:{name} {value!r}")
    assert not unknown, "identifiers in data/ that the evidence notes do not give:\n" + "\n".join(
        unknown
    )


def test_every_claim_cites_an_identified_source_or_a_guideline() -> None:
    bad = []
    for s in STATEMENTS:
        if not any(o.value == CMP + "EvidenceClaim" for o in NODES[s][RDF_TYPE]):
            continue
        for source in NODES[s].get(CMP + "source", []):
            props = NODES.get(source.value, {})
            identified = any(props.get(CMP + name) for name in IDENTIFIERS)
            guideline = any(o.value == CMP + "Guideline" for o in props.get(RDF_TYPE, []))
            if not (identified or guideline):
                bad.append(f"{_short(ox.NamedNode(s))} -> {_short(source)}")
    assert not bad, "claims whose source has no DOI/PMID/PMCID/Cochrane ID:\n" + "\n".join(bad)


def test_every_statement_has_one_described_source_and_a_known_status() -> None:
    problems = []
    for s in sorted(STATEMENTS):
        node, props = _short(ox.NamedNode(s)), NODES[s]
        sources = props.get(CMP + "source", [])
        statuses = props.get(CMP + "curationStatus", [])
        if len(sources) != 1:
            problems.append(f"{node}: {len(sources)} cmp:source values")
        elif RDF_TYPE not in NODES.get(sources[0].value, {}):
            problems.append(f"{node}: source {_short(sources[0])} is not described in data/")
        if len(statuses) != 1:
            problems.append(f"{node}: {len(statuses)} cmp:curationStatus values")
        problems += [
            f"{node}: unknown status {_short(v)}" for v in statuses if v.value not in STATUSES
        ]
        if len(props.get(RDFS_LABEL, [])) != 1:
            problems.append(f"{node}: needs exactly one rdfs:label")
    assert not problems, "\n".join(problems)


def test_statement_labels_are_unique() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for s in STATEMENTS:
        for label in NODES[s].get(RDFS_LABEL, []):
            seen[label.value].append(_short(ox.NamedNode(s)))
    clashes = {label: nodes for label, nodes in seen.items() if len(nodes) > 1}
    assert not clashes, f"labels used by more than one statement: {clashes}"


def test_no_blank_nodes_in_data() -> None:
    blank = [
        f"{_short(t.subject)} {_short(t.predicate)} {_short(t.object)}"
        for t in TRIPLES
        if isinstance(t.subject, ox.BlankNode) or isinstance(t.object, ox.BlankNode)
    ]
    assert not blank, "blank nodes in data/ (give every node an IRI):\n" + "\n".join(blank[:20])


def test_one_file_per_source() -> None:
    """data/<key>.ttl describes src:<key>, and every source is described in its own file."""
    misplaced = []
    for path in DATA_FILES:
        subjects = {
            q.subject.value
            for q in load_triples([path])
            if q.predicate.value == RDF_TYPE and q.subject.value.startswith(PREFIXES["src"])
        }
        if subjects != {PREFIXES["src"] + path.stem}:
            misplaced.append(
                f"{path.name}: describes {sorted(_short(ox.NamedNode(s)) for s in subjects)}"
            )
    assert not misplaced, "\n".join(misplaced)


def test_terms_used_in_data_are_defined_in_the_ontology() -> None:
    ontology = load_triples(knowledge_files(ROOT)["ontology"])
    defined = {t.subject.value for t in ontology}
    namespaces = tuple(PREFIXES[p] for p in TERM_PREFIXES)
    used = {
        term.value
        for t in TRIPLES
        for term in (t.predicate, t.object)
        if isinstance(term, ox.NamedNode) and term.value.startswith(namespaces)
    }
    undefined = sorted(_short(ox.NamedNode(u)) for u in used - defined)
    assert not undefined, "terms used in data/ but defined nowhere in ontology/: " + ", ".join(
        undefined
    )
