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

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from service.kb import sources
from service.kb.sources import NS, PREFIXES, sparql_prefixes

Row = dict[str, str | None]
Select = Callable[[str], list[Row]]

CMP = PREFIXES["cmp"]
CONDITION_CLASS = CMP + "Condition"
MODALITY_CLASS = CMP + "ExerciseModality"
OUTCOME_CLASS = CMP + "Outcome"
BENEFIT = PREFIXES["dir"] + "benefit"
HARM = PREFIXES["dir"] + "harm"
NO_CLEAR_DIFFERENCE = PREFIXES["dir"] + "no-clear-difference"
SIGNIFICANT = PREFIXES["sig"] + "significant"
INCONCLUSIVE = PREFIXES["sig"] + "inconclusive"
DEFAULT_OUTCOME = PREFIXES["out"] + "physical-function"
IMPRECISION_REASON = "imprecision (fewer than 400 participants)"

# Cell classes of the evidence map, from most to least informative.
CELL_CLASSES = ("benefit", "harm", "mixed", "inconclusive", "no evidence")


# --- IRIs -------------------------------------------------------------------------------


# Characters that cannot occur in an IRI reference; rejecting them keeps user input from
# closing the <...> it is written into.
_IRI_SAFE = re.compile(r'^[^\s<>"{}|^`\\]+$')


def resolve_term(value: str, namespace: str) -> str:
    """A full IRI from a local name ("fibromyalgia"), a CURIE ("cond:fibromyalgia") or an IRI.

    ValueError for text that cannot be part of an IRI.
    """
    value = value.strip()
    if not _IRI_SAFE.match(value):
        raise ValueError(f"not a term name or IRI: {value!r}")
    if value.startswith(("http://", "https://")):
        return value
    prefix, sep, local = value.partition(":")
    if sep and prefix in PREFIXES:
        return PREFIXES[prefix] + local
    return PREFIXES[namespace] + value


def local_name(iri: str) -> str:
    """The last path segment: what the pages put in their own query strings."""
    return iri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def curie(iri: str) -> str:
    """The prefixed form of an IRI, or the IRI itself."""
    return sources.curie(iri) or iri


def entity_href(iri: str) -> str:
    """Our IRIs dereference on this server at their own path (https://w3id.org/cmpkg/x ->
    /cmpkg/x), so the same link works behind a w3id redirect; others link out."""
    if iri.startswith(NS):
        return "/cmpkg/" + iri[len(NS) :]
    return iri


def is_iri(value: str | None) -> bool:
    return bool(value) and value.startswith(("http://", "https://", "urn:"))  # type: ignore[union-attr]


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
    estimate: str | None
    ci_lower: str | None
    ci_upper: str | None
    effect: str
    studies: str | None
    participants: str | None
    participants_text: str
    certainty: str
    certainty_rank: int
    reasons: list[str]
    direction: str
    significance: str
    direction_class: str
    derived: bool  # False when the direction came from the fallback, not the build's rules
    source: str | None
    source_label: str
    doi: str | None
    curation_status: str
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
        if row.get("claim") and row.get("domain"):
            rated_down[row["claim"]].add(row["domain"])  # type: ignore[index]
    iris = {v for r in records.values() for v in r.values() if is_iri(v)}
    iris |= {d for ds in rated_down.values() for d in ds}
    labels = fetch_labels(select, iris)
    abbreviations = fetch_abbreviations(
        select, {r["measure"] for r in records.values() if r.get("measure")}
    )  # type: ignore[misc]

    claims = []
    for iri, r in records.items():
        direction, significance = fallback_direction(r)
        reasons = sorted(label_of(labels, d) for d in rated_down.get(iri, ()))
        if _is_true(r.get("imprecision")):
            reasons.append(IMPRECISION_REASON)
        measure = label_of(labels, r.get("measure")) if r.get("measure") else ""
        short = abbreviations.get(r.get("measure") or "", measure)
        rank = r.get("rank")
        claims.append(
            Claim(
                iri=iri,
                label=r.get("label") or local_name(iri),
                condition=Term.make(r["condition"] or "", label_of(labels, r.get("condition"))),
                modality=Term.make(r["modality"] or "", label_of(labels, r.get("modality"))),
                outcome=Term.make(r["outcome"] or "", label_of(labels, r.get("outcome"))),
                comparator=label_of(labels, r.get("comparator")),
                measure=measure,
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
                certainty_rank=int(rank) if rank and rank.lstrip("-").isdigit() else 0,
                reasons=reasons,
                direction=label_of(labels, direction) if direction else "not derived",
                significance=label_of(labels, significance) if significance else "not derived",
                direction_class=claim_class(direction, significance),
                derived=bool(r.get("direction") and r.get("significance")),
                source=r.get("source"),
                source_label=label_of(labels, r.get("source")),
                doi=r.get("doi"),
                curation_status=label_of(labels, r.get("status")),
                scale=r.get("scale"),
                timepoint=r.get("timepoint"),
                reported_result=r.get("reportedResult"),
                href=entity_href(iri),
            )
        )
    claims.sort(key=lambda c: (c.outcome.label, -c.certainty_rank, c.source_label, c.iri))
    return claims


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


