"""Reasoning: OWL 2 RL closure, then the domain rules of ontology/rules/ to a fixpoint.

Rules are data (one Turtle file each, `rule:<id> a cmp:Rule ; sh:construct "..."`); this module
only runs them. Every inferred statement is explainable: rules emit their own provenance (derived
nodes carry prov:wasGeneratedBy / prov:wasDerivedFrom; the statements a rule adds about a node it
did not mint get one derivation record per rule and node, naming the rule, the properties and the
premises), and OWL RL entailments get such a record naming `rule:owl2-rl`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyoxigraph as ox
import rdflib

from service.kb.rule_analysis import (
    PATTERNS_FILE,
    TYPE_KEY,
    patterns_file_text,
    read_patterns,
    sparql_group,
)
from service.kb.rule_analysis import rule_reads as _rule_reads
from service.kb.rule_memo import Entry, RuleMemo, keys_of, lines_by_key
from service.kb.sources import (
    NS,
    PREFIXES,
    parse_file,
    plain_triples,
    project_root,
    solutions,
    to_rdflib_graph,
)

DERIVATION_NS = PREFIXES["derivation"]
RULE_NS = PREFIXES["rule"]
CMP = PREFIXES["cmp"]
RDF = PREFIXES["rdf"]
RDFS = PREFIXES["rdfs"]
OWL = PREFIXES["owl"]
PROV = PREFIXES["prov"]
SH = PREFIXES["sh"]

RDF_TYPE = ox.NamedNode(RDF + "type")
OWL_RL_RULE = ox.NamedNode(RULE_NS + "owl2-rl")
HERMIT_RULE = ox.NamedNode(RULE_NS + "hermit-classification")
PROV_GENERATED_BY = ox.NamedNode(PROV + "wasGeneratedBy")
PROV_USED = ox.NamedNode(PROV + "used")
# A derivation record: one per (rule, node), see ontology/rules/rule-vocabulary.ttl.
DERIVATION = ox.NamedNode(CMP + "Derivation")
DERIVED_SUBJECT = ox.NamedNode(CMP + "derivedSubject")
DERIVED_PROPERTY = ox.NamedNode(CMP + "derivedProperty")

# Prefixes every rule may use without declaring them (rule files hold only the query text).
RULE_PREFIXES: dict[str, str] = {**PREFIXES, "deriv": DERIVATION_NS}


def peak_rss_mib(reset: bool = True) -> float:
    """This process's peak resident memory since the last reset (Linux; 0 elsewhere), then
    reset it, so each build stage reports its own peak."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    peak = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:")), 0)
    if reset:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to current RSS
    return round(peak / 1024, 1)


class RuleError(Exception):
    """A rule that cannot run (bad SPARQL) or that breaks the output contract (blank nodes)."""


@dataclass(frozen=True)
class Rule:
    iri: str
    label: str
    order: int
    query: str | None  # None for reasoner steps (OWL RL, HermiT) described as rules
    # What the rule file declares its WHERE reads (cmp:reads, cmp:readsType), in rule_reads'
    # terms; None when it declares nothing (then the query is parsed for it).
    declared_reads: frozenset[str] | None = None

    @property
    def id(self) -> str:
        return self.iri.removeprefix(RULE_NS)


@dataclass
class ReasoningResult:
    inferred: list[ox.Triple]
    owl_rl_count: int  # entailments kept from the OWL RL closure (before their records)
    per_rule: dict[str, int] = field(default_factory=dict)  # new triples each rule added
    rule_seconds: dict[str, float] = field(default_factory=dict)  # time each rule took, all rounds
    rounds: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    owl_rl_fallback: str | None = None  # why the full OWL RL closure ran, if it did
    peaks: dict[str, float] = field(default_factory=dict)  # peak RSS (MiB) per step


def rule_files(root: Path | None = None) -> list[Path]:
    root = root or project_root()
    return sorted((root / "ontology" / "rules").glob("*.ttl"))


def load_rules(statements: Iterable[ox.Triple | ox.Quad]) -> list[Rule]:
    """The rules described in the given statements, in run order (order, then IRI)."""
    store = ox.Store()
    store.extend(ox.Quad(s.subject, s.predicate, s.object, ox.DefaultGraph()) for s in statements)
    rows = store.query(
        """SELECT ?r (SAMPLE(?l) AS ?label) (SAMPLE(?o) AS ?order) (SAMPLE(?q) AS ?query) WHERE {
             ?r a cmp:Rule .
             OPTIONAL { ?r rdfs:label ?l }
             OPTIONAL { ?r cmp:order ?o }
             OPTIONAL { ?r sh:construct ?q }
           } GROUP BY ?r""",
        prefixes=RULE_PREFIXES,
    )
    declared: dict[str, set[str]] = defaultdict(set)
    for row in solutions(
        store.query(
            """SELECT ?r ?p ?c WHERE { ?r a cmp:Rule .
                 { ?r cmp:reads ?p } UNION { ?r cmp:readsType ?c } }""",
            prefixes=RULE_PREFIXES,
        )
    ):
        read = row["p"].value if row["p"] else _TYPE_KEY + row["c"].value
        declared[row["r"].value].add(read)
    rules = [
        Rule(
            iri=row["r"].value,
            label=row["label"].value if row["label"] else row["r"].value,
            order=int(row["order"].value) if row["order"] else 50,
            query=row["query"].value if row["query"] else None,
            declared_reads=frozenset(declared[row["r"].value])
            if row["r"].value in declared
            else None,
        )
        for row in solutions(rows)
    ]
    return sorted(rules, key=lambda r: (r.order, r.iri))


