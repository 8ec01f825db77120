"""Where the knowledge files live and how every RDF file is read.

This is the only module that parses RDF files. Everything else asks it for triples, a
pyoxigraph store, or (for pySHACL / owlrl, which need it) an rdflib graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import pyoxigraph as ox
import rdflib

from service import config

# Re-exported (`x as x`): the names live in service.vocab; callers that read files and
# names together keep one import.
from service.vocab import NS as NS
from service.vocab import PREFIXES as PREFIXES
from service.vocab import curie as curie
from service.vocab import expand_curie as expand_curie
from service.vocab import sparql_prefixes as sparql_prefixes

Term = ox.NamedNode | ox.BlankNode | ox.Literal
Answer = ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples


class PlainTriple(Protocol):
    """A triple without RDF 1.2 triple terms: what the knowledge files, OWL and SHACL hold."""

    @property
    def subject(self) -> ox.NamedNode | ox.BlankNode: ...
    @property
    def predicate(self) -> ox.NamedNode: ...
    @property
    def object(self) -> Term: ...


# What the readers of statements accept: pyoxigraph's triples and quads, or plain triples.
Statement = ox.Triple | ox.Quad | PlainTriple

GRAPH_NAMES = ("ontology", "asserted", "inferred", "shapes", "rules")
GRAPHS: dict[str, ox.NamedNode] = {name: ox.NamedNode(f"{NS}graph/{name}") for name in GRAPH_NAMES}

_FORMATS = {
    ".ttl": ox.RdfFormat.TURTLE,
    ".trig": ox.RdfFormat.TRIG,
    ".nt": ox.RdfFormat.N_TRIPLES,
    ".nq": ox.RdfFormat.N_QUADS,
    ".rdf": ox.RdfFormat.RDF_XML,
    ".owl": ox.RdfFormat.RDF_XML,
    ".jsonld": ox.RdfFormat.JSON_LD,
}


def project_root() -> Path:
    """The repository root, overridable so tests can point at a copy."""
    return config.root()


@dataclass
class RDFSyntaxError(Exception):
    """A file that cannot be parsed; carries enough to point a curator at the line."""

    path: Path
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}"
        if self.line is not None:
            where += f", line {self.line}"
            if self.column is not None:
                where += f", column {self.column}"
        return f"{where}: {self.message}"


def rdf_format(path: Path) -> ox.RdfFormat:
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise RDFSyntaxError(
            path, None, None, f"unknown RDF file extension {path.suffix!r}"
        ) from None


def parse_file(path: Path) -> list[ox.Quad]:
    """Every statement of one file; triple formats give quads in the default graph."""
    path = Path(path)
    with _reporting(path):
        return list(ox.parse(path=path, format=rdf_format(path)))


def parse_triples(path: Path, data: bytes | None = None) -> list[ox.Triple]:
    """Every statement of one file (or of `data`, that file's bytes already read) as a triple,
    graph names dropped: what the build holds, without a list of quads beside it."""
    return list(stream_triples(path, data))


def stream_triples(path: Path, data: bytes | None = None) -> Iterator[ox.Triple]:
    """parse_triples one statement at a time, for a reader that keeps only some of them."""
    path = Path(path)
    with _reporting(path):
        if data is None:
            quads = ox.parse(path=path, format=rdf_format(path))
        else:
            quads = ox.parse(data, format=rdf_format(path))
        for q in quads:
            yield q.triple


@contextmanager
def _reporting(path: Path) -> Iterator[None]:
    """A parse error (raised while the statements are read) as RDFSyntaxError: file and line."""
    try:
        yield
    except SyntaxError as err:
        message = str(err.msg if hasattr(err, "msg") else err)
        raise RDFSyntaxError(path, err.lineno, err.offset, message) from None
    except OSError as err:
        raise RDFSyntaxError(path, None, None, err.strerror or str(err)) from None


def knowledge_files(root: Path | None = None) -> dict[str, list[Path]]:
    """The shipped knowledge files by target graph, sorted so builds are deterministic."""
    root = root or project_root()
    return {
        "ontology": sorted((root / "ontology").glob("*.ttl"))
        + sorted((root / "ontology" / "terms").glob("*.ttl")),
        "asserted": sorted((root / "data").rglob("*.ttl")),
        "shapes": sorted((root / "shapes").glob("*.ttl")),
    }


def load_store(
    files_by_graph: Mapping[str, Iterable[Path]], store: ox.Store | None = None
) -> ox.Store:
    """Parse every file into its named graph of an (in-memory by default) pyoxigraph store."""
    store = store if store is not None else ox.Store()
    for graph_name, files in files_by_graph.items():
        graph = GRAPHS.get(graph_name) or ox.NamedNode(graph_name)
        for path in files:
            store.extend(ox.Quad(q.subject, q.predicate, q.object, graph) for q in parse_file(path))
    return store


def load_triples(files: Iterable[Path]) -> list[ox.Triple]:
    """The union of several files as plain triples (graph names dropped)."""
    return [t for path in files for t in parse_triples(path)]


def to_rdflib_term(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> rdflib.term.Node:
    if isinstance(term, ox.NamedNode):
        return rdflib.URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return rdflib.BNode(term.value)
    if isinstance(term, ox.Literal):
        if term.language:
            return rdflib.Literal(term.value, lang=term.language)
        return rdflib.Literal(term.value, datatype=rdflib.URIRef(term.datatype.value))
    raise TypeError(f"unsupported RDF term {term!r}")


def to_rdflib_graph(triples: Iterable[ox.Triple | ox.Quad]) -> rdflib.Graph:
    """An rdflib graph for the libraries that need one (pySHACL, owlrl)."""
    graph = rdflib.Graph()
    for prefix, iri in PREFIXES.items():
        graph.bind(prefix, iri, override=True)
    for t in plain_triples(triples):
        graph.add(
            (to_rdflib_term(t.subject), to_rdflib_term(t.predicate), to_rdflib_term(t.object))
        )
    return graph


def load_dataset(path: Path, store: ox.Store | None = None) -> ox.Store:
    """A dataset file (N-Quads, TriG: a build artifact) into a store, graphs kept."""
    store = store if store is not None else ox.Store()
    store.extend(parse_file(path))
    return store


def plain_triples(statements: Iterable[Statement]) -> list[PlainTriple]:
    """The statements as triples (graphs dropped); a triple term is refused, not guessed at."""
    out = []
    for item in statements:
        t = item.triple if isinstance(item, ox.Quad) else item
        if isinstance(t.subject, ox.Triple) or isinstance(t.object, ox.Triple):
            raise TypeError(f"RDF 1.2 triple terms are not supported: {t}")
        out.append(t)
    return cast(list[PlainTriple], out)


def solutions(answer: Answer) -> ox.QuerySolutions:
    """A SELECT query's answer, typed (pyoxigraph's `query` returns one of three kinds)."""
    if not isinstance(answer, ox.QuerySolutions):
        raise TypeError(f"expected the solutions of a SELECT query, not {type(answer).__name__}")
    return answer


def constructed(answer: Answer) -> ox.QueryTriples:
    """A CONSTRUCT or DESCRIBE query's triples, typed."""
    if not isinstance(answer, ox.QueryTriples):
        raise TypeError(f"expected the triples of a CONSTRUCT query, not {type(answer).__name__}")
    return answer


def serialize(
    statements: Iterable[ox.Triple] | Iterable[ox.Quad],
    format: ox.RdfFormat,
    prefixes: Mapping[str, str] | None = None,
) -> bytes:
    """The statements in an RDF syntax, as bytes (pyoxigraph's writer, no output file)."""
    data = ox.serialize(statements, format=format, prefixes=dict(prefixes or {}))
    assert data is not None  # only an output file makes pyoxigraph return None
    return data
