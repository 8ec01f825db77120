"""Page models for the guideline-author pages: query results in, plain data out.

No Flask here: every function takes a `select(sparql) -> rows` callable (variable name ->
IRI or literal lexical form, None when unbound) or already-fetched rows, so the models are
easy to test and the same models feed the HTML pages and their JSON twins.

Derived values (cmp:direction, cmp:significance, cmp:imprecisionConcern) come from the build's
inferred graph; when a build has not derived them yet, the pages fall back to what the source
reported (cmp:reportedDirection / cmp:reportedSignificance) and then to the published CI, so a
missing rule run never shows a benefit as a gap.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard
from urllib.parse import urlencode

from service.kb import sources
from service.kb.sources import NS, PREFIXES, sparql_prefixes
from service.query.jsonld import json_number
from service.vocab import NUMERIC_DATATYPES
from service.vocab import entity_href as entity_href  # re-exported: templates link with it


class Numeral(str):
    """The lexical form of a numeric literal, as rows carry it.

    Pages show figures as published (a str, never re-rounded); the JSON twins write them as
    JSON numbers (issue 14), which needs to know a figure from a text that looks like one (a
    PMID is a string literal). The row reader marks numeric literals with this type, so the
    models stay plain strings and `to_json` alone turns them into numbers.
    """

    __slots__ = ()


Row = dict[str, str | None]
Select = Callable[[str], list[Row]]

CMP = PREFIXES["cmp"]
CONDITION_CLASS = CMP + "Condition"
MODALITY_CLASS = CMP + "ExerciseModality"
OUTCOME_CLASS = CMP + "Outcome"
BENEFIT = PREFIXES["dir"] + "benefit"
HARM = PREFIXES["dir"] + "harm"
SIGNIFICANT = PREFIXES["sig"] + "significant"
INCONCLUSIVE = PREFIXES["sig"] + "inconclusive"
DEFAULT_OUTCOME = PREFIXES["out"] + "physical-function"
# The 400-participant flag is a project heuristic (a rule of thumb derived from GRADE's
# optimal information size), never one of the source's reasons for rating down.
IMPRECISION_HEURISTIC = "project heuristic: fewer than 400 participants (possible imprecision)"

# Cell classes of the evidence map, from most to least informative.
CELL_CLASSES = ("benefit", "harm", "mixed", "inconclusive", "no evidence")


# --- IRIs -------------------------------------------------------------------------------


def local_name(iri: str) -> str:
    """The last path segment: what the pages put in their own query strings."""
    return iri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def curie(iri: str) -> str:
    """The prefixed form of an IRI, or the IRI itself."""
    return sources.curie(iri) or iri


def is_iri(value: str | None) -> TypeGuard[str]:
    return value is not None and value.startswith(("http://", "https://", "urn:"))


def _iri_list(iris: Iterable[str]) -> str:
    return " ".join(f"<{i}>" for i in sorted(set(iris)))


def _is_true(value: str | None) -> bool:
    return value in ("true", "1")


def _decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


# --- labels and hierarchies -------------------------------------------------------------


def _select_about(select: Select, iris: Iterable[str], projection: str, pattern: str) -> list[Row]:
    """`pattern` for each of the IRIs (bound to ?s), in one query; none asked, none run."""
    ordered = sorted({i for i in iris if is_iri(i)})
    if not ordered:
        return []
    return select(
        sparql_prefixes()
        + f"SELECT {projection} WHERE {{\n  VALUES ?s {{ {_iri_list(ordered)} }}\n  {pattern}\n}}"
    )


def fetch_labels(select: Select, iris: Iterable[str]) -> dict[str, str]:
    """English (or untagged) labels; the alphabetically first wins so pages are deterministic."""
    rows = _select_about(
        select,
        iris,
        "?s ?label",
        """{ ?s rdfs:label ?label } UNION { ?s skos:prefLabel ?label }
  FILTER(lang(?label) = "" || langMatches(lang(?label), "en"))""",
    )
    labels: dict[str, str] = {}
    for row in rows:
        s, label = row.get("s"), row.get("label")
        if s and label and (s not in labels or label < labels[s]):
            labels[s] = label
    return labels


def fetch_abbreviations(select: Select, iris: Iterable[str]) -> dict[str, str]:
    """Short forms ("SMD", "RR") among the altLabels: what effect columns conventionally show."""
    rows = _select_about(
        select, iris, "?s ?alt", '?s skos:altLabel ?alt FILTER(regex(str(?alt), "^[A-Z]{2,5}$"))'
    )
    short: dict[str, str] = {}
    for row in rows:
        s, alt = row.get("s"), row.get("alt")
        if s and alt and (s not in short or alt < short[s]):
            short[s] = alt
    return short


def label_of(labels: Mapping[str, str], iri: str | None) -> str:
    if not iri:
        return ""
    return labels.get(iri) or local_name(iri).replace("-", " ")


@dataclass(frozen=True)
class Term:
    iri: str
    label: str
    depth: int = 0
    key: str = ""  # local name, used in the pages' query strings

    @classmethod
    def make(cls, iri: str, label: str, depth: int = 0) -> Term:
        return cls(iri=iri, label=label, depth=depth, key=local_name(iri))


def direct_parents(parents: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Drop ancestors that are reachable through another parent.

    A reasoned graph holds the transitive closure of rdfs:subClassOf / skos:broader; the
    hierarchy view needs only the direct links, whichever of the two the store holds.
    """
    result: dict[str, set[str]] = {}
    for node, ps in parents.items():
        ps = {p for p in ps if p != node}
        result[node] = {p for p in ps if not any(p in parents.get(q, ()) for q in ps if q != p)}
    return result