def reads_of(rule: Rule) -> frozenset[str] | None:
    """What the rule reads: its file's declaration (checked against the parsed query by
    tests/test_rules.py), else the parse, which costs ~0.1 s of rdflib per rule."""
    if rule.declared_reads is not None:
        return rule.declared_reads
    return rule_reads(rule.query or "")


# --- OWL 2 RL ----------------------------------------------------------------------------------
def _is_ours(term: object) -> bool:
    return isinstance(term, ox.NamedNode) and term.value.startswith(NS)


_SCHEMA_RESTATEMENTS = {RDFS + "domain", RDFS + "range"}


def keep_entailment(t: ox.Triple) -> bool:
    """Whether an OWL RL entailment says something new about our own IRIs.

    Drops the axiomatic noise of a closure: reflexive statements (x sameAs x, C subClassOf C),
    typing into OWL/RDF built-ins (owl:Thing, owl:NamedIndividual, rdfs:Resource), anything
    about blank nodes or built-in vocabulary.
    """
    if not _is_ours(t.subject) or t.subject == t.object:
        return False
    # Widened domains/ranges (OWL RL scm-dom*/scm-rng*: P domain C, C subClassOf D => P domain
    # D) are redundant schema restatements: every type they give follows from the declared
    # domain plus the subclass links, which are kept. `reasonable` does not emit them; owlrl does.
    if t.predicate.value in _SCHEMA_RESTATEMENTS:
        return False
    return _is_ours(t.object) or isinstance(t.object, ox.Literal)


def _from_rdflib(term: rdflib.term.Node) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    if isinstance(term, rdflib.URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, rdflib.BNode):
        return ox.BlankNode(str(term))
    assert isinstance(term, rdflib.Literal), term  # a closure holds IRIs, blank nodes, literals
    if term.language:
        return ox.Literal(str(term), language=term.language)
    if term.datatype:
        return ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype)))
    return ox.Literal(str(term))


def owl_rl_entailments(triples: Sequence[ox.Triple], engine: str = "reasonable") -> list[ox.Triple]:
    """New, non-trivial OWL 2 RL entailments of `triples`, sorted.

    `reasonable` (Rust) is the fast default; `owlrl` (pure Python) is the reference
    implementation the tests compare it with on the shipped data.
    """
    graph = to_rdflib_graph(triples)
    given = set(graph)
    if engine == "reasonable":
        import reasonable

        reasoner = reasonable.PyReasoner()
        reasoner.from_graph(graph)
        closure = reasoner.reason()
    elif engine == "owlrl":
        import owlrl

        owlrl.DeductiveClosure(
            owlrl.OWLRL_Semantics, axiomatic_triples=False, datatype_axioms=False
        ).expand(graph)
        closure = list(graph)
    else:
        raise ValueError(f"unknown OWL RL engine {engine!r}")
    found: set[ox.Triple] = set()
    for s, p, o in closure:
        # Cheap rdflib-level filter first: closures are mostly built-in and given triples.
        # owlrl also works in generalised RDF (literal subjects), which says nothing of ours.
        if not (isinstance(s, rdflib.URIRef) and isinstance(p, rdflib.URIRef)):
            continue
        if not s.startswith(NS) or (s, p, o) in given:
            continue
        t = ox.Triple(ox.NamedNode(str(s)), ox.NamedNode(str(p)), _from_rdflib(o))
        if keep_entailment(t):
            found.add(t)
    return sorted(found, key=str)


# The OWL RL fast path: the schema's closure by the reasoner, then the only entailments the
# schema can give about instance data (types from rdf:type, rdfs:domain and rdfs:range through
# the subclass closure) computed directly. Exact for schemas that use only these constructs;
# anything else (sub/inverse/transitive properties, restrictions, keys, schema statements in
# data/, two values of a functional object property) falls back to the full closure.
_RDFS_SCO, _RDFS_DOMAIN, _RDFS_RANGE = RDFS + "subClassOf", RDFS + "domain", RDFS + "range"
_SCHEMA_PREDICATES = {
    _RDFS_SCO, _RDFS_DOMAIN, _RDFS_RANGE, RDFS + "subPropertyOf",
    *(OWL + name for name in (
        "equivalentClass", "equivalentProperty", "inverseOf", "disjointWith", "members",
        "distinctMembers", "unionOf", "intersectionOf", "oneOf", "complementOf", "onProperty",
        "someValuesFrom", "allValuesFrom", "hasValue", "maxCardinality", "minCardinality",
        "cardinality", "maxQualifiedCardinality", "qualifiedCardinality", "onClass",
        "propertyChainAxiom", "hasKey", "sameAs", "differentFrom", "propertyDisjointWith",
        "disjointUnionOf", "complementOf", "sourceIndividual", "assertionProperty",
    )),
    RDF + "first", RDF + "rest",
}  # fmt: skip
# Schema constructs whose RL rules produce something beyond types through domain, range and
# subclass links (or about our IRIs at all): the fast path does not implement them.
_UNSUPPORTED_SCHEMA = {
    RDFS + "subPropertyOf",
    *(OWL + name for name in (
        "equivalentProperty", "inverseOf", "intersectionOf", "oneOf", "onProperty", "hasKey",
        "propertyChainAxiom", "sameAs", "TransitiveProperty", "SymmetricProperty",
        "InverseFunctionalProperty", "Restriction", "complementOf",
    )),
}  # fmt: skip
_FUNCTIONAL = OWL + "FunctionalProperty"
_FUNCTIONAL_NODE = ox.NamedNode(_FUNCTIONAL)


