"""A presentation as JSON (or JSON-LD with our context) -> the small RDF graph the rules read.

Terms are resolved with `service.query.terms` (labels, synonyms, codes, CURIEs, IRIs). Structural
problems that cannot become RDF (a list where a string is needed, an unknown field, a term we do
not hold) are reported here; every value constraint (ranges, datatypes, closed value lists,
cardinalities) is left to the SHACL shapes of `shapes/presentation.ttl`, so the rules live in
one place and the report names the shape that was broken.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from service.kb.sources import PREFIXES, project_root
from service.query.terms import TermResolver, UnknownTerm

CMP = PREFIXES["cmp"]
MOD = PREFIXES["mod"]
XSD = PREFIXES["xsd"]
RDF_TYPE = ox.NamedNode(PREFIXES["rdf"] + "type")
PRESENTATION_NS = "https://w3id.org/cmpkg/presentation/"
CONTEXT_FILE = "presentation-context.jsonld"

# Shorthands a clinician types for the setting preference; anything else must name a modality.
SETTINGS = {"water": MOD + "water-based-exercise", "land": MOD + "land-based-exercise"}

TOP_FIELDS = ("conditions", "pathologies", "goals", "preferences")
PATHOLOGY_FIELDS = ("pathology", "instrument", "score", "scoreMin", "scoreMax", "elevated")
PREFERENCE_FIELDS = ("modality", "setting", "format", "supervision")
JSONLD_KEYWORDS = ("@context", "@type", "@id")

# JSON field -> property, so SHACL results can be reported with the field a client sent.
FIELD_OF_PROPERTY: dict[str, str] = {
    CMP + "presentsCondition": "conditions",
    CMP + "pathologyStatus": "pathologies",
    CMP + "goal": "goals",
    CMP + "prefersModality": "preferences.modality",
    CMP + "prefersSetting": "preferences.setting",
    CMP + "prefersFormat": "preferences.format",
    CMP + "prefersSupervision": "preferences.supervision",
    CMP + "statedPathology": "pathology",
    CMP + "instrument": "instrument",
    CMP + "score": "score",
    CMP + "scoreMin": "scoreMin",
    CMP + "scoreMax": "scoreMax",
    CMP + "elevated": "elevated",
}


@dataclass
class Problem:
    """One thing wrong with the input, named by the field a client sent and the rule it broke."""

    field: str
    rule: str
    message: str
    suggestions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "rule": self.rule, "message": self.message}
        if self.suggestions:
            out["suggestions"] = self.suggestions
        return out


class InvalidPresentation(Exception):
    """The input is not a presentation we can reason over; `status` is the HTTP status."""

    def __init__(self, status: int, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "status": self.status,
            "violations": [p.to_dict() for p in self.problems],
        }


@dataclass
class PathologyInput:
    iri: str
    node: str  # IRI of the pathology status node
    instrument: str | None = None
    score: Any = None
    score_min: Any = None
    score_max: Any = None
    elevated: Any = None


@dataclass
class Presentation:
    """The resolved presentation: IRIs in the order the client gave them, plus its triples."""

    iri: str
    conditions: list[str]
    goals: list[str]
    pathologies: list[PathologyInput]
    prefers_modality: list[str]
    prefers_setting: list[str]
    prefers_format: Any
    prefers_supervision: Any
    triples: list[ox.Triple]

    def node_fields(self) -> dict[str, str]:
        """Node IRI -> JSON field prefix, for naming fields in validation reports."""
        out = {self.iri: ""}
        for i, p in enumerate(self.pathologies):
            out[p.node] = f"pathologies[{i}]"
        return out


def context_path(root: Path | None = None) -> Path:
    return (root or project_root()) / "ontology" / CONTEXT_FILE


def load_context(root: Path | None = None) -> dict[str, Any]:
    """The presentation @context object (a JSON file, not RDF, so no RDF parser is involved)."""
    return json.loads(context_path(root).read_text(encoding="utf-8"))["@context"]


def parse_body(raw: bytes) -> Any:
    """JSON text -> value; 400 for an empty body or malformed JSON."""
    if not raw or not raw.strip():
        raise InvalidPresentation(400, "empty request body: send a presentation as JSON")
    try:
        return json.loads(raw.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError) as err:
        raise InvalidPresentation(400, f"request body is not valid JSON: {err}") from None


def _as_list(value: Any, name: str, problems: list[Problem]) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    problems.append(Problem(name, "type", f"'{name}' must be a list of strings (or one string)"))
    return []


def _resolve(
    resolver: TermResolver,
    value: Any,
    kind: str,
    name: str,
    problems: list[Problem],
) -> str | None:
    if not isinstance(value, str):
        problems.append(
            Problem(name, "type", f"'{name}' must be a string: a label, code, CURIE or IRI")
        )
        return None
    try:
        return resolver.resolve(value, CMP + kind, name)
    except UnknownTerm as err:
        problems.append(Problem(name, "known-term", str(err), list(err.suggestions)))
        return None


def _literal(value: Any) -> ox.Literal | None:
    """A JSON scalar as the literal its JSON type implies; SHACL then checks the datatype."""
    if isinstance(value, bool):
        return ox.Literal("true" if value else "false", datatype=ox.NamedNode(XSD + "boolean"))
    if isinstance(value, int | Decimal):
        return ox.Literal(str(Decimal(value)), datatype=ox.NamedNode(XSD + "decimal"))
    if isinstance(value, float):  # only when a caller hands in already-parsed JSON
        return ox.Literal(repr(value), datatype=ox.NamedNode(XSD + "decimal"))
    if isinstance(value, str):
        return ox.Literal(value)
    return None


def _check_keys(obj: dict[str, Any], allowed: tuple[str, ...], where: str, problems: list[Problem]):
    for key in sorted(obj):
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            problems.append(
                Problem(
                    name, "known-field", f"unknown field '{name}'; allowed: {', '.join(allowed)}"
                )
            )


def _check_context(value: Any, problems: list[Problem], root: Path | None) -> None:
    """JSON-LD input must use our context (by URL or inline), so keys mean what we think."""
    accepted_urls = {"/api/prescribe/context.jsonld", PRESENTATION_NS + "context.jsonld"}
    if isinstance(value, str) and (
        value in accepted_urls or value.endswith("/api/prescribe/context.jsonld")
    ):
        return
    if isinstance(value, dict) and value == load_context(root):
        return
    problems.append(
        Problem(
            "@context",
            "context",
            "only the presentation context is accepted: its URL "
            "(/api/prescribe/context.jsonld) or the object it serves",
        )
    )


def presentation_iri(canonical: Any) -> str:
    """Same content, same IRI: the answer's node IRIs are part of its bytes."""
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return PRESENTATION_NS + hashlib.sha256(text.encode()).hexdigest()[:16]


