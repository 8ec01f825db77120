"""JSON-LD out of RDF terms: the published `@context`, compact nodes, and framed statements.

One context (`ontology/context.jsonld`) gives every schema property and class a short term
(the local name of its `cmp:` IRI) and most project namespaces a prefix, so IRIs come out as
CURIEs. Namespaces whose prefix would shadow a term or a result column (`claim`, `finding`,
`site`, `strength`, `measure`, `report`, `rule`) have no prefix there: their IRIs stay whole.
Values are written so that any JSON-LD processor expands them back to the same RDF terms:
a value that fits its term's coercion is written short, anything else as an explicit
value object. Decimals stay strings (`"0.66"`): a JSON number would become an xsd:double.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from service.kb.sources import project_root
from service.vocab import DISCLAIMER as DISCLAIMER  # re-exported: the answers carry it
from service.vocab import PREFIXES, curie

CONTEXT_URL_PATH = "/context.jsonld"

RDF_TYPE = PREFIXES["rdf"] + "type"
XSD = PREFIXES["xsd"]
XSD_STRING = XSD + "string"
LANG_STRING = PREFIXES["rdf"] + "langString"
Json = dict[str, Any]
# Prefixes left out of the context: each is also the name of a result column or property.
UNPREFIXED = frozenset(
    {"claim", "finding", "measure", "report", "rule", "site", "strength", "support"}
)
Subject = ox.NamedNode | ox.BlankNode


def context_path(root: Path | None = None) -> Path:
    return (root or project_root()) / "ontology" / "context.jsonld"


@lru_cache(maxsize=4)
def _load(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def context_document(root: Path | None = None) -> Json:
    """The published context file as a JSON object (`{"@context": {...}}`)."""
    return json.loads(_load(context_path(root)))


def context(root: Path | None = None) -> Json:
    return context_document(root)["@context"]


class Compactor:
    """Writes RDF terms as compact JSON-LD under one context (no processor needed)."""

    def __init__(self, ctx: Mapping[str, Any]) -> None:
        self.prefixes: dict[str, str] = {}
        self.properties: dict[str, tuple[str, Json]] = {}  # property IRI -> (term, definition)
        self.classes: dict[str, str] = {}  # class IRI -> term
        self.nests: set[str] = set()
        self.definitions: dict[str, Json] = {}
        for term, definition in ctx.items():
            if term.startswith("@"):
                continue
            if definition == "@nest":
                self.nests.add(term)
            elif isinstance(definition, str) and definition.endswith(("/", "#", "_")):
                self.prefixes[term] = definition
        for term, definition in ctx.items():
            if term.startswith("@") or term in self.prefixes or term in self.nests:
                continue
            if isinstance(definition, str):
                if definition.startswith("@"):
                    continue  # keyword aliases (id, type)
                self.classes[self.expand(definition)] = term
            elif isinstance(definition, dict) and "@id" in definition:
                self.properties[self.expand(definition["@id"])] = (term, definition)
                self.definitions[term] = definition

    def expand(self, curie: str) -> str:
        prefix, sep, local = curie.partition(":")
        if sep and prefix in self.prefixes and not local.startswith("//"):
            return self.prefixes[prefix] + local
        return curie

    def iri(self, iri: str) -> str:
        """The compact IRI under the context's longest matching prefix, or the IRI itself."""
        return curie(iri, self.prefixes, jsonld=True) or iri

    def node_id(self, term: Subject) -> str:
        if isinstance(term, ox.BlankNode):
            return f"_:{term.value}"
        return self.iri(term.value)

    def type_name(self, iri: str) -> str:
        return self.classes.get(iri) or self.iri(iri)

    def key(self, predicate: str) -> tuple[str, Json]:
        found = self.properties.get(predicate)
        if found is not None:
            return found
        return self.iri(predicate), {}

    def value(self, term: ox.NamedNode | ox.BlankNode | ox.Literal, definition: Json) -> Any:
        coercion = definition.get("@type")
        if isinstance(term, ox.NamedNode | ox.BlankNode):
            ident = self.node_id(term)
            return ident if coercion == "@id" else {"@id": ident}
        if not isinstance(term, ox.Literal):
            raise TypeError(f"unsupported RDF term {term!r}")
        if term.language:
            if coercion is None and definition.get("@language") == term.language:
                return term.value
            return {"@value": term.value, "@language": term.language}
        return self._typed_literal(term, coercion, definition)

    def _typed_literal(self, term: ox.Literal, coercion: str | None, definition: Json) -> Any:
        """A literal without a language: short when its term's coercion (or JSON) says the
        type, else an explicit value object."""
        datatype = term.datatype.value
        if coercion is not None and coercion != "@id" and self.expand(coercion) == datatype:
            # A coerced xsd:decimal stays its lexical string, not a JSON number: JSON-LD 1.1
            # to-RDF (section 8.6) writes a fractional number in xsd:double's canonical form,
            # so 0.66 under "@type": xsd:decimal comes back as "6.6E-1"^^xsd:decimal, which
            # is not a valid decimal (a store then compares it with nothing).
            return term.value
        if coercion is None and "@language" not in definition:
            if datatype == XSD_STRING:
                return term.value
            if datatype == XSD + "integer" and _canonical_integer(term.value):
                return int(term.value)
            if datatype == XSD + "boolean" and term.value in ("true", "false"):
                return term.value == "true"
        if datatype == XSD_STRING:
            return {"@value": term.value}
        return {"@value": term.value, "@type": self.iri(datatype)}

    def node(self, subject: Subject, triples: Iterable[ox.Triple]) -> Json:
        """One node object with every triple of `subject` (types first, keys sorted)."""
        node: Json = {"id": self.node_id(subject)}
        types: list[str] = []
        values: dict[str, list[Any]] = defaultdict(list)
        nested: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        for triple in sorted(triples, key=lambda t: (str(t.predicate), str(t.object))):
            predicate = triple.predicate.value
            if predicate == RDF_TYPE and isinstance(triple.object, ox.NamedNode):
                types.append(self.type_name(triple.object.value))
                continue
            key, definition = self.key(predicate)
            if isinstance(triple.object, ox.Triple):
                raise TypeError(f"RDF 1.2 triple terms have no JSON-LD form: {triple}")
            rendered = self.value(triple.object, definition)
            nest = definition.get("@nest")
            (nested[nest][key] if nest else values[key]).append(rendered)
        if types:
            node["type"] = types[0] if len(types) == 1 else types
        for key in sorted(values):
            node[key] = _one_or_many(values[key])
        for nest in sorted(nested):
            node[nest] = {k: _one_or_many(v) for k, v in sorted(nested[nest].items())}
        return node


