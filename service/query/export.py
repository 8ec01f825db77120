"""The whole knowledge graph in one file: JSON-LD, Turtle or N-Quads.

JSON-LD and Turtle carry the union of the build's named graphs as plain triples (the same
triples in both, so a JSON-LD processor and a Turtle parser agree); N-Quads keeps the graphs.
The JSON-LD embeds the published context, so the file expands offline. The FHIR R5 Bundle
is not the graph but its evidence as resources: service.fhir maps it and `cmpkg export
--format fhir` (service.cli.exporting) writes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyoxigraph as ox

from service.kb.sources import PREFIXES, parse_file, serialize
from service.query import jsonld

FORMATS = ("jsonld", "ttl", "nq")


def union_triples(quads: list[ox.Quad]) -> list[ox.Triple]:
    """Each triple once, in a stable order, whatever graphs hold it."""
    return sorted({q.triple for q in quads}, key=str)


def store_select(quads: list[ox.Quad]) -> Callable[[str], list[dict[str, str | None]]]:
    """`select(sparql) -> rows` over the quads, the default graph being their union."""
    store = ox.Store()
    store.extend(quads)

    def select(sparql: str) -> list[dict[str, str | None]]:
        result = store.query(sparql, use_default_graph_as_union=True)
        assert isinstance(result, ox.QuerySolutions), "a SELECT answers with solutions"
        names = [v.value for v in result.variables]
        return [{n: (None if s[n] is None else s[n].value) for n in names} for s in result]

    return select


def export(quads: list[ox.Quad], fmt: str) -> bytes:
    if fmt == "nq":
        return serialize(sorted(quads, key=str), ox.RdfFormat.N_QUADS)
    triples = union_triples(quads)
    if fmt == "ttl":
        return serialize(triples, ox.RdfFormat.TURTLE, PREFIXES)
    if fmt == "jsonld":
        document = jsonld.graph_document(triples)
        return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def export_artifact(artifact: Path, fmt: str) -> bytes:
    """Export a build artifact (N-Quads or TriG), read by the one loader."""
    return export(parse_file(artifact), fmt)
