"""Query answers as bytes, written by pyoxigraph's serialisers, shared by both stores.

Solutions are serialised by pyoxigraph straight into the format asked for. Every solution
costs at least MIN_ROW_BYTES in each format, and `most_rows` bounds the solutions an answer
can hold from a count of bytes (in C; see there), so an answer shorter than `row_cap` times the
first, or with at most `row_cap` by the second, cannot be over the row cap: that is nearly
every answer, and it is served as written. Only an answer that could be over the
cap is counted (parsed back and written as TSV, one line per row: TSV escapes line breaks in
terms) and, when it is, cut there and converted back, Rust to Rust: the count used to be paid by
every answer over a few hundred kilobytes, and it cost more than writing it (body-basis at 10k:
95 ms on top of a 190 ms evaluation). Past DIRECT_LIMIT bytes (CSV, which cannot be read back:
past the cap) the direct writer stops and the query's solutions are read again through the
capped TSV writer, so memory stays bounded whatever the answer's size. Triples go through
N-Triples, where one line is one triple. So the embedded store (results straight from the
engine) and the remote store (results parsed back from its answer) produce byte-identical
answers for the same solutions, and no answer is built term by term in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import IO, Any, cast

import pyoxigraph as ox

from service.kb.sources import PREFIXES, serialize

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
# The fewest bytes one solution takes in each format: `{}` and a comma; `<result></result>`;
# a CRLF; a LF.
MIN_ROW_BYTES = {
    "application/sparql-results+json": 2,
    "application/sparql-results+xml": 17,
    "text/csv": 2,
    "text/tab-separated-values": 1,
}


def most_rows(body: bytes, media_type: str) -> int:
    """At least as many as the solutions in `body` (never fewer; more only costs a count).

    XML: `<result>` opens each (a `<` in text is escaped). CSV: each ends in a line break.
    JSON: each is an object, so each has a `{`; so has each term, but a term object always
    starts `{"type":"` and a solution never can (a variable's value is an object, and a `"`
    inside a string is escaped), so those are taken off. A `{` inside a literal is counted too.
    """
    if media_type == "application/sparql-results+xml":
        return body.count(b"<result>")
    if media_type == "text/csv":
        return body.count(b"\n")
    return body.count(b"{") - body.count(b'{"type":"')


# Bytes of a direct answer before it is re-read capped. Past it the query is evaluated a second
# time: at 8 MB, body-basis at 100k triples (a ~25 MB answer) was, and took twice Oxigraph's
# time. A worker may use 1 GB (service.store.pool.DEFAULT_MEMORY); the answer is held twice.
DIRECT_LIMIT = 64 * 1024 * 1024
TSV = ox.QueryResultsFormat.TSV
NT = ox.RdfFormat.N_TRIPLES


@dataclass(frozen=True)
class Answer:
    """A serialized answer; `truncated` says the row cap cut it short."""

    media_type: str
    body: bytes
    truncated: bool = False
    rows: int = 0  # -1: not counted (an answer too short to be near the row cap)


XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"


def term_json(term: object) -> dict[str, object]:
    """One term as SPARQL JSON (for callers that build JSON from terms they hold)."""
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


class _Full(Exception):
    """Raised from inside a serialiser to stop it once the row cap is passed."""


def _bytes(data: bytes | None) -> bytes:
    return data or b""  # pyoxigraph returns None only when given an output to write to


class _LineCounter:
    """A binary sink for pyoxigraph's serialisers that stops them after `limit` lines."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines = 0
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.lines += data.count(b"\n")
        if self.lines > self.limit:
            raise _Full
        return len(data)

    def flush(self) -> None:
        pass


class _ByteCounter(_LineCounter):
    """A sink that stops its serialiser past `limit` bytes."""

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.lines += len(data)
        if self.lines > self.limit:
            raise _Full
        return len(data)


def _capped(write: Callable[[IO[bytes]], object], header: int, cap: int) -> tuple[bytes, int, bool]:
    """Lines written by `write`, cut after `header + cap` lines: (bytes, rows, truncated)."""
    sink = _LineCounter(header + cap)
    try:
        write(cast(IO[bytes], sink))
    except _Full:
        data = b"".join(sink.chunks)
        cut = -1
        for _ in range(header + cap):
            cut = data.index(b"\n", cut + 1)
        return data[: cut + 1], cap, True
    return b"".join(sink.chunks), sink.lines - header, False


