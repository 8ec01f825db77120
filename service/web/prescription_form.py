"""The prescription page: an HTML form in, a presentation for `service.prescribe` out.

The page builds the same JSON body `POST /api/prescribe` takes and hands it to the same engine
(`service.prescribe.prescribe`); it ranks nothing itself. Form fields: `conditions` and `goals`
(repeatable), per secondary pathology `p.<key>` (`elevated` | `not-elevated` | empty) with
optional `p.<key>.instrument`, `.score`, `.min`, `.max`, and `setting`, `modality`, `format`,
`supervision` for the preferences.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.datastructures import MultiDict

from service.kb.sources import PREFIXES
from service.query.terms import TermResolver

CMP = PREFIXES["cmp"]
KINDS = {
    "conditions": CMP + "Condition",
    "goals": CMP + "Outcome",
    "pathologies": CMP + "SecondaryPathology",
    "modalities": CMP + "ExerciseModality",
}
# By the full IRI the prescription answer gives as the certainty's @id.
CERTAINTY_RANKS = {
    PREFIXES["cert"] + level: rank
    for level, rank in (("high", 4), ("moderate", 3), ("low", 2), ("very-low", 1))
}


@dataclass
class Choice:
    iri: str
    key: str
    label: str


def choices(resolver: TermResolver) -> dict[str, list[Choice]]:
    """What the form offers, by label: every term of each kind the engine accepts."""
    out: dict[str, list[Choice]] = {}
    for name, kind in KINDS.items():
        items = [
            Choice(iri, iri.rsplit("/", 1)[-1], resolver.label(iri) or iri.rsplit("/", 1)[-1])
            for iri in resolver.choices(kind)
        ]
        out[name] = sorted(items, key=lambda c: c.label.casefold())
    return out


def _number(text: str) -> float | int | str:
    """A form number as JSON: int or float when it parses, else the text (the engine says why)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    return int(value) if value == value.to_integral_value() else float(value)


def _one(form: MultiDict[str, str], name: str) -> str:
    return str(form.get(name, "")).strip()


def _many(form: MultiDict[str, str], name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if v.strip()]


def _pathology(form: MultiDict[str, str], key: str) -> dict[str, Any] | None:
    """One pathology row of the form, or None when it was left "not assessed" and blank."""
    state = _one(form, f"p.{key}")
    if not state and not _one(form, f"p.{key}.score"):
        return None
    item: dict[str, Any] = {"pathology": key}
    if state:
        item["elevated"] = state == "elevated"
    if _one(form, f"p.{key}.instrument"):
        item["instrument"] = _one(form, f"p.{key}.instrument")
    for field, name in (("score", "score"), ("scoreMin", "min"), ("scoreMax", "max")):
        if _one(form, f"p.{key}.{name}"):
            item[field] = _number(_one(form, f"p.{key}.{name}"))
    return item


def presentation(form: MultiDict[str, str], pathology_keys: list[str]) -> dict[str, Any]:
    """The JSON body of the API from the submitted form."""
    body: dict[str, Any] = {"conditions": _many(form, "conditions"), "goals": _many(form, "goals")}
    pathologies = [p for key in pathology_keys if (p := _pathology(form, key)) is not None]
    if pathologies:
        body["pathologies"] = pathologies
    preferences: dict[str, Any] = {}
    if _many(form, "modality"):
        preferences["modality"] = _many(form, "modality")
    for name in ("setting", "format", "supervision"):
        if _one(form, name):
            preferences[name] = _one(form, name)
    if preferences:
        body["preferences"] = preferences
    return body


def circles(certainty_id: str) -> str:
    rank = CERTAINTY_RANKS.get(certainty_id, 0)
    return "⊕" * rank + "◯" * (4 - rank) if rank else ""
