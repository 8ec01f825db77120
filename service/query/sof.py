"""The GRADE summary of findings, read from the build's bodies of evidence.

One row per outcome per body of evidence (Cochrane / GRADEpro layout): the comparison, the
relative effect with its 95% CI, the absolute effect where the source gives one, participants
(studies), the certainty with GRADE's circles and numbered footnotes, a plain-language
statement, the curation status in words and the source with its DOI.

Conclusion, certainty and directness are the body's (service.query.evidence.fetch_bodies);
this module only words them. The plain-language statements follow the usual GRADE / Cochrane
phrasing for each certainty level (high: "improves", moderate: "probably improves", low: "may
improve", very low: "we are uncertain whether ... improves"); the reference notes give no
paper for that convention, so none is cited.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from service.kb.sources import PREFIXES
from service.query.evidence import (
    Body,
    Claim,
    RatingDown,
    Select,
    Term,
    bodies_query,
    fetch_bodies,
    fetch_labels,
    label_of,
)

CIRCLES = {4: "⊕⊕⊕⊕", 3: "⊕⊕⊕◯", 2: "⊕⊕◯◯", 1: "⊕◯◯◯"}
LEVEL_WORDS = {4: "high", 3: "moderate", 2: "low", 1: "very low"}

_EFFECT_VERBS = {  # conclusion -> (verb for "better" outcomes, verb for symptoms)
    "benefit": ("improves", "reduces"),
    "harm": ("worsens", "increases"),
    "no-important-effect": ("makes little or no difference to",) * 2,
}
# Outcomes where less is better read "reduces pain", not "improves pain".
_SYMPTOM_WORDS = ("pain", "stiffness", "disability", "fatigue", "tender", "depress", "anxiety")
_STATUS_WORDS = {
    "confirmed": "confirmed: checked against the source's own text",
    "secondary-source": "secondary: figures from a digest quoting the source, not checked "
    "against the source itself",
    "curator-interpretation": "curator interpretation: our reading of the source's words",
    "unconfirmed": "unconfirmed: not checked against any source; not counted",
}


def circles(rank: int) -> str:
    return CIRCLES.get(rank, "")


def _bare(verb: str) -> str:
    """The verb after "may"/"probably"/"whether": improves -> improve, makes -> make."""
    head, _, rest = verb.partition(" ")
    return f"{head.removesuffix('s')} {rest}".strip()


def plain_language(body: Body) -> str:
    """GRADE's standard wording for the body's certainty and conclusion."""
    intervention, outcome = body.modality.label, body.outcome.label
    symptom = any(w in outcome.casefold() for w in _SYMPTOM_WORDS)
    rank = body.certainty_rank
    if body.conclusion == "inconclusive":
        return (
            f"The evidence is uncertain about the effect of {intervention} on {outcome}: "
            "the results do not show whether it helps, harms or makes no difference."
        )
    if body.conclusion == "inconsistent":
        return (
            f"The evidence on {intervention} for {outcome} is inconsistent: the results point "
            "in different directions."
        )
    verbs = _EFFECT_VERBS.get(body.conclusion)
    if verbs is None:
        return f"No conclusion is recorded for {intervention} and {outcome}."
    verb = verbs[1] if symptom else verbs[0]
    if rank == 4:
        return f"{intervention.capitalize()} {verb} {outcome}."
    if rank == 3:
        return f"{intervention.capitalize()} probably {verb} {outcome}."
    if rank == 2:
        return f"{intervention.capitalize()} may {_bare(verb)} {outcome}."
    if rank == 1:
        return f"We are uncertain whether {intervention} {verb} {outcome}."
    # Not rated: say what the figures show without lending them a GRADE level.
    return (
        f"{intervention.capitalize()} was reported to {_bare(verb)} {outcome}; the source gives "
        "no GRADE certainty, so how sure one can be is not rated."
    )


def favours(body: Body, comparator: str) -> str:
    """Which arm the body's conclusion favours, in the words of a forest plot's axis."""
    if body.conclusion == "benefit":
        return "favours exercise"
    if body.conclusion == "harm":
        return f"favours {comparator or 'the comparator'}"
    if body.conclusion == "no-important-effect":
        return "no important difference"
    if body.conclusion == "inconsistent":
        return "inconsistent results"
    return "no clear difference"


@dataclass
class Footnote:
    number: int
    by: str  # "source", "project" or "heuristic" / "status" / "cap" / "directness"
    text: str


@dataclass
class Effect:
    claim: str
    href: str
    text: str
    source_label: str
    doi: str | None


@dataclass
class SofRow:
    body: str
    body_href: str
    key: str  # the body's local name, for anchors and downloads
    outcome: Term
    comparison: str
    effects: list[Effect]  # relative (standardised or ratio) effects, or the source's words
    absolute_effects: list[Effect]  # differences on the outcome's scale (MD, points)
    absolute: str  # absolute effects the source words in figures
    participants: str
    studies: int | None
    participants_total: int | None
    certainty: str
    certainty_rank: int
    circles: str
    footnotes: list[int]
    favours: str
    conclusion: str
    directness: str
    statement: str
    status: str
    status_words: str
    sources: list[dict[str, str | None]]
    not_counted: list[str] = field(default_factory=list)


@dataclass
class SofGroup:
    modality: Term
    comparison: str
    rows: list[SofRow]
    footnotes: list[Footnote]


@dataclass
class SummaryOfFindings:
    condition: Term
    modality: Term | None
    groups: list[SofGroup]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _comparators(claims: Iterable[Claim]) -> str:
    return " / ".join(sorted({c.comparator for c in claims if c.comparator})) or "comparator"


def _rating_down_note(down: RatingDown) -> tuple[str, str]:
    if down.by == "source":
        return ("source", f"{down.source_label} rated the evidence down for {down.domain}.")
    if down.by == "project":
        method = ", ".join(
            x for x in (down.source_label, f"doi:{down.doi}" if down.doi else "") if x
        )
        cite = f" (method: {method})" if method else ""
        return ("project", f"Rated down by this project for {down.domain}: {down.reason}{cite}.")
    return ("heuristic", f"Project heuristic, not a GRADE rating by the source: {down.reason}.")


def _indirectness_note(body: Body) -> tuple[str, str]:
    """Said once per population or outcome (identical notes share a number in the table)."""
    populations = sorted(
        {c.condition.label for c in body.carrying if c.condition.iri != body.condition.iri}
    )
    outcomes = sorted({c.outcome.label for c in body.carrying if c.outcome.iri != body.outcome.iri})
    parts = []
    if populations:
        parts.append(f"from {', '.join(populations)} rather than {body.condition.label}")
    if outcomes:
        parts.append(f"measured as {', '.join(outcomes)} rather than {body.outcome.label}")
    return ("directness", "Indirect evidence: " + ("; ".join(parts) or "another population") + ".")


def _notes_for(body: Body) -> list[tuple[str, str]]:
    """(who, text) for each reason the row's certainty reads as it does."""
    notes = [_rating_down_note(down) for down in body.rating_downs]
    notes += [
        ("cap", f"Capped at the source's own rating of this question: {finding}.")
        for finding in body.capped_by
    ]
    rated_indirect = any(
        d.by == "project" and d.domain == "indirectness" for d in body.rating_downs
    )
    if body.directness == "indirect" and not rated_indirect:
        notes.append(_indirectness_note(body))
    if not body.certainty_rank:
        notes.append(("source", "The source gives no GRADE certainty for this result."))
    if body.status != "confirmed":
        notes.append(("status", "Curation status: " + _status_words(body.status) + "."))
    notes += [
        ("status", f"{claim.label}: unconfirmed, included in the body but not counted.")
        for claim in body.unconfirmed
    ]
    return notes


