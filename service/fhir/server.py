"""The read-only FHIR interface's own resources: CapabilityStatement and OperationOutcome."""

from __future__ import annotations

from typing import Any

from service.fhir import codes
from service.fhir.bundle import RESOURCE_TYPES, SEARCH_PARAMETERS

# When this statement's content last changed; a constant so /fhir/metadata is stable.
CAPABILITY_DATE = "2026-12-01"

_SEARCH_DOCS = {
    "condition": "the population: a condition as label, synonym, CURIE, IRI, code "
    "(MeSH:D005356) or token (https://www.nlm.nih.gov/mesh|D005356); matches the condition "
    "the evidence is about exactly (no narrower conditions)",
    "intervention": "the exercise modality, named as for condition",
    "outcome": "the outcome, named as for condition",
}


def capability_statement() -> dict[str, Any]:
    resources = []
    for rtype in RESOURCE_TYPES:
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
        }
        params = [
            {"name": name, "type": "token", "documentation": _SEARCH_DOCS[name]}
            for name in SEARCH_PARAMETERS[rtype]
        ]
        if params:
            entry["searchParam"] = params
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "id": "cmpkg",
        "url": codes.BASE + "/metadata",
        "name": "CmpKgEvidence",
        "title": "cmp-kg evidence on exercise for chronic musculoskeletal pain (read-only)",
        "status": "active",
        "date": CAPABILITY_DATE,
        "description": "Evidence claims, bodies of evidence, their variables and sources as "
        "FHIR R5 resources. Decision support for clinicians and guideline authors; not advice "
        "to patients.",
        "kind": "instance",
        "software": {"name": "cmp-kg"},
        "implementation": {"description": "cmp-kg FHIR interface"},
        "fhirVersion": codes.FHIR_VERSION,
        "format": [codes.FHIR_JSON, "json"],
        "rest": [{"mode": "server", "resource": resources}],
    }


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }
