"""OWL 2 DL reasoning with HermiT (through owlready2): consistency and classification.

HermiT only says *that* the knowledge base is inconsistent, never why, so this module also looks
for the usual curation mistake behind it: a node that is typed (directly, or through the domain
or range of a property it is used with) into two disjoint classes.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import owlready2
import pyoxigraph as ox

from service.kb.sources import PREFIXES, PlainTriple, Statement, Term, curie, plain_triples

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
    reused: bool = False  # the answer of an identical earlier input (see _cached_run)
    cache_entry: tuple[str, str] | None = None  # (file, JSON) to keep once the build succeeds


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


def _triples(statements: Iterable[Statement]) -> list[PlainTriple]:
    return plain_triples(statements)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
TEMP_PREFIX = "cmpkg-hermit-"


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """In the forked JVM before exec: the kernel kills it when the build process dies, even
    by SIGKILL (no Python cleanup runs then, and HermiT would keep reasoning on its own).
    `signum` is what the kernel sends (a Python child may ask for SIGTERM, to clean up)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@contextlib.contextmanager
def _jvm_bound_to(tmp: str) -> Iterator[None]:
    """While HermiT runs: its JVM dies with this process, and owlready2's own temporary
    ontology file goes into `tmp` (owlready2 deletes it only on success, so an inconsistent
    ontology or a crash would leave it in /tmp otherwise)."""
    from owlready2 import reasoning

    kwargs = reasoning._subprocess_kargs
    saved_kwargs, saved_tempdir = dict(kwargs), tempfile.tempdir
    if sys.platform.startswith("linux"):
        parent = os.getpid()
        kwargs["preexec_fn"] = lambda: die_with_parent(parent)
    tempfile.tempdir = tmp  # the build runs HermiT from one thread; restored below
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        kwargs.clear()
        kwargs.update(saved_kwargs)


_RUNNING: set[str] = set()  # this process's HermiT temporary directories


@contextlib.contextmanager
def _running_in(tmp: str) -> Iterator[None]:
    _RUNNING.add(tmp)
    try:
        yield
    finally:
        _RUNNING.discard(tmp)


def remove_running_temporaries() -> None:
    """For a process about to end without unwinding: its HermiT runs' directories."""
    for tmp in list(_RUNNING):
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_run_dirs(directory: Path | None = None) -> list[Path]:
    """Temporary directories of HermiT runs whose process is gone (a build killed by
    SIGKILL cannot clean up after itself; the next one does)."""
    removed = []
    for path in Path(directory or tempfile.gettempdir()).glob(TEMP_PREFIX + "*"):
        pid = path.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_hermit(triples: Iterable[Statement]) -> HermitResult:
    """Check consistency and classify the named classes of the given statements with HermiT."""
    if not _java_available():
        raise JavaNotFoundError(
            "HermiT needs a Java runtime and none was found on PATH "
            "(install one, e.g. Debian `default-jre-headless`, or run with --no-reasoner)."
        )
    statements = _triples(triples)
    started = time.perf_counter()
    world = owlready2.World()
    remove_stale_run_dirs()
    with (
        tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp,
        _running_in(tmp),
        _jvm_bound_to(tmp),
    ):
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
    world: owlready2.World, statements: list[PlainTriple]
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


_Via = tuple[str, str | None, str | None]  # how a node got a type: (kind, subject, property)


def find_disjointness_clashes(triples: Iterable[Statement]) -> list[Clash]:
    """Nodes typed into two disjoint classes, directly or via rdfs:domain / rdfs:range."""
    statements = _triples(triples)
    by_pred: dict[str, list[PlainTriple]] = defaultdict(list)
    for t in statements:
        by_pred[t.predicate.value].append(t)
    ancestors = _ancestry(by_pred[RDFS_SUBCLASS])
    disjoint = _disjoint_pairs(by_pred)
    clashes: set[Clash] = set()
    for node, types in _typings(statements, by_pred).items():
        clashes |= _clashes_of(node, types, ancestors, disjoint)
    # One clash per (node, offending use) is enough for a curator.
    best: dict[tuple[str, tuple], Clash] = {}
    for c in sorted(clashes, key=lambda c: (c.node, c.via_b, c.class_a, c.class_b)):
        best.setdefault((c.node, c.via_b), c)
    return sorted(best.values(), key=lambda c: (c.node, c.via_b[1] or "", c.via_b[2] or ""))