def _schema_blocker(schema: Sequence[ox.Triple]) -> str | None:
    """Why the fast path would not be exact for this schema (None when it is)."""
    for t in schema:
        if t.predicate.value in _UNSUPPORTED_SCHEMA or (
            t.predicate == RDF_TYPE and str(t.object).strip("<>") in _UNSUPPORTED_SCHEMA
        ):
            return f"schema uses {t.predicate.value if t.predicate != RDF_TYPE else t.object}"
    return None


class _SchemaTypes:
    """What the schema closure says about types: superclasses, and the types a property's
    domain (for its subjects) or range (for its objects) gives, each with its superclasses."""

    def __init__(self, closure: Iterable[ox.Triple]) -> None:
        self.supers: dict[ox.NamedNode, set[ox.NamedNode]] = defaultdict(set)
        domains: dict[ox.NamedNode, set[ox.NamedNode]] = defaultdict(set)
        ranges: dict[ox.NamedNode, set[ox.NamedNode]] = defaultdict(set)
        by_predicate = {_RDFS_SCO: self.supers, _RDFS_DOMAIN: domains, _RDFS_RANGE: ranges}
        for t in closure:
            # A union range is a blank node: RL types into it say nothing of ours.
            target = by_predicate.get(t.predicate.value)
            if target is not None and isinstance(t.object, ox.NamedNode):
                target[t.subject].add(t.object)  # type: ignore[index]
        self.by_domain = {p: self.with_supers(cs) for p, cs in domains.items()}
        self.by_range = {p: self.with_supers(cs) for p, cs in ranges.items()}

    def with_supers(self, classes: Iterable[ox.NamedNode]) -> set[ox.NamedNode]:
        out: set[ox.NamedNode] = set()
        for c in classes:
            out.add(c)
            out |= self.supers.get(c, set())
        return out

    def of_reasons(self, reasons: frozenset[tuple[str, object]]) -> set[ox.NamedNode]:
        """The types one node's reasons give: ("type", class), ("domain", p), ("range", p)."""
        out: set[ox.NamedNode] = set()
        for kind, term in reasons:
            if kind == "type":
                out |= self.with_supers([term])  # type: ignore[list-item]
            else:
                out |= (self.by_domain if kind == "domain" else self.by_range).get(term, set())  # type: ignore[call-overload]
        return out


class _DataScan:
    """One pass over the instance data: what would take it outside the fast path, and why each
    node has a type (cax-sco, prp-dom, prp-rng). Each node's reasons are few and shared by
    many nodes (every claim uses the same properties), so types are worked out per distinct
    set of reasons, not per statement."""

    def __init__(self, schema: Sequence[ox.Triple], types: _SchemaTypes) -> None:
        functional = {
            t.subject for t in schema if t.predicate == RDF_TYPE and t.object == _FUNCTIONAL_NODE
        }
        self.blocker: str | None = None
        self.reasons: dict[object, set[tuple[str, object]]] = defaultdict(set)
        self._values: dict[tuple, object] = {}
        self._types, self._functional = types, functional
        # Per predicate seen: (is rdf:type, the reason its domain gives the subject, the
        # reason its range gives the object, is functional); the reasons made once.
        self._roles: dict[ox.NamedNode, _Role] = {}
        self._seen_classes: set[object] = set()
        for t in schema:  # a functional property's value may be stated in the schema too
            if t.predicate in functional:
                self._value(t.subject, t.predicate, t.object)

    def _value(self, s: object, p: ox.NamedNode, o: object) -> None:
        if isinstance(o, ox.Literal) or self.blocker is not None:
            return
        if self._values.setdefault((s, p), o) != o:  # prp-fp: the two values would be sameAs
            self.blocker = f"two values of functional {p}: {s}"

    def scan(self, data: Iterable[ox.Triple]) -> None:
        # The hot loop of the stage at a million triples: one lookup per predicate, and each
        # term read from the triple only when needed (every read makes a Python object).
        roles, reasons = self._roles, self.reasons
        for t in data:
            p = t.predicate
            role = roles.get(p)
            if role is None:
                role = self._first_use(p)
            is_type, domain, range_, functional = role
            if is_type:
                o = t.object
                reasons[t.subject].add(("type", o))
                if o not in self._seen_classes:
                    self._first_type(o)
            if domain is not None:
                reasons[t.subject].add(domain)
            if range_ is not None or functional:
                self._object(t, p, range_, functional)

    def _object(
        self, t: ox.Triple, p: ox.NamedNode, range_: tuple[str, object] | None, functional: bool
    ) -> None:
        o = t.object
        if not isinstance(o, ox.Literal):
            if range_ is not None:
                self.reasons[o].add(range_)
            if functional:
                self._value(t.subject, p, o)

    def _first_use(self, p: ox.NamedNode) -> _Role:
        if p.value in _SCHEMA_PREDICATES and self.blocker is None:
            self.blocker = f"data states schema with {p}"
        role = (
            p == RDF_TYPE,
            ("domain", p) if p in self._types.by_domain else None,
            ("range", p) if p in self._types.by_range else None,
            p in self._functional,
        )
        self._roles[p] = role
        return role

    def _first_type(self, o: object) -> None:
        self._seen_classes.add(o)
        if isinstance(o, ox.NamedNode) and o.value.startswith((OWL, RDFS)) and self.blocker is None:
            self.blocker = f"data states schema: a node typed {o}"


_Role = tuple[bool, tuple[str, object] | None, tuple[str, object] | None, bool]


