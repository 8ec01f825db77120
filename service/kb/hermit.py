"""OWL 2 DL reasoning with HermiT (through owlready2): consistency and classification.

HermiT only says *that* the knowledge base is inconsistent, never why, so this module also looks
for the usual curation mistake behind it: a node that is typed (directly, or through the domain
or range of a property it is used with) into two disjoint classes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import owlready2
import pyoxigraph as ox

from service.kb.sources import PREFIXES, curie

RDF_TYPE = PREFIXES["rdf"] + "type"
RDF_FIRST = PREFIXES["rdf"] + "first"
RDF_REST = PREFIXES["rdf"] + "rest"
RDF_NIL = PREFIXES["rdf"] + "nil"
RDFS_LABEL = PREFIXES["rdfs"] + "label"
RDFS_DOMAIN = PREFIXES["rdfs"] + "domain"
RDFS_RANGE = PREFIXES["rdfs"] + "range"
RDFS_SUBCLASS = PREFIXES["rdfs"] + "subClassOf"
OWL = PREFIXES["owl"]
OWL_DISJOINT = OWL + "disjointWith"
OWL_ALL_DISJOINT = OWL + "AllDisjointClasses"
OWL_MEMBERS = OWL + "members"
OWL_THING = OWL + "Thing"
OWL_NOTHING = OWL + "Nothing"


class HermitError(RuntimeError):
    """HermiT could not give an answer (as opposed to answering "inconsistent")."""


class JavaNotFoundError(HermitError):
    """HermiT is a Java program; without a JVM there is no DL reasoning at all."""


@dataclass(frozen=True)
class Clash:
    """One node typed into two disjoint classes, with how each typing came about."""

    node: str
    class_a: str  # the class the node gets from `via_a`
    class_b: str
    disjoint_a: str  # the declared-disjoint ancestors of class_a / class_b that collide
    disjoint_b: str
    # How the node got each type: ("asserted" | "range" | "domain", other node, property).
    via_a: tuple[str, str | None, str | None]
    via_b: tuple[str, str | None, str | None]


@dataclass(frozen=True)
class LiteralClash:
    """A literal outside the datatype range of its property (e.g. "0.66" as a string)."""

    subject: str
    prop: str
    value: str
    datatype: str
    range: str


@dataclass
class HermitResult:
    consistent: bool
    inferred_subclass_of: list[tuple[str, str]]  # (sub IRI, super IRI) found by classification
    explanation: str  # readable; names the offending node(s) when inconsistent
    seconds: float
    clashes: list[Clash] = field(default_factory=list)
    literal_clashes: list[LiteralClash] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)  # named classes equivalent to Nothing


def _java_available() -> bool:
    java = getattr(owlready2, "JAVA_EXE", "java")
    return bool(shutil.which(java) or Path(java).is_file())


def _java_message(err: Exception) -> str:
    """The Java exception's own words, without the stack trace."""
    lines = [line.strip() for line in str(err).splitlines()]
    kept = [x for x in lines if x and not x.startswith("at ") and not x.startswith("Java error")]
    text = " ".join(kept).replace('Exception in thread "main" ', "")
    return text or "no message"


def _nt_term(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> str:
    return str(term)  # pyoxigraph's str() is the N-Triples form


def _triples(statements: Iterable[ox.Triple | ox.Quad]) -> list[ox.Triple]:
    return [s.triple if isinstance(s, ox.Quad) else s for s in statements]


def run_hermit(triples: Iterable[ox.Triple | ox.Quad]) -> HermitResult:
    """Check consistency and classify the named classes of the given statements with HermiT."""
    if not _java_available():
        raise JavaNotFoundError(
            "HermiT needs a Java runtime and none was found on PATH "
            "(install one, e.g. Debian `default-jre-headless`, or run with --no-reasoner)."
        )
    statements = _triples(triples)
    started = time.perf_counter()
    world = owlready2.World()
    with tempfile.TemporaryDirectory(prefix="cmpkg-hermit-") as tmp:
        nt = Path(tmp) / "input.nt"
        nt.write_text(
            "".join(
                f"{_nt_term(t.subject)} {_nt_term(t.predicate)} {_nt_term(t.object)} .\n"
                for t in statements
            ),
            encoding="utf-8",
        )
        world.get_ontology(nt.as_uri()).load(format="ntriples")
        consistent = True
        try:
            with world.get_ontology("http://cmpkg.invalid/inferences/"):
                owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0)
        except owlready2.OwlReadyInconsistentOntologyError:
            consistent = False
        except owlready2.OwlReadyJavaError as err:
            # e.g. a datatype outside the OWL 2 datatype map (xsd:gYear): name it, not a traceback
            world.close()
            raise HermitError(f"HermiT could not process the input: {_java_message(err)}") from err
    inferred: list[tuple[str, str]] = []
    unsatisfiable: list[str] = []
    if consistent:
        inferred = _new_subclass_links(world, statements)
        unsatisfiable = sorted(
            c.iri
            for c in world.inconsistent_classes()
            if isinstance(c, owlready2.ThingClass) and c.iri != OWL_NOTHING
        )
    clashes = [] if consistent else find_disjointness_clashes(statements)
    literal_clashes = [] if consistent else find_literal_clashes(statements)
    seconds = time.perf_counter() - started
    world.close()
    return HermitResult(
        consistent=consistent,
        inferred_subclass_of=inferred,
        explanation=_explain(
            consistent,
            clashes,
            literal_clashes,
            unsatisfiable,
            [] if consistent else find_functional_clashes(statements),
        ),
        seconds=seconds,
        clashes=clashes,
        literal_clashes=literal_clashes,
        unsatisfiable=unsatisfiable,
    )