def hierarchy_order(labels: Mapping[str, str], parents: Mapping[str, set[str]]) -> list[Term]:
    """Depth-first order (children by label), each node once, under its first-placed parent."""
    nodes = set(labels) | set(parents)
    direct = direct_parents({n: set(parents.get(n, ())) & nodes for n in nodes})
    children: dict[str, list[str]] = defaultdict(list)
    for node, ps in direct.items():
        for p in ps:
            children[p].append(node)

    def by_label(iri: str) -> tuple[str, str]:
        return (label_of(labels, iri).casefold(), iri)

    ordered: list[Term] = []
    seen: set[str] = set()

    def visit(node: str, depth: int) -> None:
        if node in seen:
            return
        seen.add(node)
        ordered.append(Term.make(node, label_of(labels, node), depth))
        for child in sorted(children.get(node, ()), key=by_label):
            visit(child, depth + 1)

    for root in sorted((n for n in nodes if not direct.get(n)), key=by_label):
        visit(root, 0)
    for node in sorted(nodes - seen, key=by_label):  # cycles: still list every term
        visit(node, 0)
    return ordered


def fetch_hierarchy(select: Select, cls: str, link: str = "rdfs:subClassOf") -> list[Term]:
    """Every member of `cls` in hierarchy order; `link` is rdfs:subClassOf or skos:broader."""
    rows = select(
        sparql_prefixes()
        + f"""SELECT ?term ?parent WHERE {{
  ?term a <{cls}> .
  OPTIONAL {{ ?term {link} ?parent . ?parent a <{cls}> . FILTER(?parent != ?term) }}
}}"""
    )
    parents: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        term = row.get("term")
        if not is_iri(term):
            continue
        # setdefault registers the term even when it has no parent
        known = parents.setdefault(term, set())
        if row.get("parent"):
            known.add(row["parent"])  # type: ignore[arg-type]
    labels = fetch_labels(select, parents)
    return hierarchy_order({t: label_of(labels, t) for t in parents}, parents)


# --- claims -----------------------------------------------------------------------------

_CLAIM_FIELDS = {
    "label": "rdfs:label",
    "comparator": "cmp:comparator",
    "measure": "cmp:effectMeasure",
    "estimate": "cmp:estimate",
    "lower": "cmp:ciLower",
    "upper": "cmp:ciUpper",
    "higherIsBetter": "cmp:higherIsBetter",
    "studies": "cmp:numberOfStudies",
    "participants": "cmp:numberOfParticipants",
    "certainty": "cmp:certainty",
    "direction": "cmp:direction",
    "significance": "cmp:significance",
    "reportedDirection": "cmp:reportedDirection",
    "reportedSignificance": "cmp:reportedSignificance",
    "imprecision": "cmp:imprecisionConcern",
    "source": "cmp:source",
    "status": "cmp:curationStatus",
    "scale": "cmp:scale",
    "timepoint": "cmp:timepoint",
    "reportedResult": "cmp:reportedResult",
}


def claims_query(
    conditions: Iterable[str] | None = None,
    modalities: Iterable[str] | None = None,
    outcome_within: str | None = None,
    claims: Iterable[str] | None = None,
) -> str:
    """Claims with every single-valued field; derived values are OPTIONAL (may be missing)."""
    filters = []
    if claims is not None:
        filters.append(f"VALUES ?claim {{ {_iri_list(claims)} }}")
    if conditions is not None:
        filters.append(f"VALUES ?condition {{ {_iri_list(conditions)} }}")
    if modalities is not None:
        filters.append(f"VALUES ?modality {{ {_iri_list(modalities)} }}")
    if outcome_within:
        # The map for an outcome includes its narrower outcomes.
        filters.append(f"?outcome skos:broader* <{outcome_within}> .")
    optionals = "\n".join(f"  OPTIONAL {{ ?claim {p} ?{v} }}" for v, p in _CLAIM_FIELDS.items())
    return (
        sparql_prefixes()
        + f"""SELECT * WHERE {{
  {" ".join(filters)}
  ?claim a cmp:EvidenceClaim ; cmp:condition ?condition ; cmp:intervention ?modality ;
         cmp:outcome ?outcome .
{optionals}
  OPTIONAL {{ ?certainty cmp:rank ?rank }}
  OPTIONAL {{ ?measure cmp:nullValue ?nullValue }}
  OPTIONAL {{ ?source cmp:doi ?doi }}
}}"""
    )