def _boolean_body(value: bool, media_type: str) -> bytes:
    text = b'{"head":{},"boolean":true}' if value else b'{"head":{},"boolean":false}'
    result = ox.parse_query_results(text, format=ox.QueryResultsFormat.JSON)
    return _bytes(result.serialize(format=SOLUTION_FORMATS[media_type]))


# Eight possible answers: written once.
_BOOLEANS = {(v, m): _boolean_body(v, m) for v in (True, False) for m in SOLUTION_FORMATS}


def encode_boolean(value: bool, media_type: str) -> Answer:
    return Answer(media_type, _BOOLEANS[value, media_type], rows=1)


def encode_solutions(
    solutions: ox.QuerySolutions,
    media_type: str,
    row_cap: int,
    again: Callable[[], ox.QuerySolutions] | None = None,
) -> Answer:
    """The solutions in `media_type`, at most `row_cap` of them. `again` gives the same
    solutions anew, for an answer too long to keep whole (see the module doc)."""
    fmt = SOLUTION_FORMATS[media_type]
    if again is not None and media_type != "text/tab-separated-values":
        bound = row_cap * MIN_ROW_BYTES[media_type]
        sink = _ByteCounter(max(bound, DIRECT_LIMIT))
        try:
            solutions.serialize(cast(IO[bytes], sink), format=fmt)
        except _Full:
            solutions = again()
        else:
            direct = b"".join(sink.chunks)
            if len(direct) <= bound or most_rows(direct, media_type) <= row_cap:
                return Answer(media_type, direct, rows=-1)  # under the cap, rows not counted
            if media_type == "text/csv":  # CSV cannot be read back (it is lossy)
                solutions = again()
            else:
                solutions = cast(ox.QuerySolutions, ox.parse_query_results(direct, format=fmt))
                counted = _capped(lambda out: solutions.serialize(out, format=TSV), 1, row_cap)
                if not counted[2]:
                    return Answer(media_type, direct, rows=counted[1])
                return _from_tsv(counted, media_type)
    return _from_tsv(
        _capped(lambda out: solutions.serialize(out, format=TSV), 1, row_cap), media_type
    )


def _from_tsv(capped: tuple[bytes, int, bool], media_type: str) -> Answer:
    tsv, rows, truncated = capped
    if media_type == "text/tab-separated-values":
        return Answer(media_type, tsv, truncated, rows)
    parsed = cast(ox.QuerySolutions, ox.parse_query_results(tsv, format=TSV))
    converted = _bytes(parsed.serialize(format=SOLUTION_FORMATS[media_type]))
    return Answer(media_type, converted, truncated, rows)


def encode_triples(triples: Iterable[ox.Triple], media_type: str, row_cap: int) -> Answer:
    if isinstance(triples, ox.QueryTriples):
        query_triples = triples
        nt, rows, truncated = _capped(
            lambda sink: query_triples.serialize(sink, format=NT), 0, row_cap
        )
    else:  # parsed back from a remote store
        kept = list(islice(triples, row_cap + 1))
        truncated = len(kept) > row_cap
        nt = serialize(kept[:row_cap], NT)
        rows = min(len(kept), row_cap)
    if media_type == "application/n-triples":
        return Answer(media_type, nt, truncated, rows)
    fmt = GRAPH_FORMATS[media_type]
    parsed = ox.parse(nt, format=NT)
    # Quad formats want quads (a CONSTRUCT result is the default graph); the others triples.
    items: Any = (
        parsed if fmt in (ox.RdfFormat.N_QUADS, ox.RdfFormat.TRIG) else (q.triple for q in parsed)
    )
    prefixes = PREFIXES if fmt in (ox.RdfFormat.TURTLE, ox.RdfFormat.TRIG) else None
    return Answer(media_type, serialize(items, fmt, prefixes), truncated, rows)


def encode_result(
    result: object, media_type: str, row_cap: int, again: Callable[[], Any] | None = None
) -> Answer:
    """Any pyoxigraph query result (evaluated or parsed back from a remote store); `again`
    gives the same result anew (evaluates the query again, or re-reads the remote answer)."""
    if isinstance(result, ox.QueryBoolean | bool):
        return encode_boolean(bool(result), media_type)
    if isinstance(result, ox.QuerySolutions):
        return encode_solutions(result, media_type, row_cap, again)
    return encode_triples(result, media_type, row_cap)  # type: ignore[arg-type]


def is_graph(result: object) -> bool:
    return not isinstance(result, ox.QueryBoolean | bool | ox.QuerySolutions)