def owl_rl_fast(
    schema: Sequence[ox.Triple], data: Sequence[ox.Triple], engine: str = "reasonable"
) -> tuple[list[ox.Triple], str | None]:
    """The OWL RL entailments `owl_rl_entailments(schema + data)` gives, computed from the
    schema closure plus instance typing (one pass over the data); returns (entailments,
    fallback reason or None). Unsorted: the writer sorts."""
    why = _schema_blocker(schema)
    if why is not None:
        return owl_rl_entailments([*schema, *data], engine), why
    closure = set(owl_rl_entailments(schema, engine)) | set(schema)
    types = _SchemaTypes(closure)
    scan = _DataScan(schema, types)
    scan.scan(data)
    if scan.blocker is not None:
        return owl_rl_entailments([*schema, *data], engine), scan.blocker
    given_schema = set(schema)
    # Schema entailments the data restates are not new; a data statement is a schema one only
    # when it is a type (anything else sent the build to the full closure above).
    found = {
        t
        for t in closure
        if t not in given_schema
        and keep_entailment(t)
        and not (t.predicate == RDF_TYPE and ("type", t.object) in scan.reasons.get(t.subject, ()))
    }
    by_reasons: dict[frozenset, list[ox.NamedNode]] = {}
    for node, reasons in scan.reasons.items():
        if not isinstance(node, ox.NamedNode) or not _is_ours(node):
            continue
        key = frozenset(reasons)
        classes = by_reasons.get(key)
        if classes is None:
            asserted = {term for kind, term in reasons if kind == "type"}
            classes = by_reasons[key] = [
                c for c in types.of_reasons(key) if c not in asserted and _is_ours(c)
            ]
        for c in classes:
            if c != node:  # keep_entailment: no reflexive statement
                t = ox.Triple(node, RDF_TYPE, c)
                if t not in given_schema:
                    found.add(t)
    return list(found), None


def derivation_records(triples: Iterable[ox.Triple], rule: ox.NamedNode) -> list[ox.Triple]:
    """One record per node the rule said something about (no premises known): the rule, the
    node and the properties of what was derived, as the domain rules write theirs."""
    properties: dict[ox.NamedNode, set[ox.NamedNode]] = defaultdict(set)
    for t in plain_triples(triples):
        properties[t.subject].add(t.predicate)  # type: ignore[index]
    out: list[ox.Triple] = []
    for subject, predicates in properties.items():
        node = derivation_iri(rule, subject)
        out += [
            ox.Triple(node, RDF_TYPE, DERIVATION),
            ox.Triple(node, DERIVED_SUBJECT, subject),
            ox.Triple(node, PROV_GENERATED_BY, rule),
        ]
        out += [ox.Triple(node, DERIVED_PROPERTY, p) for p in sorted(predicates, key=str)]
    return out


def derivation_iri(rule: ox.NamedNode, subject: ox.NamedNode) -> ox.NamedNode:
    """The record's IRI, as the rules mint it: `deriv:` + MD5 of "<rule> <subject>"."""
    key = f"{rule.value} {subject.value}"
    return ox.NamedNode(DERIVATION_NS + hashlib.md5(key.encode()).hexdigest())


# --- domain rules ------------------------------------------------------------------------------
# Where a run's new triples are put when needs_rerun asks about them (one graph per run).
SCRATCH = ox.NamedNode("urn:cmpkg:rule-output")
_NT = ox.RdfFormat.N_TRIPLES
# A run whose output has at most this many lines is checked against the store triple by
# triple; a larger one against a hash of every line the store holds, built once per call
# (a few seconds at a million triples: worth it for the build, not for one prescription).
LOOKUP_LIMIT = 5000
# Queries of one round run on this many threads: the machine's two cores (more only adds
# queries that may have to run again, see run_rules).
RULE_THREADS = 2

Graph = ox.NamedNode | ox.DefaultGraph


def _derive(store: ox.Store, rule: Rule, graphs: Sequence[Graph]) -> list[bytes]:
    """What the rule's CONSTRUCT derives over `graphs`: its distinct N-Triples lines, made
    in Rust (no triple becomes a Python object). Nothing is written to the store."""
    named = [g for g in graphs if isinstance(g, ox.NamedNode)]
    # One default graph is read as it is; a union of several makes each pattern a lookup
    # per graph, so it is asked for only when the rules read several.
    dataset: dict[str, list[ox.NamedNode | ox.BlankNode | ox.DefaultGraph]] = (
        {}
        if list(graphs) == [ox.DefaultGraph()]
        else {"default_graph": [*graphs], "named_graphs": [*named]}
    )
    try:
        answer = store.query(rule.query or "", prefixes=RULE_PREFIXES, **dataset)  # type: ignore[arg-type]
    except SyntaxError as err:
        raise RuleError(f"{rule.iri}: {err}") from None
    # The answer must not outlive this call in a traceback: it may run on a worker thread,
    # and pyoxigraph refuses to free it on another.
    try:
        data = answer.serialize(format=_NT) if isinstance(answer, ox.QueryTriples) else None
    finally:
        del answer
    if data is None:
        raise RuleError(f"{rule.iri}: not a CONSTRUCT query")
    if b"_:" in data:  # rare (a literal may say "_:"): then each triple is looked at
        blank = next(
            (
                q.triple
                for q in ox.parse(data, format=_NT)
                if isinstance(q.subject, ox.BlankNode) or isinstance(q.object, ox.BlankNode)
            ),
            None,
        )
        if blank is not None:
            raise RuleError(f"{rule.iri} produced a blank node: {blank}")
    # A CONSTRUCT may give one triple several times (once per solution).
    return list(dict.fromkeys(data.split(b"\n")[:-1]))