def _canonical_integer(text: str) -> bool:
    try:
        return str(int(text)) == text
    except ValueError:
        return False


def _one_or_many(items: list[Any]) -> Any:
    return items[0] if len(items) == 1 else items


@lru_cache(maxsize=4)
def _compactor_for(text: str) -> Compactor:
    return Compactor(json.loads(text)["@context"])


def compactor(root: Path | None = None) -> Compactor:
    return _compactor_for(_load(context_path(root)))


def by_subject(triples: Iterable[ox.Triple | ox.Quad]) -> dict[Subject, list[ox.Triple]]:
    grouped: dict[Subject, list[ox.Triple]] = defaultdict(list)
    seen: set[ox.Triple] = set()
    for item in triples:
        triple = item.triple if isinstance(item, ox.Quad) else item
        if triple in seen:  # the union of named graphs repeats some triples
            continue
        seen.add(triple)
        grouped[triple.subject].append(triple)  # type: ignore[index]
    return grouped


def graph_document(
    triples: Iterable[ox.Triple | ox.Quad],
    context_ref: str | Json | None = None,
    root: Path | None = None,
    first: str | None = None,
) -> Json:
    """Every triple as a flat `@graph` of node objects (what `cmpkg export` writes).

    `context_ref` is a URL of the published context or None to embed the context itself,
    so an exported file can be expanded offline. `first` puts one subject (the resource a
    page describes) at the top.
    """
    comp = compactor(root)
    grouped = by_subject(triples)
    order = sorted(grouped, key=lambda s: (s.value != first, isinstance(s, ox.BlankNode), s.value))
    return {
        "@context": context(root) if context_ref is None else context_ref,
        "@graph": [comp.node(s, grouped[s]) for s in order],
    }