def build_presentation(body: Any, resolver: TermResolver, root: Path | None = None) -> Presentation:
    """Resolve a decoded JSON body into a Presentation, or raise InvalidPresentation (422)."""
    if not isinstance(body, dict):
        raise InvalidPresentation(
            422, "a presentation must be a JSON object with 'conditions' and 'goals'"
        )
    problems: list[Problem] = []
    _check_keys(body, TOP_FIELDS + JSONLD_KEYWORDS, "", problems)
    if "@context" in body:
        _check_context(body["@context"], problems, root)
    if "@type" in body and body["@type"] not in (
        "Presentation",
        CMP + "Presentation",
        "cmp:Presentation",
    ):
        problems.append(Problem("@type", "type", "'@type' must be 'Presentation'"))

    conditions = [
        _resolve(resolver, v, "Condition", f"conditions[{i}]", problems)
        for i, v in enumerate(_as_list(body.get("conditions"), "conditions", problems))
    ]
    goals = [
        _resolve(resolver, v, "Outcome", f"goals[{i}]", problems)
        for i, v in enumerate(_as_list(body.get("goals"), "goals", problems))
    ]

    raw_pathologies = body.get("pathologies", [])
    if not isinstance(raw_pathologies, list):
        problems.append(Problem("pathologies", "type", "'pathologies' must be a list"))
        raw_pathologies = []
    pathologies: list[tuple[int, str | None, dict[str, Any]]] = []
    for i, item in enumerate(raw_pathologies):
        where = f"pathologies[{i}]"
        if isinstance(item, str):
            item = {"pathology": item}
        if not isinstance(item, dict):
            problems.append(Problem(where, "type", f"'{where}' must be an object or a string"))
            continue
        _check_keys(item, (*PATHOLOGY_FIELDS, "@type"), where, problems)
        if "pathology" not in item:
            problems.append(
                Problem(f"{where}.pathology", "required", "name the secondary pathology")
            )
            continue
        iri = _resolve(
            resolver, item["pathology"], "SecondaryPathology", f"{where}.pathology", problems
        )
        pathologies.append((i, iri, item))

    prefs = body.get("preferences", {})
    if not isinstance(prefs, dict):
        problems.append(Problem("preferences", "type", "'preferences' must be an object"))
        prefs = {}
    _check_keys(prefs, PREFERENCE_FIELDS, "preferences", problems)
    modalities = [
        _resolve(resolver, v, "ExerciseModality", f"preferences.modality[{i}]", problems)
        for i, v in enumerate(_as_list(prefs.get("modality"), "preferences.modality", problems))
    ]
    settings = []
    for i, v in enumerate(_as_list(prefs.get("setting"), "preferences.setting", problems)):
        name = f"preferences.setting[{i}]"
        if isinstance(v, str) and v.strip().casefold() in SETTINGS:
            settings.append(SETTINGS[v.strip().casefold()])
        else:
            settings.append(_resolve(resolver, v, "ExerciseModality", name, problems))

    scalars: dict[str, Any] = {}
    for i, _iri, item in pathologies:
        for key in PATHOLOGY_FIELDS[1:]:
            if key in item and _literal(item[key]) is None:
                problems.append(
                    Problem(
                        f"pathologies[{i}].{key}",
                        "type",
                        f"'{key}' must be a number, string or boolean as documented",
                    )
                )
    for key in ("format", "supervision"):
        if key in prefs:
            scalars[key] = prefs[key]
            if _literal(prefs[key]) is None:
                problems.append(
                    Problem(f"preferences.{key}", "type", f"'preferences.{key}' must be a string")
                )
    if problems:
        raise InvalidPresentation(422, "the presentation is not valid", problems)

    canonical = {
        "conditions": conditions,
        "goals": goals,
        "pathologies": [
            {"pathology": iri, **{k: item[k] for k in PATHOLOGY_FIELDS[1:] if k in item}}
            for _i, iri, item in pathologies
        ],
        "modality": modalities,
        "setting": settings,
        **scalars,
    }
    p_iri = presentation_iri(canonical)
    statuses = [
        PathologyInput(
            iri=str(iri),
            node=f"{p_iri}/pathology/{n}",
            instrument=item.get("instrument"),
            score=item.get("score"),
            score_min=item.get("scoreMin"),
            score_max=item.get("scoreMax"),
            elevated=item.get("elevated"),
        )
        for n, (_i, iri, item) in enumerate(pathologies)
    ]
    pres = Presentation(
        iri=p_iri,
        conditions=_unique(conditions),
        goals=_unique(goals),
        pathologies=statuses,
        prefers_modality=_unique(modalities),
        prefers_setting=_unique(settings),
        prefers_format=scalars.get("format"),
        prefers_supervision=scalars.get("supervision"),
        triples=[],
    )
    pres.triples = to_triples(pres, pathologies)
    return pres


