"""The FHIR side of the mapping: code systems, extension URLs and resource ids.

Certainty levels and domains get their HL7 codes from the graph (their `skos:exactMatch` to
http://terminology.hl7.org/CodeSystem/certainty-rating and .../certainty-type, in
ontology/terms/value-sets.ttl), so the only code table here is the one the ontology does not
hold: effect measures to the HL7 statistic-type codes.
"""

from __future__ import annotations

import hashlib
import re

from service.kb.sources import NS, PREFIXES, curie

FHIR_VERSION = "5.0.0"
FHIR_JSON = "application/fhir+json"

# fullUrl of every exported resource: {BASE}/{type}/{id}; references inside are relative.
BASE = NS + "fhir"
EXTENSION_BASE = NS + "fhir/StructureDefinition/"

# Documented in docs/FHIR.md ("Extensions").
EXT_CURATION_STATUS = EXTENSION_BASE + "curation-status"  # valueCoding, on Evidence
EXT_RATING_ORIGIN = EXTENSION_BASE + "rating-origin"  # valueCode source|project, on certainty
EXT_MATCH = EXTENSION_BASE + "match"  # valueCode exact|close, on a Coding
EXT_DIRECTNESS = EXTENSION_BASE + "evidence-directness"  # valueCode direct|indirect
EXT_CONCLUSION = EXTENSION_BASE + "conclusion"  # valueCoding, on a body's Evidence
EXT_GENERATED_BY = EXTENSION_BASE + "generated-by"  # valueUri: the rule that derived it
EXT_HIGHER_IS_BETTER = EXTENSION_BASE + "higher-is-better"  # valueBoolean, on a statistic

IRI_SYSTEM = "urn:ietf:rfc:3986"  # identifiers and codings that are our IRIs
HL7 = "http://terminology.hl7.org/CodeSystem/"
CERTAINTY_RATING = HL7 + "certainty-rating"
CERTAINTY_TYPE = HL7 + "certainty-type"
STATISTIC_TYPE = HL7 + "statistic-type"
ATTRIBUTE_ESTIMATE_TYPE = HL7 + "attribute-estimate-type"
VARIABLE_ROLE = HL7 + "variable-role"


# Effect measures with an HL7 statistic-type code. NNTB and "points of improvement" have no
# code there, so their statisticType is text only (the binding is extensible).
STATISTIC_CODES = {
    PREFIXES["measure"] + "smd": ("0000100", "Standardized Mean Difference"),
    PREFIXES["measure"] + "md": ("0000457", "Mean Difference"),
    PREFIXES["measure"] + "rr": ("C93152", "Relative Risk"),
}

# External term bases -> the system URI HL7 Terminology registers for them (MeSH, HPO), or
# the ontology's OBO PURL (DOID, MONDO); the code is written the way each system writes it.
TERM_SYSTEMS: tuple[tuple[str, str, str], ...] = (
    ("http://id.nlm.nih.gov/mesh/", "https://www.nlm.nih.gov/mesh", ""),
    ("http://purl.obolibrary.org/obo/HP_", "http://human-phenotype-ontology.org", "HP:"),
    ("http://purl.obolibrary.org/obo/DOID_", "http://purl.obolibrary.org/obo/doid.owl", "DOID:"),
    ("http://purl.obolibrary.org/obo/MONDO_", "http://purl.obolibrary.org/obo/mondo.owl", "MONDO:"),
)

_FHIR_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")


def term_coding(iri: str) -> tuple[str, str]:
    """(system, code) of an external term IRI; an unknown base keeps the IRI as the code."""
    for base, system, prefix in TERM_SYSTEMS:
        if iri.startswith(base):
            return system, prefix + iri[len(base) :]
    return IRI_SYSTEM, iri


def term_iri(system: str, code: str) -> str | None:
    """The inverse of term_coding: the IRI a FHIR token `system|code` names, if we know how."""
    if system == IRI_SYSTEM:
        return code
    for base, known, prefix in TERM_SYSTEMS:
        if system == known and code.startswith(prefix):
            return base + code[len(prefix) :]
    return None


def hl7_code(iri: str, system: str) -> str | None:
    """The code of an HL7 code-system IRI (`...CodeSystem/certainty-rating#moderate`)."""
    head, sep, code = iri.partition("#")
    return code if sep and head == system and code else None


def local_name(iri: str) -> str:
    return re.split(r"[/#]", iri.rstrip("/"))[-1]


def resource_id(iri: str) -> str:
    """A FHIR id for one of our IRIs: its CURIE with '-' for ':' (`claim-busch-2007-...`).

    FHIR ids are at most 64 characters of [A-Za-z0-9.-]; a longer one keeps its first 55
    characters and gets 8 hex digits of the IRI's SHA-1, so it stays readable and unique.
    """
    name = curie(iri)
    text = name.replace(":", "-", 1) if name else "iri-" + local_name(iri)
    text = re.sub(r"[^A-Za-z0-9.-]", "-", text)
    if _FHIR_ID.match(text):
        return text
    digest = hashlib.sha1(iri.encode("utf-8")).hexdigest()[:8]
    return f"{text[:55].rstrip('-')}-{digest}"