class _Known:
    """Which derived lines the store already holds in the graphs the rules read. Serialised
    terms are the store's own (a query's output and a dump decode the same stored terms),
    so two lines are equal exactly when the triples are; a hash hit is confirmed in the store."""

    def __init__(self, store: ox.Store, graphs: Sequence[Graph], limit: int) -> None:
        self.store, self.graphs, self.limit = store, graphs, limit
        self.hashes: set[int] | None = None

    def _held(self, lines: list[bytes]) -> set[bytes]:
        """The lines (each one triple) the store holds in one of the graphs."""
        if not lines:
            return set()
        triples = ox.parse(b"\n".join(lines), format=_NT)
        return {
            line
            for line, t in zip(lines, triples, strict=True)
            if any(
                next(self.store.quads_for_pattern(t.subject, t.predicate, t.object, g), None)
                is not None
                for g in self.graphs
            )
        }

    def new(self, lines: list[bytes]) -> list[bytes]:
        """The lines not yet in the store; the caller adds them to it (and so to `self`)."""
        if self.hashes is None and len(lines) > self.limit:
            self.hashes = {
                hash(line)
                for g in self.graphs
                for line in (self.store.dump(format=_NT, from_graph=g) or b"").split(b"\n")
            }
        hashes = self.hashes
        held = self._held(lines if hashes is None else [x for x in lines if hash(x) in hashes])
        new = [x for x in lines if x not in held] if held else lines
        if hashes is not None:
            hashes.update(map(hash, new))
        return new


def _by_key(lines: Iterable[bytes]) -> dict[str, bytes]:
    """The lines grouped by what they write (rule_memo.lines_by_key), each group N-Triples."""
    return {k: b"\n".join(group) + b"\n" for k, group in lines_by_key(lines).items()}


_TYPE_KEY = TYPE_KEY
_PREFIXES_KEY = tuple(RULE_PREFIXES.items())  # in order: rdflib keeps the last prefix of an IRI


@functools.lru_cache(maxsize=256)
def rule_reads(query: str) -> frozenset[str] | None:
    """The predicates (and typed classes) a rule's WHERE reads (see rule_analysis)."""
    return _rule_reads(query, RULE_PREFIXES)


def _affected(reads: frozenset[str] | None, written: set[str]) -> bool:
    if reads is None:
        return True
    if RDF + "type" in reads and any(w.startswith(_TYPE_KEY) for w in written):
        return True
    return bool(reads & written)


@dataclass
class _Run:
    """One rule run that derived something: exactly what was new, as N-Triples grouped by
    what each line writes (see _by_key), and the graph that holds the groups needs_rerun
    has asked about (most are never asked about: a graph of every run cost a second insert
    of every derived triple)."""

    groups: dict[str, bytes]
    graph: ox.NamedNode
    loaded: set[str] = field(default_factory=set)

    @property
    def written(self) -> frozenset[str]:
        """The predicates and `type:` classes of the new triples (as _affected reads them)."""
        typed = any(k.startswith(_TYPE_KEY) for k in self.groups)
        return frozenset([*self.groups, *([RDF + "type"] if typed else [])])

    def holding(self, store: ox.Store, key: str) -> ox.NamedNode:
        """The run's graph, holding (at least) its new triples that a pattern keyed `key`
        can match: those of the key, or every typing statement for a pattern on rdf:type."""
        wanted = [
            k
            for k in self.groups
            if k not in self.loaded
            and (k == key or (key == RDF + "type" and k.startswith(_TYPE_KEY)))
        ]
        if wanted:
            lines = b"".join(self.groups[k] for k in wanted)
            store.load(lines, format=_NT, to_graph=self.graph, lenient=True)
            self.loaded.update(wanted)
        return self.graph


def needs_rerun(
    store: ox.Store,
    rule: Rule,
    since: Sequence[_Run],
    graphs: Sequence[Graph],
    by_predicate_only: bool = False,
) -> bool:
    """Whether a triple derived since the rule last ran (`since`: those runs, its own
    included) can take part in its result, so running it again could derive more.

    First by predicate (what the rule declares it reads); then, for the patterns that read a
    written predicate, by asking the store whether a new triple matches the pattern together
    with the patterns that must hold with it (rule_analysis.read_patterns): a body's new
    label cannot change a rule that reads the labels of modalities, outcomes and conditions
    only. Runs that would derive nothing are skipped; the fixpoint is the same.
    `by_predicate_only` is the first test alone (the reference the tests compare with)."""
    written = {w for run in since for w in run.written}
    if not written or not _affected(reads_of(rule), written):
        return False
    patterns = None if by_predicate_only else read_patterns(rule.query or "", _PREFIXES_KEY)
    if patterns is None:
        return True
    dataset: list[ox.NamedNode | ox.BlankNode | ox.DefaultGraph] = [*graphs]
    for read in patterns:
        if not _affected(read.keys, written):
            continue
        if read.pattern is None:
            return True  # a property path over a written predicate
        (key,) = read.keys
        new = " ".join(f"<{run.holding(store, key).value}>" for run in since)
        context = sparql_group(read.context)
        s, p, o = read.pattern
        ask = f"ASK {{ VALUES ?new_ {{ {new} }} GRAPH ?new_ {{ {s} {p} {o} }} {context} }}"
        if store.query(ask, default_graph=dataset):
            return True
    return False