def _merge_claim_rows(rows: Iterable[Row]) -> dict[str, Row]:
    """One record per claim: several labels or ranks must not multiply a claim."""
    merged: dict[str, Row] = {}
    for row in rows:
        claim = row.get("claim")
        if not claim:
            continue
        record = merged.setdefault(claim, {})
        for key, value in row.items():
            if value is not None and record.get(key) is None:
                record[key] = value
    return merged


def fallback_direction(record: Row) -> tuple[str | None, str | None]:
    """Direction and significance IRIs when the build has not derived them.

    Order: derived (graph:inferred), then as the source reported, then from the published
    CI against the measure's null value and the scale's polarity.
    """
    direction = record.get("direction") or record.get("reportedDirection")
    significance = record.get("significance") or record.get("reportedSignificance")
    lower, upper = _decimal(record.get("lower")), _decimal(record.get("upper"))
    null = _decimal(record.get("nullValue"))
    polarity = record.get("higherIsBetter")
    if significance is None and lower is not None and upper is not None and null is not None:
        significance = SIGNIFICANT if (lower > null or upper < null) else INCONCLUSIVE
    if direction is None and significance == SIGNIFICANT and null is not None and polarity:
        estimate = _decimal(record.get("estimate"))
        if estimate is None and lower is not None and upper is not None:
            estimate = (lower + upper) / 2
        if estimate is not None and estimate != null:
            better = (estimate > null) == _is_true(polarity)
            direction = BENEFIT if better else HARM
    return direction, significance


def claim_class(direction: str | None, significance: str | None) -> str:
    """benefit / harm only when significant; any other claim is inconclusive."""
    if significance == SIGNIFICANT and direction == BENEFIT:
        return "benefit"
    if significance == SIGNIFICANT and direction == HARM:
        return "harm"
    return "inconclusive"


def cell_class(claim_classes: Iterable[str]) -> str:
    classes = set(claim_classes)
    if not classes:
        return "no evidence"
    if {"benefit", "harm"} <= classes:
        return "mixed"
    for name in ("benefit", "harm"):
        if name in classes:
            return name
    return "inconclusive"


def _number(value: str | None) -> str:
    """Counts with thousands separators; anything unparsable shown as published."""
    if value is None:
        return ""
    try:
        return f"{int(value):,}"
    except ValueError:
        return value


def _decimals(value: str) -> int:
    return len(value.partition(".")[2]) if "." in value else 0


def align_decimals(*values: str | None) -> list[str | None]:
    """Pad an estimate and its CI to a common number of decimals, never rounding.

    Stores keep xsd:decimal in canonical form, so a published "0.40" comes back as "0.4";
    the bounds and the estimate are published to one precision, so the widest one restores it.
    """
    present = [v for v in values if v is not None]
    places = max((_decimals(v) for v in present), default=0)
    out: list[str | None] = []
    for v in values:
        if v is None or places == 0 or not v.lstrip("-").replace(".", "").isdigit():
            out.append(v)
            continue
        whole, _, frac = v.partition(".")
        out.append(f"{whole}.{frac.ljust(places, '0')}")
    return out


POINTS_BETTER = PREFIXES["measure"] + "points-improvement"


def effect_text(
    estimate: str | None,
    lower: str | None,
    upper: str | None,
    measure: str,
    measure_iri: str | None = None,
) -> str:
    """Figures as published: lexical forms, never re-rounded (only zero-padded)."""
    if estimate is None and lower is None:
        return ""
    estimate, lower, upper = align_decimals(estimate, lower, upper)
    if measure_iri == POINTS_BETTER and estimate is not None:
        # "N points better" is how such a difference is published; keep its wording.
        ci = f" (95% CI {lower} to {upper})" if lower is not None and upper is not None else ""
        return f"{estimate} points better{ci}"
    parts = [measure] if measure else []
    if estimate is not None:
        parts.append(estimate)
    if lower is not None and upper is not None:
        parts.append(f"(95% CI {lower} to {upper})")
    return " ".join(parts)


def participants_text(participants: str | None, studies: str | None) -> str:
    text = _number(participants)
    if studies is not None:
        n = _number(studies)
        noun = "study" if studies == "1" else "studies"
        text = f"{text} ({n} {noun})" if text else f"({n} {noun})"
    return text


@dataclass
class Claim:
    iri: str
    label: str
    condition: Term
    modality: Term
    outcome: Term
    comparator: str
    measure: str
    measure_iri: str | None
    estimate: str | None
    ci_lower: str | None
    ci_upper: str | None
    effect: str
    studies: str | None
    participants: str | None
    participants_text: str
    certainty: str
    certainty_rank: int
    source_downgrades: list[str]  # domains the source itself rated down for
    imprecision_concern: bool  # the project's heuristic, shown apart from the source's
    direction: str
    significance: str
    direction_class: str
    derived: bool  # False when the direction came from the fallback, not the build's rules
    source: str | None
    source_label: str
    doi: str | None
    curation_status: str
    curation_key: str  # local name of the status: confirmed, unconfirmed, secondary-source...
    scale: str | None
    timepoint: str | None
    reported_result: str | None
    href: str = ""