def _unique(values: list[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def to_triples(
    pres: Presentation, raw: list[tuple[int, str | None, dict[str, Any]]]
) -> list[ox.Triple]:
    node = ox.NamedNode(pres.iri)

    def p(name: str) -> ox.NamedNode:
        return ox.NamedNode(CMP + name)

    out = [ox.Triple(node, RDF_TYPE, p("Presentation"))]
    out += [ox.Triple(node, p("presentsCondition"), ox.NamedNode(c)) for c in pres.conditions]
    out += [ox.Triple(node, p("goal"), ox.NamedNode(g)) for g in pres.goals]
    out += [ox.Triple(node, p("prefersModality"), ox.NamedNode(m)) for m in pres.prefers_modality]
    out += [ox.Triple(node, p("prefersSetting"), ox.NamedNode(s)) for s in pres.prefers_setting]
    for name, value in (
        ("prefersFormat", pres.prefers_format),
        ("prefersSupervision", pres.prefers_supervision),
    ):
        if value is not None and (lit := _literal(value)) is not None:
            out.append(ox.Triple(node, p(name), lit))
    for status, (_i, _iri, item) in zip(pres.pathologies, raw, strict=True):
        s = ox.NamedNode(status.node)
        out += [
            ox.Triple(node, p("pathologyStatus"), s),
            ox.Triple(s, RDF_TYPE, p("PathologyStatus")),
            ox.Triple(s, p("statedPathology"), ox.NamedNode(status.iri)),
        ]
        for key in PATHOLOGY_FIELDS[1:]:
            if key in item and (lit := _literal(item[key])) is not None:
                out.append(ox.Triple(s, p(key), lit))
    return sorted(set(out), key=str)