def _add(store: ox.Store, new: list[bytes], target: Graph, runs: list[_Run]) -> bytes:
    """Load a run's new lines (some) into `target`, note the run; the lines loaded."""
    groups = _by_key(new)
    lines = b"".join(groups.values())
    # Our own serialiser's output: no need to validate it again.
    store.load(lines, format=_NT, to_graph=target, lenient=True)
    runs.append(_Run(groups, ox.NamedNode(f"{SCRATCH.value}/{len(runs) + 1}")))
    return lines


def _parse(lines: bytes) -> list[ox.Triple]:
    # Our own serialiser's output again; the parser gives quads (in the default graph).
    return [q.triple for q in ox.parse(lines, format=_NT, lenient=True)]


class _Engine:
    """The state of one run_rules call: what the store holds (`known`), the runs that derived
    something, and the new lines still to be parsed for the caller."""

    def __init__(
        self,
        store: ox.Store,
        graphs: list[Graph],
        target: Graph,
        lookup_limit: int,
        reruns_by_predicate: bool,
        seconds: dict[str, float] | None,
        outputs: list[ox.Triple] | None,
        memo: RuleMemo | None = None,
    ) -> None:
        self.store, self.graphs, self.target = store, graphs, target
        self.outputs = outputs
        self.memo = memo
        # For the memo, while a stratum runs: its runs' new lines and the keys they wrote.
        self.run_texts: list[tuple[str, bytes]] = []
        self.writes: set[str] = set()
        self.added: set[str] = set()
        self.known = _Known(store, graphs, lookup_limit)
        self.by_predicate = reruns_by_predicate
        self.seconds = seconds
        self.runs: list[_Run] = []
        self.last_run: dict[str, int] = {}  # per rule: how many runs had derived before its last
        self.per_rule: dict[str, int] = {}
        self.waiting: list[bytes] = []  # runs' new lines not yet parsed into `outputs`
        # run_rules' `changed` (then every line this call derives), or None: see skip_unchanged.
        self.changed: list[bytes] | None = None
        self.unchanged: set[str] = set()  # rules whose next query would derive nothing new

    def collect(self) -> None:
        if self.changed is not None:
            self.changed += self.waiting
        if self.outputs is not None:
            for lines in self.waiting:
                self.outputs.extend(_parse(lines))
        self.waiting.clear()

    def timed(self, rule: Rule) -> tuple[list[bytes], float]:
        if rule.id in self.unchanged:  # known without running it (skip_unchanged)
            self.unchanged.discard(rule.id)
            return [], 0.0
        # CPU time of the thread that runs the query: wall time overlaps on two threads.
        started = time.thread_time()
        return _derive(self.store, rule, self.graphs), time.thread_time() - started

    def round(self, pending: Sequence[Rule], pool: ThreadPoolExecutor | None) -> None:
        """One round of a stratum: the queries start at once on the pool's threads (a query
        leaves the GIL while it runs), and while they run the last round's output is parsed;
        what they derive is checked and loaded in rule order."""
        self.skip_unchanged([rule for rule in pending if rule.id not in self.last_run])
        futures = [pool.submit(self.timed, rule) for rule in pending] if pool else []
        self.collect()
        round_start = len(self.runs)
        for i, rule in enumerate(pending):
            lines, took = futures[i].result() if futures else self.timed(rule)
            started = time.thread_time()
            # Run serially, the rule would have seen what the rules before it in this round
            # derived; its query may have run before that was loaded. Kept only when none of
            # it can take part in the result (needs_rerun's test), so the result is the serial
            # one; else the rule runs again now.
            before = self.runs[round_start:]
            if before and needs_rerun(self.store, rule, before, self.graphs, self.by_predicate):
                lines, _again = self.timed(rule)  # counted below, as this thread's time
            self.last_run[rule.id] = len(self.runs)
            if self.memo is not None:
                self.writes |= keys_of(lines)
            new = self.known.new(lines)
            if new:
                self.waiting.append(_add(self.store, new, self.target, self.runs))
                if self.memo is not None:
                    self.run_texts.append((rule.id, self.waiting[-1]))
                    self.added.update(self.runs[-1].groups)
            self.per_rule[rule.id] = self.per_rule.get(rule.id, 0) + len(new)
            if self.seconds is not None:
                spent = took + time.thread_time() - started
                self.seconds[rule.id] = self.seconds.get(rule.id, 0.0) + spent

    def skip_unchanged(self, first: Sequence[Rule]) -> None:
        """Of the rules about to run for the first time (`first`), note in `unchanged` those
        whose query would derive nothing new, when run_rules was told what is `changed`.

        Why that is exact: the caller guarantees that the premises P are at the rules'
        fixpoint except for `changed` (every rule's result over P is already in P). The store
        now holds P plus X: `changed` and everything this call derived before this round.
        When no triple of X can take part in a rule's result (needs_rerun's test, whose
        soundness rule_analysis.analyse argues: a rule's result changes only through a new
        triple matching one of its patterns with that pattern's context), its result is its
        result over P, all of it in the store: running it derives nothing new, so `timed`
        returns that answer without running it. What the rules before it in this round
        derive is then checked by round's own keep-or-rerun test, as for a query that ran
        before they were loaded. Every query that runs, every rerun decision and every count
        is therefore the full run's; only queries known to give nothing are not run."""
        if self.changed is None or not first:
            return
        lines = [x for blob in [*self.changed, *self.waiting] for x in blob.split(b"\n") if x]
        seed = _Run(_by_key(lines), ox.NamedNode(f"{SCRATCH.value}/changed"))
        try:
            self.unchanged = {
                r.id
                for r in first
                if not needs_rerun(self.store, r, [seed], self.graphs, self.by_predicate)
            }
        finally:
            if seed.loaded:
                self.store.remove_graph(seed.graph)

    def stratum(self, stratum: Sequence[Rule], pool: ThreadPoolExecutor | None) -> int:
        """Run one stratum to its fixpoint, or replay the memo's runs of it; the rounds."""
        memo = self.memo
        if memo is None:
            return self._run_stratum(stratum, pool)
        order = stratum[0].order
        key = memo.stratum_key(
            [(r.iri, r.query or "", reads_of(r)) for r in stratum], RULE_PREFIXES
        )
        entry = memo.lookup(order, key)
        if entry is not None:
            # Loaded into the store only if a later stratum runs (see load_replayed).
            self.waiting += [lines for _rule, lines in entry.runs]
            memo.unloaded += [lines for _rule, lines in entry.runs]
            for rule, count in entry.per_rule.items():
                self.per_rule[rule] = self.per_rule.get(rule, 0) + count
            memo.advance(entry)
            return entry.rounds
        self.load_replayed()
        before, self.run_texts, self.writes, self.added = dict(memo.state), [], set(), set()
        rounds = self._run_stratum(stratum, pool)
        per_rule = {r.id: self.per_rule[r.id] for r in stratum}
        writes = {k: before.get(k, "") for k in self.writes}
        entry = Entry(key, writes, sorted(self.added), self.run_texts, per_rule, rounds)
        memo.keep(order, entry)
        memo.advance(entry)
        self.run_texts, self.writes, self.added = [], set(), set()
        return rounds

    def load_replayed(self) -> None:
        """Put the replayed strata's lines in the store, as their runs would have."""
        memo = self.memo
        if memo is None or not memo.unloaded:
            return
        for lines in memo.unloaded:
            self.store.load(lines, format=_NT, to_graph=self.target, lenient=True)
            if self.known.hashes is not None:
                self.known.hashes.update(map(hash, lines.split(b"\n")[:-1]))
        memo.unloaded = []

    def _run_stratum(self, stratum: Sequence[Rule], pool: ThreadPoolExecutor | None) -> int:
        pending, first, rounds = list(stratum), len(self.runs), 0
        while pending:
            rounds += 1
            self.round(pending, pool)
            pending = [
                r
                for r in stratum
                if needs_rerun(
                    self.store, r, self.runs[self.last_run[r.id] :], self.graphs, self.by_predicate
                )
            ]
        for run in self.runs[first:]:
            run.groups = {}  # only this stratum's reruns ask about its runs: memory back
        return rounds


def run_rules(
    store: ox.Store,
    rules: Sequence[Rule],
    premises: Sequence[Graph],
    target: Graph,
    seconds: dict[str, float] | None = None,
    outputs: list[ox.Triple] | None = None,
    reruns_by_predicate: bool = False,
    lookup_limit: int = LOOKUP_LIMIT,
    threads: int = RULE_THREADS,
    memo: RuleMemo | None = None,
    changed: Sequence[ox.Triple] | None = None,
) -> tuple[dict[str, int], int]:
    """Run the rules over `premises` + `target`, adding what is new to `target`, to a fixpoint.

    Rules run in strata by `cmp:order`; each stratum reaches its fixpoint before the next starts,
    so rules that aggregate (best certainty of a support) see complete inputs and never leave
    a stale partial answer behind. Within a stratum a rule runs again only while something
    derived since its last run can take part in its result (needs_rerun). Each rule runs as
    a query whose triples come back serialised; only the new ones are loaded, once, into
    `target` (an INSERT into a scratch graph, a delete of the known ones and a copy wrote
    every derived triple twice). A rule that fails writes nothing.
    `seconds`, when given, receives each rule's CPU seconds over all rounds (its queries, on
    whichever thread ran them, and the checks and loads of what they derived; for the profile).
    `outputs`, when given, receives every new triple once: each run's lines are parsed
    while the next round's queries run, so the build's collection overlaps the rules.
    `reruns_by_predicate` reruns a rule whenever a predicate it reads was written (the
    reference for needs_rerun, in the tests). `lookup_limit`: see LOOKUP_LIMIT (the tests
    vary it to run both ways of telling what is new). `threads`: how many of a round's
    queries may run at once (1: one after the other, the reference). `memo`, started on what
    the store holds (RuleMemo.start), replays each stratum whose input a kept entry matches
    (see rule_memo) and keeps the others' runs for the next build; the lines of the strata
    replayed after the last one that ran are left out of the store (`memo.unloaded`: the
    caller of a build needs them only as outputs).
    `changed`: the caller's promise that `premises` + `target` are at these rules' fixpoint
    except for these triples; then a rule none of whose results they (or what the rules
    derive from them) can change is not run (see _Engine.skip_unchanged), with the same
    result. None (or a blank node among them): every rule runs.
    """
    graphs: list[Graph] = list(dict.fromkeys([*premises, target]))
    engine = _Engine(
        store, graphs, target, lookup_limit, reruns_by_predicate, seconds, outputs, memo
    )
    engine.changed = _changed_lines(changed)
    engine.per_rule = {r.id: 0 for r in rules if r.query}

    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    rounds = 0
    try:
        for order in sorted({r.order for r in rules if r.query}):
            rounds += engine.stratum([r for r in rules if r.query and r.order == order], pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)  # after a failed rule: the queries not begun
        for run in engine.runs:
            if run.loaded:
                store.remove_graph(run.graph)
    engine.collect()
    return engine.per_rule, rounds