def _ancestry(subclass_of: list[PlainTriple]) -> Callable[[str], set[str]]:
    """cls -> itself and every named superclass (rdfs:subClassOf is transitive)."""
    parents: dict[str, set[str]] = defaultdict(set)
    for t in subclass_of:
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

    return ancestors


def _disjoint_pairs(by_pred: Mapping[str, list[PlainTriple]]) -> set[frozenset[str]]:
    """owl:disjointWith pairs plus every pair of each owl:AllDisjointClasses member list."""
    disjoint: set[frozenset[str]] = {
        frozenset((t.subject.value, t.object.value))
        for t in by_pred[OWL_DISJOINT]
        if isinstance(t.object, ox.NamedNode)
    }
    rest: dict[Term, Term] = {t.subject: t.object for t in by_pred[RDF_REST]}
    first: dict[Term, Term] = {t.subject: t.object for t in by_pred[RDF_FIRST]}
    all_disjoint = {t.subject for t in by_pred[RDF_TYPE] if t.object.value == OWL_ALL_DISJOINT}
    for t in by_pred[OWL_MEMBERS]:
        if t.subject not in all_disjoint:
            continue
        members, cell = [], t.object
        while cell in first:  # walk the RDF list
            members.append(first[cell].value)
            cell = rest.get(cell, ox.NamedNode(RDF_NIL))
        disjoint |= {frozenset((a, b)) for a in members for b in members if a != b}
    return disjoint


def _typings(
    statements: list[PlainTriple], by_pred: Mapping[str, list[PlainTriple]]
) -> dict[str, dict[str, _Via]]:
    """node -> class -> the first way it got that type (asserted, or a domain/range use)."""
    domains = _named_objects(by_pred[RDFS_DOMAIN])
    ranges = _named_objects(by_pred[RDFS_RANGE])
    typings: dict[str, dict[str, _Via]] = defaultdict(dict)
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
    return typings


def _clashes_of(
    node: str,
    types: Mapping[str, _Via],
    ancestors: Callable[[str], set[str]],
    disjoint: set[frozenset[str]],
) -> set[Clash]:
    found: set[Clash] = set()
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
                found.add(Clash(node, a, b, hit[0], hit[1], via_a, via_b))
    return found


def _named_objects(triples: list[PlainTriple]) -> dict[str, str]:
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


def find_literal_clashes(triples: Iterable[Statement]) -> list[LiteralClash]:
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