def fetch_claims(select: Select, query: str) -> list[Claim]:
    """Claims as page records, with labels and the reasons certainty was rated down."""
    records = _merge_claim_rows(select(query))
    if not records:
        return []
    down_rows = select(
        sparql_prefixes()
        + f"""SELECT ?claim ?domain WHERE {{
  VALUES ?claim {{ {_iri_list(records)} }} ?claim cmp:ratedDownFor ?domain }}"""
    )
    rated_down: dict[str, set[str]] = defaultdict(set)
    for row in down_rows:
        claim, domain = row.get("claim"), row.get("domain")
        if claim and domain:
            rated_down[claim].add(domain)
    iris = {v for r in records.values() for v in r.values() if is_iri(v)}
    iris |= {d for ds in rated_down.values() for d in ds}
    labels = fetch_labels(select, iris)
    measures = {m for r in records.values() if (m := r.get("measure"))}
    abbreviations = fetch_abbreviations(select, measures)

    claims = []
    for iri, r in records.items():
        direction, significance = fallback_direction(r)
        measure = label_of(labels, r.get("measure")) if r.get("measure") else ""
        short = abbreviations.get(r.get("measure") or "", measure)
        rank = r.get("rank")
        claims.append(
            Claim(
                iri=iri,
                label=r.get("label") or local_name(iri),
                **_question_terms(r, labels),
                comparator=label_of(labels, r.get("comparator")),
                measure=measure,
                measure_iri=r.get("measure"),
                estimate=r.get("estimate"),
                ci_lower=r.get("lower"),
                ci_upper=r.get("upper"),
                effect=effect_text(
                    r.get("estimate"), r.get("lower"), r.get("upper"), short, r.get("measure")
                ),
                studies=r.get("studies"),
                participants=r.get("participants"),
                participants_text=participants_text(r.get("participants"), r.get("studies")),
                certainty=label_of(labels, r.get("certainty")) or "not reported",
                certainty_rank=_rank(rank),
                source_downgrades=sorted(label_of(labels, d) for d in rated_down.get(iri, ())),
                imprecision_concern=_is_true(r.get("imprecision")),
                direction=label_of(labels, direction) if direction else "not derived",
                significance=label_of(labels, significance) if significance else "not derived",
                direction_class=claim_class(direction, significance),
                derived=bool(r.get("direction") and r.get("significance")),
                source=r.get("source"),
                source_label=label_of(labels, r.get("source")),
                doi=r.get("doi"),
                curation_status=label_of(labels, r.get("status")),
                curation_key=local_name(r.get("status") or ""),
                scale=r.get("scale"),
                timepoint=r.get("timepoint"),
                reported_result=r.get("reportedResult"),
                href=entity_href(iri),
            )
        )
    claims.sort(key=lambda c: (c.outcome.label, -c.certainty_rank, c.source_label, c.iri))
    return claims


def _rank(value: str | None) -> int:
    """A certainty level's cmp:rank as read from a row; 0 (not rated) when absent."""
    return int(value) if value and value.lstrip("-").isdigit() else 0


def _question_terms(row: Mapping[str, str | None], labels: Mapping[str, str]) -> dict[str, Term]:
    """The condition, modality and outcome of a claim or body row, with their labels."""
    return {
        name: Term.make(row[name] or "", label_of(labels, row.get(name)))
        for name in ("condition", "modality", "outcome")
    }


# --- home -------------------------------------------------------------------------------

COUNTS_QUERY = (
    sparql_prefixes()
    + """SELECT ?conditions ?modalities ?outcomes ?claims ?sources WHERE {
  { SELECT (COUNT(DISTINCT ?c) AS ?conditions) WHERE { ?c a cmp:Condition } }
  { SELECT (COUNT(DISTINCT ?m) AS ?modalities) WHERE { ?m a cmp:ExerciseModality } }
  { SELECT (COUNT(DISTINCT ?o) AS ?outcomes) WHERE { ?o a cmp:Outcome } }
  { SELECT (COUNT(DISTINCT ?e) AS ?claims) WHERE { ?e a cmp:EvidenceClaim } }
  { SELECT (COUNT(DISTINCT ?s) AS ?sources) WHERE {
      ?s a ?type . ?type rdfs:subClassOf* cmp:Source } }
}"""
)


@dataclass
class Home:
    counts: dict[str, int]
    build_id: str | None
    created: str | None
    graphs: dict[str, Any] = field(default_factory=dict)


def home_model(rows: list[Row], manifest: Mapping[str, Any] | None = None) -> Home:
    manifest = manifest or {}
    row = rows[0] if rows else {}
    counts = {
        key: int(row.get(key) or 0)
        for key in ("conditions", "modalities", "outcomes", "claims", "sources")
    }
    graphs = manifest.get("graphs")
    return Home(
        counts=counts,
        build_id=manifest.get("build_id"),
        created=manifest.get("created"),
        graphs=dict(graphs) if isinstance(graphs, Mapping) else {},
    )


