"""The project's FHIR extensions as StructureDefinitions, so the Bundle defines what it uses.

The same definitions, in words, are the "Extensions" table of docs/FHIR.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.fhir import codes


@dataclass(frozen=True)
class ExtensionSpec:
    url: str
    name: str  # computable name
    value_type: str  # the one FHIR type of value[x]
    contexts: tuple[str, ...]  # FHIRPath element paths it may sit on
    short: str
    definition: str

    @property
    def id(self) -> str:
        return codes.local_name(self.url)


EXTENSIONS = (
    ExtensionSpec(
        codes.EXT_CURATION_STATUS, "CurationStatus", "Coding", ("Evidence",),
        "how the figures were checked",
        "The curation status of the claim or body of evidence, from "
        "https://w3id.org/cmpkg/status/: confirmed (checked against the source's own text), "
        "unconfirmed (not yet confirmed; never carries a body's conclusion), secondary-source "
        "(taken from a digest that quotes the source) or curator-interpretation (the curators' "
        "reading of the source's words).",
    ),
    ExtensionSpec(
        codes.EXT_RATING_ORIGIN, "RatingOrigin", "code",
        ("Evidence.certainty", "Evidence.certainty.subcomponent"),
        "source | project: who made this certainty rating",
        "source: the rating (or rating down) as the cited source published it; project: made "
        "by this project's rules or heuristics, never to be read as a source's judgement.",
    ),
    ExtensionSpec(
        codes.EXT_MATCH, "MatchStrength", "code",
        ("EvidenceVariable.characteristic.definitionCodeableConcept.coding",),
        "exact | close: how well the coding matches the variable",
        "exact: the coded concept is the same as the variable (skos:exactMatch); close: a "
        "neighbouring concept, not a synonym (skos:closeMatch).",
    ),
    ExtensionSpec(
        codes.EXT_DIRECTNESS, "EvidenceDirectness", "code", ("Evidence",),
        "direct | indirect: does the body's conclusion rest on the question itself",
        "direct: a claim carrying the conclusion is about exactly the question's condition and "
        "outcome; indirect: the conclusion rests only on claims about another population or a "
        "narrower outcome.",
    ),
    ExtensionSpec(
        codes.EXT_CONCLUSION, "Conclusion", "Coding", ("Evidence",),
        "the project's conclusion for a body of evidence",
        "One of https://w3id.org/cmpkg/conclusion/: benefit, no-important-effect, "
        "inconclusive, inconsistent, harm; derived by the project's rules from the carrying "
        "claims, not stated by a source.",
    ),
    ExtensionSpec(
        codes.EXT_GENERATED_BY, "GeneratedBy", "uri",
        ("Evidence", "Evidence.certainty", "Evidence.certainty.subcomponent"),
        "the project rule that derived this",
        "The IRI of a rule of https://w3id.org/cmpkg/rule/ that derived the element; "
        "`cmpkg explain` prints the derivation.",
    ),
    ExtensionSpec(
        codes.EXT_HIGHER_IS_BETTER, "HigherIsBetter", "boolean", ("Evidence.statistic",),
        "whether a higher value favours the intervention",
        "The polarity of the outcome scale as the review reports it: true when a positive "
        "estimate favours the intervention. Signs are never flipped.",
    ),
)  # fmt: skip


def structure_definition(spec: ExtensionSpec) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": spec.id,
        "url": spec.url,
        "name": spec.name,
        "title": spec.short,
        "status": "active",
        "description": spec.definition,
        "fhirVersion": codes.FHIR_VERSION,
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": c} for c in spec.contexts],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {
            "element": [
                {
                    "id": "Extension",
                    "path": "Extension",
                    "short": spec.short,
                    "definition": spec.definition,
                    "max": "1",
                },
                {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": spec.url},
                {
                    "id": "Extension.value[x]",
                    "path": "Extension.value[x]",
                    "min": 1,
                    "type": [{"code": spec.value_type}],
                },
            ]
        },
    }
