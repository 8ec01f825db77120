"""Where the knowledge files live and how every RDF file is read.

This is the only module that parses RDF files. Everything else asks it for triples, a
pyoxigraph store, or (for pySHACL / owlrl, which need it) an rdflib graph.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox
import rdflib

NS = "https://w3id.org/cmpkg/"

PREFIXES: dict[str, str] = {
    "cmp": NS + "vocab/",
    "cond": NS + "condition/",
    "mod": NS + "modality/",
    "path": NS + "pathology/",
    "princ": NS + "principle/",
    "mech": NS + "mechanism/",
    "phen": NS + "phenomenon/",
    "site": NS + "site/",
    "out": NS + "outcome/",
    "comp": NS + "comparator/",
    "measure": NS + "measure/",
    "cert": NS + "certainty/",
    "dom": NS + "certainty-domain/",
    "strength": NS + "strength/",
    "status": NS + "status/",
    "report": NS + "reporting/",
    "ae": NS + "adverse-event/",
    "src": NS + "source/",
    "claim": NS + "claim/",
    "finding": NS + "finding/",
    "rec": NS + "recommendation/",
    "rule": NS + "rule/",
    "graph": NS + "graph/",
    "dir": NS + "direction/",
    "sig": NS + "significance/",
    # nodes the build and the prescription mint (rules' output, derivation records, shapes)
    "body": NS + "body/",
    "concl": NS + "conclusion/",
    "rating-down": NS + "rating-down/",
    "caution": NS + "caution/",
    "prescription-component": NS + "prescription-component/",
    "derivation": NS + "derivation/",
    "presentation": NS + "presentation/",
    "shape": NS + "shape/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "dcterms": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "sh": "http://www.w3.org/ns/shacl#",
    "pico": "http://data.cochrane.org/ontologies/pico/",
    "obo": "http://purl.obolibrary.org/obo/",
    "mesh": "http://id.nlm.nih.gov/mesh/",
}

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
    return Path(os.environ.get("CMPKG_ROOT", Path(__file__).resolve().parents[2]))


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
    try:
        return list(ox.parse(path=path, format=rdf_format(path)))
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
    return [q.triple for path in files for q in parse_file(path)]


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
    for t in triples:
        graph.add(
            (to_rdflib_term(t.subject), to_rdflib_term(t.predicate), to_rdflib_term(t.object))
        )
    return graph


def load_dataset(path: Path, store: ox.Store | None = None) -> ox.Store:
    """A dataset file (N-Quads, TriG: a build artifact) into a store, graphs kept."""
    store = store if store is not None else ox.Store()
    store.extend(parse_file(path))
    return store


def curie(iri: str, prefixes: Mapping[str, str] = PREFIXES) -> str | None:
    """The prefixed name of an IRI under the longest matching namespace, or None.

    Local parts with '/' or '#' are not valid prefixed names, so those IRIs get None.
    """
    best = max(
        (p for p, base in prefixes.items() if iri.startswith(base)),
        key=lambda p: len(prefixes[p]),
        default=None,
    )
    if best is None:
        return None
    local = iri[len(prefixes[best]) :]
    return None if "/" in local or "#" in local else f"{best}:{local}"


def expand_curie(text: str, prefixes: Mapping[str, str] = PREFIXES) -> str | None:
    """The IRI a prefixed name stands for, or None when its prefix is not ours."""
    prefix, sep, local = text.partition(":")
    return prefixes[prefix] + local if sep and prefix in prefixes else None


def sparql_prefixes() -> str:
    """PREFIX declarations for every project prefix, for queries written in code."""
    return "".join(f"PREFIX {p}: <{iri}>\n" for p, iri in PREFIXES.items())