def home(select: Select, manifest: Mapping[str, Any] | None = None) -> Home:
    return home_model(select(COUNTS_QUERY), manifest)


# --- bodies of evidence (issue 12) ---------------------------------------------------------
#
# The summary of findings and the evidence map show bodies of evidence as the build's rules
# minted them (cmp:EvidenceBody: conclusion, certainty, directness, curation status, the
# project's rating-downs). They are read, never re-derived here.

BODY_NS = NS + "body/"
CONCLUSION_NS = NS + "conclusion/"
# The contract's closed list of conclusions, in the order a legend reads them, with the words
# a map cell shows ("no evidence" is the absence of a body, not a conclusion).
CONCLUSIONS = ("benefit", "no-important-effect", "inconclusive", "inconsistent", "harm")
NO_EVIDENCE = "no evidence"


@dataclass
class RatingDown:
    """A reason certainty is lower, and whose judgement it is."""

    by: str  # "source" (the review's own GRADE rating) or "project" (our rules) or "heuristic"
    domain: str
    reason: str
    source_label: str = ""
    doi: str | None = None


@dataclass
class Body:
    iri: str
    label: str
    condition: Term
    modality: Term
    outcome: Term
    conclusion: str  # one of CONCLUSIONS (local name of the concl: IRI)
    conclusion_label: str
    certainty: str  # label; "not rated" for a level without a GRADE rank
    certainty_rank: int  # 1..4, 0 when not rated
    directness: str  # "direct", "indirect" or "" when the body does not say
    status: str  # curation status key: confirmed, secondary-source, ...
    status_label: str
    carrying: list[Claim]
    included: list[Claim]  # every eligible claim, carrying or not
    rating_downs: list[RatingDown]
    capped_by: list[str]  # labels of the source findings that capped the rating
    href: str = ""

    @property
    def unconfirmed(self) -> list[Claim]:
        return [c for c in self.included if c.curation_key == "unconfirmed"]

    @property
    def secondary(self) -> bool:
        """Rests on figures nobody checked against the source itself."""
        return self.status != "confirmed"


def bodies_query(
    conditions: Iterable[str] | None = None,
    modalities: Iterable[str] | None = None,
    outcomes: Iterable[str] | None = None,
) -> str:
    filters = []
    for var, iris in (("condition", conditions), ("modality", modalities), ("outcome", outcomes)):
        if iris is not None:
            filters.append(f"VALUES ?{var} {{ {_iri_list(iris)} }}")
    return (
        sparql_prefixes()
        + f"""SELECT ?body ?label ?condition ?modality ?outcome ?conclusion ?certainty ?rank
       ?directness ?status WHERE {{
  {" ".join(filters)}
  ?body a cmp:EvidenceBody ; cmp:condition ?condition ; cmp:modality ?modality ;
        cmp:outcome ?outcome .
  OPTIONAL {{ ?body rdfs:label ?label }}
  OPTIONAL {{ ?body cmp:conclusion ?conclusion }}
  OPTIONAL {{ ?body cmp:certainty ?certainty OPTIONAL {{ ?certainty cmp:rank ?rank }} }}
  OPTIONAL {{ ?body cmp:evidenceDirectness ?directness }}
  OPTIONAL {{ ?body cmp:curationStatus ?status }}
}}"""
    )