# --- evidence map -----------------------------------------------------------------------


@dataclass
class Cell:
    condition: str
    modality: str
    count: int
    best_certainty: str
    best_rank: int
    direction_class: str
    href: str | None
    claims: list[str]


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
    total_claims: int
    legend: tuple[str, ...] = CELL_CLASSES


def evidence_href(condition: str, modality: str, outcome: str | None = None) -> str:
    params = {"condition": local_name(condition), "modality": local_name(modality)}
    if outcome:
        params["outcome"] = local_name(outcome)
    return "/evidence?" + urlencode(params)


def evidence_map_model(
    outcome: Term,
    outcomes: list[Term],
    conditions: list[Term],
    modalities: list[Term],
    claims: Iterable[Claim],
) -> EvidenceMap:
    """Condition x modality matrix for one outcome; every pair gets a cell, gaps included."""
    by_pair: dict[tuple[str, str], list[Claim]] = defaultdict(list)
    for claim in claims:
        by_pair[(claim.condition.iri, claim.modality.iri)].append(claim)
    # Claims on terms missing from the hierarchy (e.g. an extra term not typed yet) still show.
    known_c = {t.iri for t in conditions}
    known_m = {t.iri for t in modalities}
    conditions = conditions + [
        Term.make(c.condition.iri, c.condition.label)
        for c in _unique(by_pair.values(), "condition")
        if c.condition.iri not in known_c
    ]
    modalities = modalities + [
        Term.make(c.modality.iri, c.modality.label)
        for c in _unique(by_pair.values(), "modality")
        if c.modality.iri not in known_m
    ]
    rows = []
    for cond in conditions:
        cells = []
        for mod in modalities:
            found = by_pair.get((cond.iri, mod.iri), [])
            direction = cell_class(c.direction_class for c in found)
            # The certainty shown is that of the claims carrying the direction shown: a
            # moderate-certainty null result must not lend its grade to a low-certainty benefit.
            carrying = [c for c in found if c.direction_class == direction] or found
            best = max(carrying, key=lambda c: c.certainty_rank, default=None)
            cells.append(
                Cell(
                    condition=cond.iri,
                    modality=mod.iri,
                    count=len(found),
                    best_certainty=best.certainty if best else "",
                    best_rank=best.certainty_rank if best else 0,
                    direction_class=direction,
                    href=evidence_href(cond.iri, mod.iri, outcome.iri) if found else None,
                    claims=sorted(c.iri for c in found),
                )
            )
        rows.append(MapRow(condition=cond, cells=cells))
    total = sum(len(v) for v in by_pair.values())
    return EvidenceMap(outcome, outcomes, modalities, rows, total)


def _unique(groups: Iterable[list[Claim]], attr: str) -> list[Claim]:
    seen: dict[str, Claim] = {}
    for group in groups:
        for claim in group:
            seen.setdefault(getattr(claim, attr).iri, claim)
    return [seen[k] for k in sorted(seen)]


CHRONIC_PAIN = NS + "condition/chronic-pain"


def outcome_terms(select: Select) -> list[Term]:
    return fetch_hierarchy(select, OUTCOME_CLASS, "skos:broader")