def _new_subclass_links(
    world: owlready2.World, statements: list[ox.Triple]
) -> list[tuple[str, str]]:
    asserted = {
        (t.subject.value, t.object.value)
        for t in statements
        if t.predicate.value == RDFS_SUBCLASS
        and isinstance(t.subject, ox.NamedNode)
        and isinstance(t.object, ox.NamedNode)
    }
    found: set[tuple[str, str]] = set()
    for cls in world.classes():
        for parent in cls.is_a:
            if isinstance(parent, owlready2.ThingClass) and parent.iri not in (OWL_THING,):
                pair = (cls.iri, parent.iri)
                if pair not in asserted and pair[0] != pair[1]:
                    found.add(pair)
    return sorted(found)


def find_disjointness_clashes(triples: Iterable[ox.Triple | ox.Quad]) -> list[Clash]:
    """Nodes typed into two disjoint classes, directly or via rdfs:domain / rdfs:range."""
    statements = _triples(triples)
    by_pred: dict[str, list[ox.Triple]] = defaultdict(list)
    for t in statements:
        by_pred[t.predicate.value].append(t)

    parents: dict[str, set[str]] = defaultdict(set)
    for t in by_pred[RDFS_SUBCLASS]:
        if isinstance(t.object, ox.NamedNode):
            parents[t.subject.value].add(t.object.value)

    def ancestors(cls: str) -> set[str]:
        seen, todo = {cls}, [cls]
        while todo:
            for p in parents.get(todo.pop(), ()):
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return seen

    disjoint: set[frozenset[str]] = {
        frozenset((t.subject.value, t.object.value))
        for t in by_pred[OWL_DISJOINT]
        if isinstance(t.object, ox.NamedNode)
    }
    rest = {t.subject: t.object for t in by_pred[RDF_REST]}
    first = {t.subject: t.object for t in by_pred[RDF_FIRST]}
    all_disjoint = {t.subject for t in by_pred[RDF_TYPE] if t.object.value == OWL_ALL_DISJOINT}
    for t in by_pred[OWL_MEMBERS]:
        if t.subject not in all_disjoint:
            continue
        members, node = [], t.object
        while node in first:
            members.append(first[node].value)
            node = rest.get(node, ox.NamedNode(RDF_NIL))
        disjoint |= {frozenset((a, b)) for a in members for b in members if a != b}

    domains = {
        t.subject.value: t.object.value
        for t in by_pred[RDFS_DOMAIN]
        if isinstance(t.object, ox.NamedNode)
    }
    ranges = {
        t.subject.value: t.object.value
        for t in by_pred[RDFS_RANGE]
        if isinstance(t.object, ox.NamedNode)
    }
    typings: dict[str, dict[str, tuple[str, str | None, str | None]]] = defaultdict(dict)
    for t in statements:
        if not isinstance(t.subject, ox.NamedNode):
            continue
        s, p = t.subject.value, t.predicate.value
        if p == RDF_TYPE and isinstance(t.object, ox.NamedNode):
            typings[s].setdefault(t.object.value, ("asserted", None, None))
        if p in domains:
            typings[s].setdefault(domains[p], ("domain", None, p))
        if p in ranges and isinstance(t.object, ox.NamedNode):
            typings[t.object.value].setdefault(ranges[p], ("range", s, p))

    clashes: set[Clash] = set()
    for node, types in typings.items():
        # Prefer explaining with an asserted type, which is what the curator can see in the file.
        ordered = sorted(types.items(), key=lambda kv: (kv[1][0] != "asserted", kv[0]))
        for i, (a, via_a) in enumerate(ordered):
            for b, via_b in ordered[i + 1 :]:
                hit = next(
                    (
                        (x, y)
                        for x in sorted(ancestors(a))
                        for y in sorted(ancestors(b))
                        if frozenset((x, y)) in disjoint
                    ),
                    None,
                )
                if hit:
                    clashes.add(Clash(node, a, b, hit[0], hit[1], via_a, via_b))
    # One clash per (node, offending use) is enough for a curator.
    best: dict[tuple[str, tuple], Clash] = {}
    for c in sorted(clashes, key=lambda c: (c.node, c.via_b, c.class_a, c.class_b)):
        best.setdefault((c.node, c.via_b), c)
    return sorted(best.values(), key=lambda c: (c.node, c.via_b[1] or "", c.via_b[2] or ""))


