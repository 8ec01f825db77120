"""What the FHIR mapping reads from a build: a few SELECTs, whatever store answers them.

`select(sparql) -> rows` (variable -> IRI or lexical form), as the page models take it, so the
same reading serves `cmpkg export` (a local pyoxigraph store) and `/fhir` (the served store,
embedded or remote). Each kind of node is read whole (`?s ?p ?o`), one query per kind, and
kept as sorted value lists, so the mapping never depends on the order a store answers in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from service.kb.sources import PREFIXES, sparql_prefixes

Row = dict[str, str | None]
Select = Callable[[str], list[Row]]


def expand(name: str) -> str:
    prefix, _, local = name.partition(":")
    return PREFIXES[prefix] + local


@dataclass
class Node:
    """One subject's statements: property IRI -> sorted values (IRIs or lexical forms)."""

    iri: str
    values: dict[str, list[str]] = field(default_factory=dict)

    def all(self, prop: str) -> list[str]:
        return self.values.get(expand(prop), [])

    def first(self, prop: str) -> str | None:
        found = self.all(prop)
        return found[0] if found else None


Nodes = dict[str, Node]


@dataclass
class Graph:
    claims: Nodes
    bodies: Nodes
    rating_downs: Nodes
    findings: Nodes  # source ratings that cap a body's certainty
    sources: Nodes
    terms: Nodes  # conditions, modalities, comparators and outcomes claims or bodies name
    values: Nodes  # certainty levels and domains, measures, statuses, conclusions, classes
    # the derivation records about bodies (one per rule and body): property IRI -> rules
    derived_by: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def label(self, iri: str | None) -> str | None:
        if iri is None:
            return None
        for nodes in (self.terms, self.values, self.sources, self.claims, self.bodies):
            if iri in nodes:
                return nodes[iri].first("rdfs:label")
        return None


def _nodes(select: Select, where: str, properties: tuple[str, ...] = ()) -> Nodes:
    """Every statement about the subjects `where` binds to ?s."""
    only = ""
    if properties:
        only = "VALUES ?p { " + " ".join(properties) + " }"
    rows = select(
        sparql_prefixes() + f"SELECT DISTINCT ?s ?p ?o WHERE {{\n  {where}\n  ?s ?p ?o . {only}\n}}"
    )
    grouped: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        s, p, o = row.get("s"), row.get("p"), row.get("o")
        if s and p and o is not None:
            grouped[s][p].add(o)
    return {
        s: Node(s, {p: sorted(values) for p, values in sorted(props.items())})
        for s, props in sorted(grouped.items())
    }


_TERM_PROPERTIES = ("rdfs:label", "skos:definition", "skos:exactMatch", "skos:closeMatch")
_VALUE_PROPERTIES = (
    "rdfs:label",
    "skos:definition",
    "skos:exactMatch",
    "skos:notation",
    "cmp:rank",
)


def read_graph(select: Select) -> Graph:
    """The claims, bodies of evidence, sources and the terms they use, from one build."""
    claims = _nodes(select, "?s a cmp:EvidenceClaim .")
    bodies = _nodes(select, "?s a cmp:EvidenceBody .")
    rating_downs = _nodes(select, "?b a cmp:EvidenceBody ; cmp:ratingDown ?s .")
    findings = _nodes(select, "?b a cmp:EvidenceBody ; cmp:certaintyCappedBy ?s .")
    # the class path also finds sources in a graph that OWL RL has not typed (a draft)
    sources = _nodes(select, "?s a/rdfs:subClassOf* cmp:Source .")
    terms = _nodes(
        select,
        "VALUES ?k { cmp:EvidenceClaim cmp:EvidenceBody }\n"
        "  VALUES ?link { cmp:intervention cmp:comparator cmp:condition cmp:outcome cmp:modality }"
        "\n  ?x a ?k ; ?link ?s . FILTER(isIRI(?s))",
        _TERM_PROPERTIES,
    )
    values = _nodes(
        select,
        "{ VALUES ?k { cmp:CertaintyLevel cmp:CertaintyDomain cmp:EffectMeasure "
        "cmp:CurationStatus cmp:Conclusion } ?s a ?k . }\n"
        "  UNION { ?x a/rdfs:subClassOf* cmp:Source ; a ?s . FILTER(isIRI(?s)) }",
        _VALUE_PROPERTIES,
    )
    derived_by: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in select(
        sparql_prefixes() + "SELECT DISTINCT ?s ?p ?rule WHERE {\n  ?s a cmp:EvidenceBody .\n"
        "  ?d cmp:derivedSubject ?s ; cmp:derivedProperty ?p ; prov:wasGeneratedBy ?rule .\n} "
        "ORDER BY ?s ?p ?rule"
    ):
        if row.get("s") and row.get("p") and row.get("rule"):
            derived_by[str(row["s"])][str(row["p"])].append(str(row["rule"]))
    derived = {s: dict(by) for s, by in derived_by.items()}
    return Graph(claims, bodies, rating_downs, findings, sources, terms, values, derived)
