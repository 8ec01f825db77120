"""Query answers as bytes: one encoder for solutions and one for triples, shared by both stores.

Solutions are always encoded first as SPARQL JSON (bounded by the row cap) and converted to the
other result formats by pyoxigraph, so the embedded and the remote store produce byte-identical
answers for the same solutions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import pyoxigraph as ox

from service.kb.sources import PREFIXES

XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
LANG_STRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"

# Result media types -> pyoxigraph formats (first = preferred when the client does not care).
SOLUTION_FORMATS: dict[str, ox.QueryResultsFormat] = {
    "application/sparql-results+json": ox.QueryResultsFormat.JSON,
    "application/sparql-results+xml": ox.QueryResultsFormat.XML,
    "text/csv": ox.QueryResultsFormat.CSV,
    "text/tab-separated-values": ox.QueryResultsFormat.TSV,
}
GRAPH_FORMATS: dict[str, ox.RdfFormat] = {
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/ld+json": ox.RdfFormat.JSON_LD,
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
    "application/n-quads": ox.RdfFormat.N_QUADS,
    "application/trig": ox.RdfFormat.TRIG,
}
JSON_RESULTS = "application/sparql-results+json"


@dataclass(frozen=True)
class Answer:
    """A serialized answer; `truncated` says the row cap cut it short."""

    media_type: str
    body: bytes
    truncated: bool = False
    rows: int = 0


def term_json(term: object) -> dict[str, object]:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Literal):
        out: dict[str, object] = {"type": "literal", "value": term.value}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype.value != XSD_STRING:
            out["datatype"] = term.datatype.value
        return out
    if isinstance(term, ox.Triple):
        return {
            "type": "triple",
            "value": {
                "subject": term_json(term.subject),
                "predicate": term_json(term.predicate),
                "object": term_json(term.object),
            },
        }
    raise TypeError(f"unsupported term {term!r}")


def encode_boolean(value: bool, media_type: str) -> Answer:
    body = json.dumps({"head": {}, "boolean": bool(value)}).encode()
    return Answer(media_type, _convert(body, media_type), rows=1)


def encode_solutions(solutions: ox.QuerySolutions, media_type: str, row_cap: int) -> Answer:
    names = [v.value for v in solutions.variables]
    bindings = []
    truncated = False
    for solution in solutions:
        if len(bindings) >= row_cap:
            truncated = True
            break
        row = {}
        for name in names:
            value = solution[name]
            if value is not None:
                row[name] = term_json(value)
        bindings.append(row)
    body = json.dumps(
        {"head": {"vars": names}, "results": {"bindings": bindings}}, ensure_ascii=False
    ).encode()
    return Answer(media_type, _convert(body, media_type), truncated, len(bindings))


def encode_triples(triples: Iterable[ox.Triple], media_type: str, row_cap: int) -> Answer:
    kept: list[ox.Triple] = []
    truncated = False
    for triple in triples:
        if len(kept) >= row_cap:
            truncated = True
            break
        kept.append(triple)
    fmt = GRAPH_FORMATS[media_type]
    # Quad formats want quads; a CONSTRUCT result is the default graph.
    items: list = kept
    if fmt in (ox.RdfFormat.N_QUADS, ox.RdfFormat.TRIG):
        items = [ox.Quad(t.subject, t.predicate, t.object) for t in kept]
    prefixes = PREFIXES if fmt in (ox.RdfFormat.TURTLE, ox.RdfFormat.TRIG) else None
    body = (
        ox.serialize(items, format=fmt, prefixes=prefixes)
        if prefixes
        else ox.serialize(items, format=fmt)
    )
    return Answer(media_type, body, truncated, len(kept))


def encode_result(result: object, media_type: str, row_cap: int) -> Answer:
    """Any pyoxigraph query result (evaluated or parsed back from a remote store)."""
    if isinstance(result, ox.QueryBoolean | bool):
        return encode_boolean(bool(result), media_type)
    if isinstance(result, ox.QuerySolutions):
        return encode_solutions(result, media_type, row_cap)
    return encode_triples(result, media_type, row_cap)  # type: ignore[arg-type]


def _convert(json_body: bytes, media_type: str) -> bytes:
    if media_type == JSON_RESULTS:
        return json_body
    parsed = ox.parse_query_results(json_body, format=ox.QueryResultsFormat.JSON)
    return parsed.serialize(format=SOLUTION_FORMATS[media_type])