def evidence_map(select: Select, outcome_iri: str = DEFAULT_OUTCOME) -> EvidenceMap:
    outcomes = outcome_terms(select)
    chosen = next((t for t in outcomes if t.iri == outcome_iri), None)
    chosen = chosen or Term.make(
        outcome_iri, label_of(fetch_labels(select, [outcome_iri]), outcome_iri)
    )
    claims = fetch_claims(select, claims_query(outcome_within=outcome_iri))
    # Rows are the human chronic pain conditions; research models (an animal model class in
    # the ontology) have no place among the populations a guideline panel asks about.
    human = {
        row["c"]
        for row in select(
            sparql_prefixes() + f"SELECT ?c WHERE {{ ?c rdfs:subClassOf* <{CHRONIC_PAIN}> }}"
        )
    }
    return evidence_map_model(
        chosen,
        outcomes,
        [t for t in fetch_hierarchy(select, CONDITION_CLASS) if t.iri in human],
        fetch_hierarchy(select, MODALITY_CLASS),
        claims,
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


@dataclass
class SofRow:
    """One GRADE summary-of-findings row."""

    outcome: str
    detail: str  # comparator, scale and timepoint: what the reader needs to read the effect
    effect: str
    participants: str
    certainty: str
    certainty_rank: int
    reasons: list[str]
    source_label: str
    doi: str | None
    claim: str
    href: str
    direction_class: str


@dataclass
class SofGroup:
    modality: Term
    rows: list[SofRow]


@dataclass
class SummaryOfFindings:
    condition: Term
    modality: Term | None
    groups: list[SofGroup]


def sof_row(claim: Claim) -> SofRow:
    detail = [f"vs {claim.comparator}" if claim.comparator else ""]
    detail += [claim.scale or "", claim.timepoint or ""]
    effect = claim.effect or claim.reported_result or "not reported as a figure"
    return SofRow(
        outcome=claim.outcome.label,
        detail="; ".join(d for d in detail if d),
        effect=effect,
        participants=claim.participants_text,
        certainty=claim.certainty,
        certainty_rank=claim.certainty_rank,
        reasons=claim.reasons,
        source_label=claim.source_label,
        doi=claim.doi,
        claim=claim.iri,
        href=claim.href,
        direction_class=claim.direction_class,
    )


def sof_model(condition: Term, modality: Term | None, claims: Iterable[Claim]) -> SummaryOfFindings:
    """Rows grouped by modality (one table each), outcomes in label order."""
    groups: dict[str, SofGroup] = {}
    for claim in sorted(claims, key=lambda c: (c.modality.label, c.outcome.label, c.iri)):
        group = groups.setdefault(claim.modality.iri, SofGroup(claim.modality, []))
        group.rows.append(sof_row(claim))
    return SummaryOfFindings(condition, modality, list(groups.values()))


def summary_of_findings(
    select: Select, condition: str, modality: str | None = None
) -> SummaryOfFindings:
    query = claims_query(conditions=[condition], modalities=[modality] if modality else None)
    return sof_model(
        _term(select, condition),  # type: ignore[arg-type]
        _term(select, modality),
        fetch_claims(select, query),
    )


# --- question results -------------------------------------------------------------------


@dataclass
class ResultCell:
    value: str | None
    text: str
    href: str | None


@dataclass
class ResultTable:
    columns: list[str]
    rows: list[list[ResultCell]]
    titles: list[str] = field(default_factory=list)  # column headings for people


def column_title(variable: str) -> str:
    """ "_condition_iri" (a projected parameter) reads as "condition"."""
    name = variable.lstrip("_")
    for suffix in ("_iri", "_integer", "_decimal", "_boolean"):
        name = name.removesuffix(suffix)
    return name.replace("_", " ")


def result_table(rows: list[Mapping[str, Any]], labels: Mapping[str, str]) -> ResultTable:
    """Rows of a named query as a table; IRIs become labelled links to entity pages."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = []
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            value = None if value is None else str(value)
            if is_iri(value):
                text = labels.get(value) or curie(value)  # type: ignore[arg-type]
                cells.append(ResultCell(value, text, entity_href(value)))  # type: ignore[arg-type]
            else:
                cells.append(ResultCell(value, value or "", None))
        table.append(cells)
    return ResultTable(columns, table, [column_title(c) for c in columns])


def rows_from_sparql_json(results: Mapping[str, Any]) -> list[Row]:
    """SPARQL 1.1 JSON results (already decoded) as `select` rows, for a remote store."""
    names = list(results.get("head", {}).get("vars", []))
    rows: list[Row] = []
    for binding in results.get("results", {}).get("bindings", []):
        rows.append({n: (binding[n]["value"] if n in binding else None) for n in names})
    return rows


def to_json(model: Any) -> Any:
    """A page model as JSON-ready data (the pages' JSON twins)."""
    return asdict(model)