def find_functional_clashes(triples: Iterable[Statement]) -> list[str]:
    """Readable notes on nodes with two different values of a functional data property."""
    statements = _triples(triples)
    functional = {
        t.subject.value
        for t in statements
        if t.predicate.value == RDF_TYPE and t.object == ox.NamedNode(OWL + "FunctionalProperty")
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


# --- HermiT on the ontology plus the instance types it needs --------------------------------
# The schema allows only subclass links, domains, ranges, disjointness, functional properties,
# unions and distinct terms (anything else: the whole input goes to HermiT). Under such a
# schema a data node's consistency depends only on its types (materialised by OWL RL) and on
# the values of its functional properties, each checked on the full data below; so one
# representative per distinct (types, properties used) stands for every data node like it.
_SUMMARY_BLOCKERS = {
    PREFIXES["rdfs"] + "subPropertyOf",
    *(OWL + name for name in (
        "Restriction", "onProperty", "someValuesFrom", "allValuesFrom", "hasValue",
        "maxCardinality", "minCardinality", "cardinality", "maxQualifiedCardinality",
        "minQualifiedCardinality", "qualifiedCardinality", "hasKey", "oneOf", "inverseOf",
        "propertyChainAxiom", "complementOf", "intersectionOf", "disjointUnionOf",
        "propertyDisjointWith", "equivalentProperty", "sameAs", "differentFrom",
        "TransitiveProperty", "SymmetricProperty", "AsymmetricProperty", "ReflexiveProperty",
        "IrreflexiveProperty", "InverseFunctionalProperty", "NegativePropertyAssertion",
        "withRestrictions", "onDatatype", "datatypeComplementOf",
    )),
}  # fmt: skip
SUMMARY_NS = "urn:cmpkg:hermit-summary:"


def summary_blocker(schema: Sequence[ox.Triple], data: Sequence[ox.Triple]) -> str | None:
    """Why HermiT must see the whole input (None when the summary is exact)."""
    return _schema_blocker(schema) or _DataScan(schema, data).blocker


def _schema_blocker(schema: Sequence[ox.Triple]) -> str | None:
    for t in schema:
        if t.predicate.value in _SUMMARY_BLOCKERS or (
            t.predicate.value == RDF_TYPE and str(t.object).strip("<>") in _SUMMARY_BLOCKERS
        ):
            return f"the ontology uses {compact(t.predicate.value)} {t.object}"
    if find_literal_clashes(schema):
        return "a literal outside its property's range"
    return None


_HARMLESS = {RDFS_LABEL, PREFIXES["rdfs"] + "comment", PREFIXES["rdfs"] + "seeAlso"}


def _typed(schema: Iterable[ox.Triple], cls: str) -> set[ox.NamedNode]:
    node = ox.NamedNode(cls)
    return {t.subject for t in schema if t.predicate.value == RDF_TYPE and t.object == node}  # type: ignore[misc]


class _DataScan:
    """One pass over the data nodes (not the schema's terms): what would make the summary
    inexact (the blocker), and each node's statements, grouped by subject, for summarize().
    At a million triples the separate passes this replaces were most of the HermiT stage."""

    def __init__(
        self, schema: Sequence[ox.Triple], data: Iterable[ox.Triple], terms: Collection = ()
    ) -> None:
        self.blocker: str | None = None
        self.about_terms: list[ox.Triple] = []  # statements whose subject is in `terms`
        self.functional = _typed(schema, OWL + "FunctionalProperty")
        ranged = plain_triples(t for t in schema if t.predicate.value == RDFS_RANGE)
        declared = _named_objects(ranged)
        self.ranges = {ox.NamedNode(p): r for p, r in declared.items() if r in _COMPATIBLE}
        self._roles: dict[ox.NamedNode, tuple[bool, bool, str | None]] = {}
        self._seen_classes: set[object] = set()
        values: dict[tuple, object] = {}
        # The statements themselves, not (predicate, object) pairs: at a million triples the
        # pairs and their fresh term objects were 0.7 GB more.
        by_subject: dict[object, list[ox.Triple]] = {}
        self.by_subject = by_subject
        # The hot loop of the stage at a million triples: one lookup per predicate (its roles)
        # and per subject (its list) where there were several.
        roles, literal = self._roles, ox.Literal
        for t in data:
            s, p, o = t.subject, t.predicate, t.object
            statements = by_subject.get(s)
            if statements is None:
                if s in terms:
                    self.about_terms.append(t)
                    continue
                statements = by_subject[s] = []
            statements.append(t)
            role = roles.get(p)
            if role is None:
                role = self._first_use(p)
            is_type, is_functional, expected = role
            if is_type and o not in self._seen_classes:
                self._first_class(o)
            if is_functional and values.setdefault((s, p), o) != o:
                self._block(f"two values of functional {compact(p.value)}: {s}")
            if (
                expected is not None
                and isinstance(o, literal)
                and o.datatype.value not in _COMPATIBLE[expected]
            ):
                self._block("a literal outside its property's range")

    def _first_use(self, p: ox.NamedNode) -> tuple[bool, bool, str | None]:
        """A predicate's roles (rdf:type, functional, its datatype range), worked out once."""
        if p.value.startswith((OWL, PREFIXES["rdfs"])) and p.value not in _HARMLESS:
            self._block(f"data states schema with {compact(p.value)}")
        role = (p.value == RDF_TYPE, p in self.functional, self.ranges.get(p))
        self._roles[p] = role
        return role

    def _first_class(self, o: object) -> None:
        self._seen_classes.add(o)
        if isinstance(o, ox.NamedNode) and o.value.startswith((OWL, PREFIXES["rdfs"])):
            self._block(f"data states schema: a node typed {compact(o.value)}")

    def differs(self, other: _DataScan) -> bool:
        """Whether the schema-derived checks differ (functional properties, ranges)."""
        return self.functional != other.functional or self.ranges != other.ranges

    def _block(self, why: str) -> None:
        if self.blocker is None:  # the first reason found is the one given
            self.blocker = why


_XSD_NS = PREFIXES["xsd"]
# One valid value per datatype stands for every literal of it: HermiT then sees the same
# summary whatever the figures are, so an edited figure reuses its answer (_cached_run).
_STAND_INS = {
    **{_XSD_NS + n: "0" for n in ("decimal", "integer", "nonNegativeInteger", "int", "long",
                                 "double", "float", "short", "unsignedInt")},
    _XSD_NS + "positiveInteger": "1",
    _XSD_NS + "boolean": "true",
    _XSD_NS + "string": "s",
    _XSD_NS + "date": "2000-01-01",
    _XSD_NS + "dateTime": "2000-01-01T00:00:00",
    _XSD_NS + "gYear": "2000",
    _XSD_NS + "anyURI": "urn:x",
}  # fmt: skip


def _stand_in(literal: ox.Literal) -> ox.Literal:
    if literal.language:
        return ox.Literal("s", language=literal.language)
    value = _STAND_INS.get(literal.datatype.value)
    return literal if value is None else ox.Literal(value, datatype=literal.datatype)


def summarize(schema: Sequence[ox.Triple], data: Sequence[ox.Triple]) -> list[ox.Triple]:
    """The schema plus one representative per kind of data node (see above).

    `data` is asserted + inferred logical statements (OWL RL types included). Terms the schema
    describes keep their own names; other nodes map to `urn:cmpkg:hermit-summary:<hash>` of
    their sorted types and properties. Annotations (labels) say nothing to HermiT and go.
    """
    return _summary(schema, _DataScan(schema, data).by_subject)


def _summary(
    schema: Sequence[ox.Triple], by_subject: Mapping[object, list[ox.Triple]]
) -> list[ox.Triple]:
    annotation = _typed(schema, OWL + "AnnotationProperty") | {
        ox.NamedNode(RDFS_LABEL),
        ox.NamedNode(PREFIXES["rdfs"] + "comment"),
    }
    functional = _typed(schema, OWL + "FunctionalProperty")
    terms = {t.subject for t in schema} | {
        t.object for t in schema if isinstance(t.object, ox.NamedNode)
    }
    rep = _representatives(by_subject, terms, annotation)
    out: set[ox.Triple] = set(schema)
    # Each slot of the summary is filled once: one value per functional property, one literal
    # per property and datatype (the values themselves were checked on the full data by the
    # scan), every other (property, object) once per representative.
    # A slot keeps its smallest value, not the first seen: the data's order (the rules' output
    # among it) varies with the process's hash seed, and a summary that varied with it would
    # miss the build cache in every new process (`cmpkg build` after an edit).
    slots: dict[tuple, ox.Triple] = {}
    literal = ox.Literal
    for node, statements in by_subject.items():
        subject = rep.get(node, node)
        for t in statements:
            p, o = t.predicate, t.object
            if p in annotation:
                continue
            is_literal = isinstance(o, literal)
            if p in functional:
                slot: tuple = (subject, p)
            elif is_literal:
                slot = (subject, p, o.datatype, o.language)  # type: ignore[union-attr]
            else:
                slot = (subject, p, rep.get(o, o))
                if slot in slots:
                    continue  # its value is the slot's own
            kept = slots.get(slot)
            obj = _stand_in(o) if is_literal else rep.get(o, o)  # type: ignore[arg-type]
            if kept is None or str(obj) < str(kept.object):
                slots[slot] = ox.Triple(subject, p, obj)  # type: ignore[arg-type]
    out.update(slots.values())
    return sorted(out, key=str)


def _representatives(
    by_subject: Mapping[object, list[ox.Triple]],
    terms: set,
    annotation: set[ox.NamedNode],
) -> dict[object, ox.NamedNode]:
    """Each data node not named by the schema -> the summary node of its kind (its sorted
    types and properties), so nodes of one kind collapse into one."""
    rep: dict[object, ox.NamedNode] = {}
    kinds: dict[tuple[frozenset, frozenset], ox.NamedNode] = {}
    rdf_type = ox.NamedNode(RDF_TYPE)
    for node, statements in by_subject.items():
        if node in terms:
            continue
        predicates = [t.predicate for t in statements]
        types = frozenset(t.object for t, p in zip(statements, predicates, strict=True)
                          if p == rdf_type)  # fmt: skip
        props = frozenset(p for p in predicates if p != rdf_type and p not in annotation)
        if not types and not props:
            continue  # only annotations: the node is in no statement of the summary
        named = kinds.get((types, props))
        if named is None:
            kind = "\n".join(sorted(map(str, types))) + "\n\n" + "\n".join(sorted(map(str, props)))
            named = ox.NamedNode(SUMMARY_NS + hashlib.md5(kind.encode()).hexdigest())
            kinds[(types, props)] = named
        rep[node] = named
    return rep


def _cached_run(triples: list[ox.Triple], cache_dir: Path | None) -> HermitResult:
    """HermiT on `triples`, reusing the answer of an identical earlier input.

    A one-claim edit usually leaves the summary unchanged (same kinds of nodes), so the
    rebuild skips the JVM. Only consistent answers are kept: a failure is always recomputed.
    """
    if cache_dir is None:
        return run_hermit(triples)
    digest = hashlib.sha256()
    # The reasoner and this module are part of the key: a new version recomputes.
    digest.update(f"owlready2 {getattr(owlready2, 'VERSION', '?')}\n".encode())
    digest.update(Path(__file__).read_bytes())
    # Blank nodes (OWL lists) are named afresh on every parse: canonical labels (RDFC-1.0)
    # make the key depend on the content only.
    blanks = ox.Dataset()
    lines = []
    for t in triples:
        if isinstance(t.subject, ox.BlankNode) or isinstance(t.object, ox.BlankNode):
            blanks.add(ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()))
        else:
            lines.append(f"{t}\n")
    blanks.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    lines += [f"{q.triple}\n" for q in blanks]
    digest.update("".join(sorted(lines)).encode())
    path = cache_dir / f"hermit-{digest.hexdigest()}.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return HermitResult(
            consistent=True,
            inferred_subclass_of=[tuple(pair) for pair in saved["inferred_subclass_of"]],
            explanation=saved["explanation"],
            seconds=0.0,
            reused=True,
        )
    except (OSError, ValueError, KeyError):
        pass
    result = run_hermit(triples)
    if result.consistent and not result.unsatisfiable:
        # Written by the build only once its artifact is in place (save_cache_entry): a
        # failed build leaves nothing behind.
        payload = {
            "inferred_subclass_of": result.inferred_subclass_of,
            "explanation": result.explanation,
        }
        result.cache_entry = (str(path), json.dumps(payload))
    return result