def _status_words(status: str) -> str:
    return _STATUS_WORDS.get(status, status.replace("-", " ") or "not recorded")


# Differences on the outcome's own scale are absolute effects (GRADE's "anticipated absolute
# effect" for continuous outcomes); standardised and ratio measures are relative.
ABSOLUTE_MEASURES = {PREFIXES["measure"] + m for m in ("md", "points-improvement", "nntb")}


def _effect(c: Claim) -> Effect:
    text = c.effect or c.reported_result or "not reported as a figure"
    if c.effect and c.timepoint:
        text += f", {c.timepoint}"
    return Effect(c.iri, c.href, text, c.source_label, c.doi)


def _row(body: Body, footnote_numbers: list[int]) -> SofRow:
    shown = body.carrying or [c for c in body.included if c.curation_key != "unconfirmed"]
    relative = [_effect(c) for c in shown if c.measure_iri not in ABSOLUTE_MEASURES or not c.effect]
    absolute = [_effect(c) for c in shown if c.measure_iri in ABSOLUTE_MEASURES and c.effect]
    # A result the source words in figures ("about 12 points less pain on 0-100") is an
    # absolute effect too; a qualitative one ("a small improvement") is not.
    worded = [
        c.reported_result
        for c in shown
        if c.effect and c.reported_result and any(ch.isdigit() for ch in c.reported_result)
    ]
    effects = relative
    participants = "; ".join(c.participants_text for c in shown if c.participants_text)
    studies = [_int(c.studies) for c in shown]
    people = [_int(c.participants) for c in shown]
    sources: dict[str, dict[str, str | None]] = {}
    for c in shown:
        sources.setdefault(c.source or c.iri, {"label": c.source_label, "doi": c.doi})
    comparator = _comparators(shown)
    return SofRow(
        body=body.iri,
        body_href=body.href,
        key=body.iri.rstrip("/").rsplit("/", 1)[-1],
        outcome=body.outcome,
        comparison=f"{body.modality.label} vs {comparator}",
        effects=effects,
        absolute_effects=absolute,
        absolute="; ".join(dict.fromkeys(worded)),
        participants=participants or "not reported",
        studies=studies[0] if len(studies) == 1 else None,
        participants_total=people[0] if len(people) == 1 else None,
        certainty=body.certainty,
        certainty_rank=body.certainty_rank,
        circles=circles(body.certainty_rank),
        footnotes=footnote_numbers,
        favours=favours(body, comparator),
        conclusion=body.conclusion,
        directness=body.directness,
        statement=plain_language(body),
        status=body.status,
        status_words=_status_words(body.status),
        sources=list(sources.values()),
        not_counted=[c.label for c in body.unconfirmed],
    )


