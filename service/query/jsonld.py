"""JSON-LD out of RDF terms: the published `@context`, compact nodes, and framed statements.

One context (`ontology/context.jsonld`) gives every schema property and class a short term
(the local name of its `cmp:` IRI) and most project namespaces a prefix (for what people
write, e.g. the API's parameters). Every node's `id` is its full IRI: CURIEs cannot be the one
convention, because the prefixes `claim`, `finding`, `measure`, `report`, `rule`, `site`,
`strength` and `support` would shadow terms or result columns and are left out of the context.

Two ways to write literals:
- exact (`Compactor(ctx)`: the export and the entity pages, which are RDF): every value
  expands back to the same RDF term; a value that fits its term's coercion is written short,
  anything else as a value object (`{"@value": "0.66", "@type": "xsd:decimal"}`).
- plain JSON (`Compactor(ctx, plain=True)`: the API's answers): numbers are JSON numbers
  (`json_number`) and labels plain strings. The context coerces no numeric term, so a JSON-LD
  processor reads a fractional number as xsd:double and a whole one as xsd:integer; the
  published lexical form is in the RDF (SPARQL, the entity pages, the export).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from service.kb.sources import project_root
from service.vocab import DISCLAIMER as DISCLAIMER  # re-exported: the answers carry it
from service.vocab import NUMERIC_DATATYPES, PREFIXES, curie

CONTEXT_URL_PATH = "/context.jsonld"

RDF_TYPE = PREFIXES["rdf"] + "type"
XSD = PREFIXES["xsd"]
XSD_STRING = XSD + "string"
LANG_STRING = PREFIXES["rdf"] + "langString"
RDFS_LABEL = PREFIXES["rdfs"] + "label"
Json = dict[str, Any]
# Prefixes left out of the context: each is also the name of a result column or property.
UNPREFIXED = frozenset(
    {"claim", "finding", "measure", "report", "rule", "site", "strength", "support"}
)
Subject = ox.NamedNode | ox.BlankNode


def json_number(value: str | Decimal | int | float) -> int | float | None:
    """A numeric value (a lexical form or a number) as the JSON number that carries it;
    None when JSON has no number for it (NaN, INF, not a number).

    A whole value is an integer (37, never 37.0: every JSON-LD processor then reads it as
    xsd:integer). Anything else is a float, which Python writes as the shortest text that
    reads back as the same double: a decimal of up to 15 significant digits comes out with its
    own digits (0.66, -0.495, -10.16), trailing zeros aside (1.50 -> 1.5, the same value; the
    store keeps decimals in canonical form, without them, anyway).
    """
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if number == number.to_integral_value():
        return int(number)
    return float(number)


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
    """Writes RDF terms as compact JSON-LD under one context (no processor needed): exact
    RDF by default, plain JSON (numbers, string labels) with `plain=True`."""

    def __init__(self, ctx: Mapping[str, Any], plain: bool = False) -> None:
        self.plain = plain
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
        """The compact IRI under the context's longest matching prefix, or the IRI itself:
        for people to read and type (pages, parameter examples), never a node's `id`."""
        return curie(iri, self.prefixes, jsonld=True) or iri

    def node_id(self, term: Subject) -> str:
        """A node's `id`: its full IRI (the one convention for ids), or a blank node label."""
        if isinstance(term, ox.BlankNode):
            return f"_:{term.value}"
        return term.value

    def type_name(self, iri: str) -> str:
        return self.classes.get(iri) or iri

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
        if self.plain:
            plain = self._plain_literal(term, definition)
            if plain is not None:
                return plain
        if term.language:
            if coercion is None and definition.get("@language") == term.language:
                return term.value
            return {"@value": term.value, "@language": term.language}
        return self._typed_literal(term, coercion, definition)

    def _plain_literal(self, term: ox.Literal, definition: Json) -> Any:
        """A number as a JSON number, a label as a plain string; None: write it exactly."""
        datatype = term.datatype.value
        if datatype in NUMERIC_DATATYPES and definition.get("@type") is None:
            return json_number(term.value)
        if self.expand(definition.get("@id", "")) == RDFS_LABEL:
            # Labels are plain strings (issue 14); the context's "@language": "en" then reads
            # an untagged source name ("Busch 2007") back as English, which is what it is.
            return term.value
        return None

    def _typed_literal(self, term: ox.Literal, coercion: str | None, definition: Json) -> Any:
        """A literal without a language: short when its term's coercion (or JSON) says the
        type, else an explicit value object."""
        datatype = term.datatype.value
        if coercion is not None and coercion != "@id" and self.expand(coercion) == datatype:
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


@lru_cache(maxsize=8)
def _compactor_for(text: str, plain: bool) -> Compactor:
    return Compactor(json.loads(text)["@context"], plain)


def compactor(root: Path | None = None, plain: bool = False) -> Compactor:
    """The published context's compactor: exact RDF, or plain JSON for the API's answers."""
    return _compactor_for(_load(context_path(root)), plain)


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
    plain: bool = False,
) -> dict[str, Json]:
    """Each root statement with the nodes it points at nested one level deep.

    A claim comes out with its source (label, DOI, year ...), certainty (label, rank),
    modality, condition, outcome and comparator as embedded objects and its CI nested under
    `ci`, so a consumer reads one object per claim without joining anything. `plain`: as the
    API answers (numbers as JSON numbers, labels as strings), else exact RDF.
    """
    comp = compactor(root, plain)
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
    """An IRI as `{"id": <full IRI>, "label": ...}`, the label as `comp` writes literals."""
    node: Json = {"id": iri}
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
    kinds, _ranges, classes = _declarations(triples)
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
        # No numeric coercion: JSON-LD 1.1 to-RDF (section 8.6) writes a fractional JSON
        # number under "@type": xsd:decimal in xsd:double's canonical form, so 0.66 would
        # come back as "6.6E-1"^^xsd:decimal, not a valid decimal. Uncoerced, a number reads
        # as xsd:double (or xsd:integer when whole), the value it is; exact RDF writes value
        # objects.
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
