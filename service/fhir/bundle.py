"""The resources of one build: validated with fhir.resources' R5 models, indexed, bundled.

`FhirIndex.from_select(select)` reads the build once (service.fhir.graph), maps it
(service.fhir.mapping) and validates every resource; the export writes its Bundle, the web
blueprint reads and searches it. Same build, same bytes: resources and their lists come out
in a fixed order and the Bundle has no timestamp.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyoxigraph as ox
from fhir.resources import get_fhir_model_class

from service.fhir import codes
from service.fhir.graph import Select, read_graph
from service.fhir.mapping import Entry, Resource, entries
from service.query.export import store_select

RESOURCE_TYPES = ("Citation", "Evidence", "EvidenceVariable", "StructureDefinition")
SEARCH_PARAMETERS: dict[str, tuple[str, ...]] = {
    "Evidence": ("condition", "intervention", "outcome"),
    "Citation": (),
    "EvidenceVariable": (),
    "StructureDefinition": (),
}


class InvalidResource(ValueError):
    """A mapped resource the R5 model refuses: a bug in the mapping, never served."""


def validate(resource: Mapping[str, Any]) -> None:
    """Check one resource against its fhir.resources R5 model (extra fields refused)."""
    model = get_fhir_model_class(str(resource["resourceType"]))
    try:
        model.model_validate(dict(resource))
    except Exception as err:  # pydantic's ValidationError, or a model's own check
        raise InvalidResource(f"{resource['resourceType']}/{resource.get('id')}: {err}") from err


def full_url(resource: Mapping[str, Any]) -> str:
    return f"{codes.BASE}/{resource['resourceType']}/{resource['id']}"


def dumps(resource: Mapping[str, Any]) -> bytes:
    return (json.dumps(resource, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


@dataclass
class FhirIndex:
    entries: list[Entry]

    def __post_init__(self) -> None:
        self._by_key = {(e.type, e.id): e for e in self.entries}

    @classmethod
    def from_select(cls, select: Select) -> FhirIndex:
        found = entries(read_graph(select))
        for entry in found:
            validate(entry.resource)
        return cls(found)

    def read(self, rtype: str, rid: str) -> Resource | None:
        entry = self._by_key.get((rtype, rid))
        return entry.resource if entry else None

    def search(self, rtype: str, terms: Mapping[str, str]) -> list[Resource]:
        """Resources of a type naming every given term (parameter -> one IRI), in id order."""
        return [
            e.resource
            for e in self.entries
            if e.type == rtype and all(iri in e.search.get(p, ()) for p, iri in terms.items())
        ]

    def bundle(self) -> Resource:
        """Everything as a Bundle of type collection; its id is a digest of its content."""
        entry = [{"fullUrl": full_url(e.resource), "resource": e.resource} for e in self.entries]
        digest = hashlib.sha256(dumps({"entry": entry})).hexdigest()[:16]
        return {
            "resourceType": "Bundle",
            "id": f"cmpkg-{digest}",
            "type": "collection",
            "entry": entry,
        }


def searchset(resources: Iterable[Resource], self_url: str) -> Resource:
    found = list(resources)
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [
            {"fullUrl": full_url(r), "resource": r, "search": {"mode": "match"}} for r in found
        ],
    }


def export_bundle(select: Select) -> bytes:
    return dumps(FhirIndex.from_select(select).bundle())


def export_quads(quads: list[ox.Quad]) -> bytes:
    """The Bundle of a build's quads: what `cmpkg export --format fhir` writes."""
    return export_bundle(store_select(quads))