def fetch_bodies(select: Select, query: str) -> list[Body]:
    """Bodies with their claims (carrying and included), rating-downs and caps, labelled."""
    records = _merge_claim_rows({**r, "claim": r.get("body")} for r in select(query))
    if not records:
        return []
    values = _iri_list(records)
    links = select(
        sparql_prefixes()
        + f"""SELECT ?body ?claim ?carries WHERE {{
  VALUES ?body {{ {values} }} ?body cmp:includesClaim|cmp:carriedBy ?claim .
  BIND(EXISTS {{ ?body cmp:carriedBy ?claim }} AS ?carries) }}"""
    )
    downs = select(
        sparql_prefixes()
        + f"""SELECT ?body ?r ?domain ?reason ?source ?doi WHERE {{
  VALUES ?body {{ {values} }} ?body cmp:ratingDown ?r .
  OPTIONAL {{ ?r cmp:domain ?domain }} OPTIONAL {{ ?r cmp:reason ?reason }}
  OPTIONAL {{ ?r dcterms:source ?source OPTIONAL {{ ?source cmp:doi ?doi }} }} }}"""
    )
    caps = select(
        sparql_prefixes()
        + f"""SELECT ?body ?finding WHERE {{
  VALUES ?body {{ {values} }} ?body cmp:certaintyCappedBy ?finding }}"""
    )
    claim_iris = {c for r in links if (c := r.get("claim"))}
    claims = {c.iri: c for c in fetch_claims(select, claims_query(claims=claim_iris))}
    iris = {v for r in records.values() for v in r.values() if is_iri(v)}
    iris |= {v for r in [*downs, *caps] for v in r.values() if is_iri(v)}
    labels = fetch_labels(select, iris)

    carrying: dict[str, list[Claim]] = defaultdict(list)
    included: dict[str, list[Claim]] = defaultdict(list)
    for row in links:
        claim = claims.get(row.get("claim") or "")
        if claim is None or claim in included[row["body"]]:  # type: ignore[index]
            continue
        included[row["body"]].append(claim)  # type: ignore[index]
        if _is_true(row.get("carries")):
            carrying[row["body"]].append(claim)  # type: ignore[index]
    project_downs = _project_downs(downs, labels)
    capped: dict[str, list[str]] = defaultdict(list)
    for row in caps:
        capped[row["body"]].append(label_of(labels, row.get("finding")))  # type: ignore[index]

    bodies = []
    for iri, r in records.items():
        rank = _rank(r.get("rank"))
        conclusion = local_name(r.get("conclusion") or "")
        status = local_name(r.get("status") or "")
        carried = sorted(carrying.get(iri, []), key=_claim_order)
        bodies.append(
            Body(
                iri=iri,
                label=r.get("label") or local_name(iri),
                **_question_terms(r, labels),
                conclusion=conclusion,
                conclusion_label=label_of(labels, r.get("conclusion")) or "not concluded",
                certainty=label_of(labels, r.get("certainty")) if rank else "not rated",
                certainty_rank=max(rank, 0),
                directness=r.get("directness") or "",
                status=status,
                status_label=label_of(labels, r.get("status")) or "not recorded",
                carrying=carried,
                included=sorted(included.get(iri, []), key=_claim_order),
                rating_downs=_source_downs(carried) + project_downs.get(iri, []),
                capped_by=sorted(capped.get(iri, [])),
                href=entity_href(iri),
            )
        )
    bodies.sort(key=lambda b: (b.modality.label, b.outcome.label, b.condition.label, b.iri))
    return bodies


def _project_downs(rows: list[Row], labels: Mapping[str, str]) -> dict[str, list[RatingDown]]:
    """One RatingDown per node; a node may give several reasons (one per mismatch), joined
    in sorted order (contract of issue 12, change 7)."""
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        body, node = row.get("body"), row.get("r")
        if not body or not node:
            continue
        record = nodes.setdefault((body, node), {"reasons": set(), **row})
        if row.get("reason"):
            record["reasons"].add(row["reason"])
    out: dict[str, list[RatingDown]] = defaultdict(list)
    for (body, _node), r in sorted(nodes.items()):
        out[body].append(
            RatingDown(
                by="project",
                domain=label_of(labels, r.get("domain")),
                reason="; ".join(sorted(r["reasons"])),
                source_label=label_of(labels, r.get("source")) if r.get("source") else "",
                doi=r.get("doi"),
            )
        )
    return out


def _claim_order(claim: Claim) -> tuple[str, str]:
    return (claim.source_label, claim.iri)


def _source_downs(carrying: list[Claim]) -> list[RatingDown]:
    """What the sources themselves rated down for, and the project's claim-level heuristic,
    kept apart: the heuristic is never shown as a source's judgement."""
    out: list[RatingDown] = []
    for claim in carrying:
        for domain in claim.source_downgrades:
            out.append(RatingDown("source", domain, "", claim.source_label, claim.doi))
        if claim.imprecision_concern:
            out.append(
                RatingDown(
                    "heuristic",
                    "imprecision",
                    f"{claim.source_label}: fewer than 400 participants for a continuous outcome",
                )
            )
    return out


# --- evidence map -----------------------------------------------------------------------


@dataclass
class Cell:
    condition: str
    modality: str
    conclusion: str  # a CONCLUSIONS key or NO_EVIDENCE
    certainty: str
    certainty_rank: int
    directness: str
    secondary: bool  # the body rests on figures not checked against the source
    unconfirmed: int  # unconfirmed claims included in the body and not counted
    body: str | None
    href: str | None

    @property
    def text(self) -> str:
        """The cell in words (what a screen reader and a printout get)."""
        if self.body is None:
            return NO_EVIDENCE
        parts = [self.conclusion.replace("-", " "), self.certainty]
        if self.directness == "indirect":
            parts.append("indirect evidence")
        if self.secondary:
            parts.append("secondary or unconfirmed evidence")
        if self.unconfirmed:
            parts.append(f"{self.unconfirmed} unconfirmed claim(s) not counted")
        return ", ".join(parts)


@dataclass
class MapRow:
    condition: Term
    cells: list[Cell]


@dataclass
class EvidenceMap:
    outcome: Term
    outcomes: list[Term]
    modalities: list[Term]
    rows: list[MapRow]
    total_bodies: int
    legend: list[dict[str, str]] = field(default_factory=list)
    # Modalities without any body for this outcome: gaps too, listed under the table rather
    # than as columns of empty cells that would push the matrix past a screen's width.
    empty_modalities: list[Term] = field(default_factory=list)


def evidence_href(condition: str, modality: str, outcome: str | None = None) -> str:
    params = {"condition": local_name(condition), "modality": local_name(modality)}
    if outcome:
        params["outcome"] = local_name(outcome)
    return "/evidence?" + urlencode(params)


def map_cell(body: Body | None, condition: str, modality: str, outcome: str) -> Cell:
    if body is None:
        return Cell(condition, modality, NO_EVIDENCE, "", 0, "", False, 0, None, None)
    return Cell(
        condition=condition,
        modality=modality,
        conclusion=body.conclusion or "inconclusive",
        certainty=body.certainty,
        certainty_rank=body.certainty_rank,
        directness=body.directness,
        secondary=body.secondary,
        unconfirmed=len(body.unconfirmed),
        body=body.iri,
        href=evidence_href(condition, modality, outcome),
    )


def evidence_map_model(
    outcome: Term,
    outcomes: list[Term],
    conditions: list[Term],
    modalities: list[Term],
    bodies: Iterable[Body],
    legend: list[dict[str, str]] | None = None,
) -> EvidenceMap:
    """Condition x modality for one outcome: one cell per pair, the body's conclusion or a gap.

    Columns are the modalities some row has a body for (the rest would be a column of gaps
    that only widens the table past a screen); rows are every condition, gaps included.
    """
    by_pair = {(b.condition.iri, b.modality.iri): b for b in bodies if b.outcome.iri == outcome.iri}
    used = {m for _, m in by_pair}
    columns = [m for m in modalities if m.iri in used]
    known_m = {t.iri for t in columns}
    columns += [
        b.modality for b in by_pair.values() if b.modality.iri not in known_m
    ]  # modalities missing from the hierarchy still show
    columns = list({t.iri: t for t in columns}.values())
    known_c = {t.iri for t in conditions}
    conditions = conditions + list(
        {
            b.condition.iri: b.condition for b in by_pair.values() if b.condition.iri not in known_c
        }.values()
    )
    rows = [
        MapRow(
            condition=cond,
            cells=[
                map_cell(by_pair.get((cond.iri, mod.iri)), cond.iri, mod.iri, outcome.iri)
                for mod in columns
            ],
        )
        for cond in conditions
    ]
    empty = [m for m in modalities if m.iri not in used]
    return EvidenceMap(outcome, outcomes, columns, rows, len(by_pair), legend or [], empty)


CHRONIC_PAIN = NS + "condition/chronic-pain"


def human_conditions(select: Select) -> list[Term]:
    """The human chronic pain conditions in hierarchy order.

    Research models (an animal model class in the ontology) have no place among the
    populations a guideline panel or a clinician asks about.
    """
    human = {
        row["c"]
        for row in select(
            sparql_prefixes() + f"SELECT ?c WHERE {{ ?c rdfs:subClassOf* <{CHRONIC_PAIN}> }}"
        )
    }
    return [t for t in fetch_hierarchy(select, CONDITION_CLASS) if t.iri in human]


def outcome_terms(select: Select) -> list[Term]:
    return fetch_hierarchy(select, OUTCOME_CLASS, "skos:broader")


def conclusion_legend(select: Select) -> list[dict[str, str]]:
    """Each conclusion with the definition the ontology gives it."""
    iris = [CONCLUSION_NS + c for c in CONCLUSIONS]
    rows = _select_about(select, iris, "?s ?definition", "?s skos:definition ?definition")
    definitions = {s: d for r in rows if (s := r.get("s")) and (d := r.get("definition"))}
    legend = [
        {
            "key": c,
            "text": c.replace("-", " "),
            "definition": definitions.get(CONCLUSION_NS + c, ""),
        }
        for c in CONCLUSIONS
    ]
    legend.append(
        {"key": NO_EVIDENCE, "text": NO_EVIDENCE, "definition": "no body of evidence: a gap"}
    )
    return legend


def evidence_map(select: Select, outcome_iri: str = DEFAULT_OUTCOME) -> EvidenceMap:
    outcomes = outcome_terms(select)
    chosen = next((t for t in outcomes if t.iri == outcome_iri), None)
    chosen = chosen or Term.make(
        outcome_iri, label_of(fetch_labels(select, [outcome_iri]), outcome_iri)
    )
    bodies = fetch_bodies(select, bodies_query(outcomes=[outcome_iri]))
    return evidence_map_model(
        chosen,
        outcomes,
        human_conditions(select),
        fetch_hierarchy(select, MODALITY_CLASS),
        bodies,
        conclusion_legend(select),
    )


# --- claims of one cell, summary of findings ----------------------------------------------


@dataclass
class ClaimList:
    condition: Term
    modality: Term | None
    outcome: Term | None
    claims: list[Claim]


def _term(select: Select, iri: str | None) -> Term | None:
    if not iri:
        return None
    return Term.make(iri, label_of(fetch_labels(select, [iri]), iri))