def _changed_lines(changed: Sequence[ox.Triple] | None) -> list[bytes] | None:
    """`changed` as N-Triples for needs_rerun's scratch graph; None when it cannot be used:
    a blank node loaded there would be a new node, never the store's."""
    if changed is None or any(
        not isinstance(t.subject, ox.NamedNode) or isinstance(t.object, ox.BlankNode | ox.Triple)
        for t in changed
    ):
        return None
    return [ox.serialize(changed, format=_NT) or b""]


def reason(
    ontology: Sequence[ox.Triple | ox.Quad],
    asserted: Sequence[ox.Triple | ox.Quad],
    rules: Sequence[Rule],
    owl_rl_engine: str = "reasonable",
    owl_rl_full: bool = False,
    threads: int = RULE_THREADS,
    memo: RuleMemo | None = None,
) -> ReasoningResult:
    """OWL RL closure of ontology + asserted, then the rules to a fixpoint; the inferred triples.
    `threads`: how many rule queries may run at once; `memo`: the strata a build may replay
    (see run_rules)."""
    onto = [s.triple if isinstance(s, ox.Quad) else s for s in ontology]
    data = [s.triple if isinstance(s, ox.Quad) else s for s in asserted]
    timings: dict[str, float] = {}

    started = time.perf_counter()
    fallback = None
    if owl_rl_engine == "none":  # benchmarks only: the step skipped
        entailed: list[ox.Triple] = []
    elif owl_rl_full:  # the reference: the whole closure of ontology + data
        entailed = owl_rl_entailments(onto + data, owl_rl_engine)
    else:
        entailed, fallback = owl_rl_fast(onto, data, owl_rl_engine)
    timings["owl_rl"] = time.perf_counter() - started
    peaks = {"owl_rl": peak_rss_mib()}

    started = time.perf_counter()
    # Rules read everything as one default graph (a union of named graphs made every
    # pattern several lookups).
    store = ox.Store()
    default = ox.DefaultGraph()
    # Serialised and loaded in Rust: a Quad built in Python per triple cost twice as much.
    loaded = ox.serialize([*onto, *data, *entailed], format=_NT)
    store.bulk_load(loaded, format=_NT, lenient=True)  # terms already checked as they were made
    if memo is not None:
        memo.start(loaded or b"")
    del loaded
    rule_seconds: dict[str, float] = {}
    derived: list[ox.Triple] = []
    per_rule, rounds = run_rules(
        store, rules, [], default, rule_seconds, outputs=derived, threads=threads, memo=memo
    )
    # Distinct by construction: each run's output holds only what the store did not have.
    inferred = list(entailed)
    inferred += derived
    # Lines of strata replayed after the last one that ran: derived, but not in the store.
    unloaded = {x for text in memo.unloaded for x in text.split(b"\n")} if memo else set()
    records = derivation_records(entailed, OWL_RL_RULE)
    inferred += _not_inferred(store, records, entailed, derived, unloaded)
    timings["rules"] = time.perf_counter() - started
    peaks["rules"] = peak_rss_mib()
    # Unsorted: the writer sorts the artifact's lines, and sorting millions of terms here
    # cost seconds for nothing.
    return ReasoningResult(
        inferred=inferred,
        owl_rl_count=len(entailed),
        per_rule=per_rule,
        rule_seconds=rule_seconds,
        rounds=rounds,
        timings=timings,
        owl_rl_fallback=fallback,
        peaks=peaks,
    )


def _not_inferred(
    store: ox.Store,
    records: Iterable[ox.Triple],
    entailed: Sequence[ox.Triple],
    derived: Sequence[ox.Triple],
    unloaded: set[bytes],
) -> list[ox.Triple]:
    """The records that are not already among the inferred triples (the entailments and the
    rules' outputs, some of them `unloaded` N-Triples lines the store lacks). Only a record
    the store holds somewhere needs the exact check."""
    out: list[ox.Triple] = []
    known: set[ox.Triple] | None = None
    for t in dict.fromkeys(records):
        if next(store.quads_for_pattern(t.subject, t.predicate, t.object, None), None) is None:
            if not unloaded or f"{t} .".encode() not in unloaded:
                out.append(t)
            continue
        if known is None:
            known = set(entailed)
            known.update(derived)
        if t not in known:
            out.append(t)  # an asserted statement that happens to be a record: still inferred
    return out


def load_rule_statements(root: Path | None = None) -> list[ox.Quad]:
    return [q for path in rule_files(root) for q in parse_file(path)]


def read_patterns_text(root: Path | None = None) -> str:
    """What ontology/rules/read-patterns.json must hold for the rules under `root`; write it
    after editing a rule with
    `.venv/bin/python -c "from service.kb.reasoning import write_read_patterns as w; w()"`."""
    rules = load_rules(load_rule_statements(root))
    return patterns_file_text([r.query for r in rules if r.query], _PREFIXES_KEY)


def write_read_patterns(root: Path | None = None) -> None:
    root = root or project_root()
    (root / PATTERNS_FILE).write_text(read_patterns_text(root), encoding="utf-8")


def is_record(node: object) -> bool:
    """A derivation record the build minted (never domain knowledge)."""
    return isinstance(node, ox.NamedNode) and node.value.startswith(DERIVATION_NS)


def is_provenance(t: ox.Triple) -> bool:
    """Statements that only record how something was derived (not domain knowledge)."""
    return is_record(t.subject) or t.predicate.value.startswith(PROV)