def frame(
    roots: Iterable[str],
    triples: Iterable[ox.Triple | ox.Quad],
    root: Path | None = None,
) -> dict[str, Json]:
    """Each root statement with the nodes it points at nested one level deep.

    A claim comes out with its source (label, DOI, year ...), certainty (label, rank),
    modality, condition, outcome and comparator as embedded objects and its CI nested under
    `ci`, so a consumer reads one object per claim without joining anything.
    """
    comp = compactor(root)
    grouped = by_subject(triples)
    described = {s.value: s for s in grouped if isinstance(s, ox.NamedNode)}
    framed: dict[str, Json] = {}
    for iri in roots:
        subject = described.get(iri)
        if subject is None:
            continue
        node = comp.node(subject, grouped[subject])
        for key, value in list(node.items()):
            if key in ("id", "type") or key in comp.nests:
                continue
            coerced = comp.definitions.get(key, {}).get("@type") == "@id"
            node[key] = _embed(value, coerced, comp, grouped, described, iri)
        framed[iri] = node
    return framed


def _embed(value: Any, coerced: bool, comp: Compactor, grouped, described, root_iri: str) -> Any:
    if isinstance(value, list):
        return [_embed(v, coerced, comp, grouped, described, root_iri) for v in value]
    if isinstance(value, dict) and set(value) == {"@id"}:
        ident = value["@id"]
    elif isinstance(value, str) and coerced:  # a plain string is an IRI only under @id
        ident = value
    else:
        return value
    iri = comp.expand(ident)
    subject = described.get(iri)
    if subject is None or iri == root_iri or not grouped.get(subject):
        return value
    return comp.node(subject, grouped[subject])


def label_node(iri: str, label: ox.Literal | None, comp: Compactor) -> Json:
    """An IRI as `{"id": ..., "label": ...}` with the label exactly as stored."""
    node: Json = {"id": comp.iri(iri)}
    if label is not None:
        key, definition = comp.key(PREFIXES["rdfs"] + "label")
        node[key] = comp.value(label, definition)
    return node


def draft_context(triples: Iterable[ox.Triple | ox.Quad]) -> Json:
    """A context for every `cmp:` property and class declared in the ontology.

    Used to draft ontology/context.jsonld; the file is the published, stable version and a
    test checks it still covers the ontology.
    """
    cmp_ns = PREFIXES["cmp"]
    kinds, ranges, classes = _declarations(triples)
    ctx: Json = {"@version": 1.1, "id": "@id", "type": "@type"}
    ctx.update({p: iri for p, iri in PREFIXES.items() if p not in UNPREFIXED})
    for iri in sorted(classes):
        ctx[iri[len(cmp_ns) :]] = "cmp:" + iri[len(cmp_ns) :]
    for iri, kind in sorted(kinds.items()):
        local = iri[len(cmp_ns) :]
        term = local
        definition: Json = {"@id": "cmp:" + local}
        if kind.endswith("ObjectProperty"):
            definition["@type"] = "@id"
        elif ranges.get(iri) == XSD + "decimal":
            definition["@type"] = "xsd:decimal"
        if local in ("ciLower", "ciUpper"):
            definition["@nest"] = "ci"
        ctx[term] = definition
    return ctx


def _declarations(
    triples: Iterable[ox.Triple | ox.Quad],
) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """The ontology's `cmp:` properties (IRI -> OWL kind), their ranges, and its classes."""
    cmp_ns, owl = PREFIXES["cmp"], PREFIXES["owl"]
    kinds: dict[str, str] = {}
    ranges: dict[str, str] = {}
    classes: set[str] = set()
    for item in triples:
        t = item.triple if isinstance(item, ox.Quad) else item
        s, p, o = t.subject, t.predicate.value, t.object
        if not isinstance(s, ox.NamedNode) or not s.value.startswith(cmp_ns):
            continue
        if p == RDF_TYPE and isinstance(o, ox.NamedNode):
            if o.value in (owl + "ObjectProperty", owl + "DatatypeProperty"):
                kinds[s.value] = o.value
            elif o.value == owl + "Class":
                classes.add(s.value)
        elif p == PREFIXES["rdfs"] + "range" and isinstance(o, ox.NamedNode):
            ranges[s.value] = o.value
    return kinds, ranges, classes