def _named_objects(triples: list[ox.Triple]) -> dict[str, str]:
    return {t.subject.value: t.object.value for t in triples if isinstance(t.object, ox.NamedNode)}


_XSD = PREFIXES["xsd"]
_INTEGERS = {
    _XSD + name
    for name in [
        "integer",
        "nonNegativeInteger",
        "positiveInteger",
        "nonPositiveInteger",
        "negativeInteger",
        "long",
        "int",
        "short",
        "byte",
        "unsignedLong",
        "unsignedInt",
        "unsignedShort",
        "unsignedByte",
    ]
}
# Which literal datatypes fall inside a range, for the ranges the schema uses.
_COMPATIBLE = {
    _XSD + "decimal": _INTEGERS | {_XSD + "decimal"},
    _XSD + "integer": _INTEGERS,
    _XSD + "nonNegativeInteger": _INTEGERS,  # a negative value is caught by the shapes instead
    _XSD + "string": {_XSD + "string"},
    _XSD + "boolean": {_XSD + "boolean"},
}


def find_literal_clashes(triples: Iterable[ox.Triple | ox.Quad]) -> list[LiteralClash]:
    """Literals whose datatype lies outside their property's rdfs:range (HermiT rejects them)."""
    statements = _triples(triples)
    ranges = _named_objects([t for t in statements if t.predicate.value == RDFS_RANGE])
    found = set()
    for t in statements:
        expected = ranges.get(t.predicate.value)
        if expected in _COMPATIBLE and isinstance(t.object, ox.Literal):
            datatype = t.object.datatype.value
            if datatype not in _COMPATIBLE[expected]:
                found.add(
                    LiteralClash(
                        t.subject.value, t.predicate.value, t.object.value, datatype, expected
                    )
                )
    return sorted(found, key=lambda c: (c.subject, c.prop, c.value))


def find_functional_clashes(triples: Iterable[ox.Triple | ox.Quad]) -> list[str]:
    """Readable notes on nodes with two different values of a functional data property."""
    statements = _triples(triples)
    functional = {
        t.subject.value
        for t in statements
        if t.predicate.value == RDF_TYPE and t.object.value == OWL + "FunctionalProperty"
    }
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t in statements:
        if t.predicate.value in functional and isinstance(t.object, ox.Literal):
            values[(t.subject.value, t.predicate.value)].add(t.object.value)
    return [
        f"{compact(s)} has {len(v)} different values for {compact(p)} ({', '.join(sorted(v))}), "
        "which allows only one."
        for (s, p), v in sorted(values.items())
        if len(v) > 1
    ]


def describe_literal_clash(c: LiteralClash) -> str:
    kind = compact(c.datatype)
    if c.datatype == PREFIXES["rdf"] + "langString":
        kind = "language-tagged text"
    return (
        f"{compact(c.subject)} has {compact(c.prop)} {c.value!r} as {kind}, but the range of "
        f"{compact(c.prop)} is {compact(c.range)}."
    )


def compact(iri: str) -> str:
    return curie(iri) or f"<{iri}>"


def describe_clash(c: Clash) -> str:
    def why(cls: str, via: tuple[str, str | None, str | None]) -> str:
        kind, other, prop = via
        if kind == "range":
            return (
                f"is used as the {compact(prop or '')} of {compact(other or '')} "
                f"(whose range is {compact(cls)})"
            )
        if kind == "domain":
            return f"has a {compact(prop or '')} (whose domain is {compact(cls)})"
        return f"is declared a {compact(cls)}"

    return (
        f"{compact(c.node)} {why(c.class_b, c.via_b)} but {why(c.class_a, c.via_a)}; "
        f"{compact(c.disjoint_a)} and {compact(c.disjoint_b)} are disjoint."
    )


def _explain(
    consistent: bool,
    clashes: list[Clash],
    literal_clashes: list[LiteralClash],
    unsatisfiable: list[str],
    functional_clashes: Sequence[str] = (),
) -> str:
    if consistent:
        if unsatisfiable:
            return "Consistent, but these classes can have no members: " + ", ".join(
                compact(c) for c in unsatisfiable
            )
        return "Consistent."
    if clashes or literal_clashes:
        return "Inconsistent: " + " ".join(
            [describe_clash(c) for c in clashes]
            + [describe_literal_clash(c) for c in literal_clashes]
        )
    if functional_clashes:
        return "Inconsistent: " + " ".join(functional_clashes)
    return (
        "Inconsistent, but no node typed into two disjoint classes was found; look for "
        "cardinality, functional-property or datatype-range conflicts among the latest edits."
    )