def sof_model(condition: Term, modality: Term | None, bodies: Iterable[Body]) -> SummaryOfFindings:
    """One table per modality; footnotes numbered within each table, shared when identical."""
    by_modality: dict[str, list[Body]] = {}
    for body in sorted(bodies, key=lambda b: (b.modality.label, b.outcome.label, b.iri)):
        by_modality.setdefault(body.modality.iri, []).append(body)
    groups = []
    for group_bodies in by_modality.values():
        notes: dict[tuple[str, str], int] = {}
        rows = []
        for body in group_bodies:
            numbers = []
            for note in _notes_for(body):
                numbers.append(notes.setdefault(note, len(notes) + 1))
            rows.append(_row(body, sorted(set(numbers))))
        footnotes = [Footnote(n, by, text) for (by, text), n in notes.items()]
        shown = group_bodies[0].modality
        comparison = f"{shown.label} vs " + _comparators(
            c for b in group_bodies for c in b.carrying
        )
        groups.append(SofGroup(shown, comparison, rows, footnotes))
    return SummaryOfFindings(condition, modality, groups)


def summary_of_findings(
    select: Select, condition: str, modality: str | None = None
) -> SummaryOfFindings:
    bodies = fetch_bodies(
        select, bodies_query(conditions=[condition], modalities=[modality] if modality else None)
    )
    labels = fetch_labels(select, [i for i in (condition, modality) if i])
    return sof_model(
        Term.make(condition, label_of(labels, condition)),
        Term.make(modality, label_of(labels, modality)) if modality else None,
        bodies,
    )


CSV_COLUMNS = [
    "condition",
    "condition_iri",
    "modality",
    "modality_iri",
    "outcome",
    "outcome_iri",
    "comparison",
    "relative_effect",
    "absolute_effect",
    "favours",
    "participants_studies",
    "certainty",
    "certainty_reasons",
    "plain_language_statement",
    "curation_status",
    "sources",
    "dois",
    "body_iri",
]


def csv_text(sof: SummaryOfFindings) -> str:
    """The table as CSV: labels and IRIs in separate, named columns; footnotes spelt out."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for group in sof.groups:
        notes = {f.number: f.text for f in group.footnotes}
        for row in group.rows:
            writer.writerow(
                [
                    sof.condition.label,
                    sof.condition.iri,
                    group.modality.label,
                    group.modality.iri,
                    row.outcome.label,
                    row.outcome.iri,
                    row.comparison,
                    "; ".join(e.text for e in row.effects),
                    "; ".join(
                        [*(e.text for e in row.absolute_effects), *filter(None, [row.absolute])]
                    ),
                    row.favours,
                    row.participants,
                    row.certainty,
                    " ".join(notes[n] for n in row.footnotes),
                    row.statement,
                    row.status_words,
                    "; ".join(str(s["label"]) for s in row.sources),
                    "; ".join(str(s["doi"]) for s in row.sources if s["doi"]),
                    row.body,
                ]
            )
    return out.getvalue()