def save_cache_entry(result: HermitResult) -> None:
    """Keep a consistent answer for the next build (best effort: a cache that cannot be
    written only costs the next build its HermiT run)."""
    if result.cache_entry is None:
        return
    path = Path(result.cache_entry[0])
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob("hermit-*.json"):  # one entry: the last good input
            old.unlink(missing_ok=True)
        tmp.write_text(result.cache_entry[1], encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)


def run_hermit_summarized(
    schema: Sequence[ox.Triple], data: Sequence[ox.Triple], cache_dir: Path | None = None
) -> tuple[HermitResult, str | None]:
    """HermiT on the summary when it is exact, else (or when the summary is inconsistent, to
    name the nodes) on everything; returns the result and why the full input ran, if it did."""
    # Statements about the terms (OWL RL's subclass closure, a data file's label on a term)
    # belong with the schema: kept whole, never summarised.
    terms = {t.subject for t in schema} | {
        t.object for t in schema if isinstance(t.object, ox.NamedNode)
    }
    scan = _DataScan(schema, data, terms)
    schema = [*schema, *scan.about_terms]

    def rest() -> list[ox.Triple]:  # the data nodes' statements, only when needed
        return [t for t in data if t.subject not in terms]

    if scan.about_terms and _DataScan(schema, ()).differs(scan):
        # A data file declared a term functional or gave it a range: scan again with them.
        scan = _DataScan(schema, rest())
    why = _schema_blocker(schema) or scan.blocker
    if why is None:
        result = _cached_run(_summary(schema, scan.by_subject), cache_dir)
        if result.consistent and not result.unsatisfiable:
            return result, None
        why = "the summary is inconsistent: checking the full input to name the nodes"
    return run_hermit([*schema, *rest()]), why