def evidence_cell(
    select: Select, condition: str, modality: str, outcome: str | None = None
) -> ClaimList:
    """The claims behind one evidence-map cell (the outcome includes its narrower outcomes)."""
    query = claims_query(conditions=[condition], modalities=[modality], outcome_within=outcome)
    return ClaimList(
        condition=_term(select, condition),  # type: ignore[arg-type]
        modality=_term(select, modality),
        outcome=_term(select, outcome),
        claims=fetch_claims(select, query),
    )


# --- question results -------------------------------------------------------------------


@dataclass
class ResultCell:
    value: str | None
    text: str
    href: str | None


@dataclass
class Column:
    """One concept of a result: an IRI column shows the query's own label column beside it."""

    variable: str
    title: str
    label_variable: str | None = None


@dataclass
class ResultTable:
    columns: list[str]
    rows: list[list[ResultCell]]
    titles: list[str] = field(default_factory=list)  # column headings for people


_ACRONYMS = {"ci": "CI", "doi": "DOI", "pmid": "PMID", "iri": "IRI", "smd": "SMD", "md": "MD"}


def column_title(variable: str) -> str:
    """A heading from a variable name: "ciLower" -> "CI lower", "numberOfStudies" ->
    "number of studies", "_condition_iri" (a projected parameter) -> "condition"."""
    name = variable.lstrip("_")
    for suffix in ("_iri", "_integer", "_decimal", "_boolean"):
        name = name.removesuffix(suffix)
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ")).split()
    return " ".join(_ACRONYMS.get(w.lower(), w.lower()) for w in words)


def result_columns(
    variables: Iterable[str], titles: Mapping[str, str] | None = None
) -> list[Column]:
    """The columns people see: one per concept, no internal variables.

    Projected parameters (`$_name`) are the question's own input, not an answer; a `xLabel`
    column is the label of `x` and shows inside it, not as a column of its own.
    """
    names = [v for v in variables if not v.startswith("_")]
    label_of_column = {v[: -len("Label")]: v for v in names if v.endswith("Label")}
    columns = []
    for v in names:
        if v.endswith("Label") and v[: -len("Label")] in names:
            continue
        title = (titles or {}).get(v) or column_title(v)
        columns.append(Column(v, title, label_of_column.get(v)))
    return columns


def result_table(
    rows: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str],
    variables: Iterable[str] | None = None,
    titles: Mapping[str, str] | None = None,
) -> ResultTable:
    """Rows of a named query as a table; IRIs become labelled links to entity pages."""
    if variables is None:
        seen: list[str] = []
        for row in rows:
            seen += [k for k in row if k not in seen]
        variables = seen
    columns = result_columns(variables, titles)
    table = []
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col.variable)
            value = value if value is None or isinstance(value, Numeral) else str(value)
            if is_iri(value):
                own = row.get(col.label_variable) if col.label_variable else None
                text = str(own) if own else labels.get(value) or curie(value)
                cells.append(ResultCell(value, text, entity_href(value)))
            else:
                cells.append(ResultCell(value, str(value or ""), None))  # text: as published
        table.append(cells)
    return ResultTable([c.variable for c in columns], table, [c.title for c in columns])


def result_csv(table: ResultTable) -> str:
    """A result table as CSV: each IRI column as two named columns, its label and its IRI."""
    iri_columns = {
        i for i in range(len(table.columns)) if any(r[i].href is not None for r in table.rows)
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header: list[str] = []
    for i, title in enumerate(table.titles):
        header += [title, f"{title} IRI"] if i in iri_columns else [title]
    writer.writerow(header)
    for row in table.rows:
        line: list[str] = []
        for i, cell in enumerate(row):
            if i in iri_columns:
                line += [cell.text, (cell.value or "") if cell.href is not None else ""]
            else:
                line.append(cell.text)
        writer.writerow(line)
    return out.getvalue()


def rows_from_sparql_json(results: Mapping[str, Any]) -> list[Row]:
    """SPARQL 1.1 JSON results (already decoded) as `select` rows; numeric literals as
    `Numeral`s."""
    names = list(results.get("head", {}).get("vars", []))
    rows: list[Row] = []
    for binding in results.get("results", {}).get("bindings", []):
        rows.append({n: _cell(binding.get(n)) for n in names})
    return rows


def _cell(term: Mapping[str, Any] | None) -> str | None:
    if term is None:
        return None
    if term.get("datatype") in NUMERIC_DATATYPES:
        return Numeral(term["value"])
    return str(term["value"])


def to_json(model: Any) -> Any:
    """A page model (or a dict of them) as JSON-ready data, for the pages' JSON twins:
    figures (`Numeral`, Decimal) as JSON numbers, everything else as it is (one walk, no
    asdict deep copy; the common leaves are tested first, a twin has thousands)."""
    if isinstance(model, Numeral | Decimal):
        number = json_number(model)
        return str(model) if number is None else number
    if model is None or isinstance(model, str | int | float):
        return model
    if isinstance(model, dict):
        return {key: to_json(value) for key, value in model.items()}
    if isinstance(model, list | tuple):
        return [to_json(value) for value in model]
    if is_dataclass(model) and not isinstance(model, type):
        return {f.name: to_json(getattr(model, f.name)) for f in fields(model)}
    return model
