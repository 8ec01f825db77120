"""What a rule's WHERE reads, from rdflib's parse of it: the predicates (so a rule reruns only
when one of them was written) and, per triple pattern, the patterns that must hold with it in
any solution (so a rerun is skipped when no newly written triple can take part in one).

Both are conservative: where the analysis does not know a construct, it says "anything".
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.kb.sources import PREFIXES

RDF_TYPE_IRI = PREFIXES["rdf"] + "type"
# What a rule's WHERE can match: predicate IRIs, and `type:` + class for rdf:type patterns with
# a fixed class; None when it matches any predicate (a variable in predicate position).
TYPE_KEY = "type:"


def _parse(query: str, prefixes: dict[str, str]) -> Any | None:
    from rdflib.plugins.sparql import prepareQuery

    prologue = "".join(f"PREFIX {k}: <{v}>\n" for k, v in prefixes.items())
    try:
        return prepareQuery(prologue + query).algebra
    except Exception:  # rdflib's parser raises several kinds; any of them means "unknown"
        return None


def rule_reads(query: str, prefixes: dict[str, str]) -> frozenset[str] | None:
    """The predicates (and typed classes) a rule's WHERE reads, from its parsed algebra.

    A rule need not run again in a stratum's next round unless the last round wrote one of
    these; None means "anything" (variable predicates, negated paths, an unparsable text)."""
    algebra = _parse(query, prefixes)
    if algebra is None:
        return None
    reads: set[str] = set()
    return frozenset(reads) if _walk_algebra(algebra.get("p"), reads) else None


def _path_iris(path: object, reads: set[str]) -> bool:
    """Add the IRIs of a property path to `reads`; False when it can match any predicate."""
    from rdflib.paths import AlternativePath, InvPath, MulPath, NegatedPath, SequencePath
    from rdflib.term import URIRef, Variable

    if isinstance(path, URIRef):
        reads.add(str(path))
        return True
    if isinstance(path, SequencePath | AlternativePath):
        return all(_path_iris(a, reads) for a in path.args)
    if isinstance(path, MulPath):
        return _path_iris(path.path, reads)
    if isinstance(path, InvPath):
        return _path_iris(path.arg, reads)
    return not isinstance(path, NegatedPath | Variable)


def _walk_algebra(node: object, reads: set[str]) -> bool:
    """Collect what the patterns under `node` read; False when something reads anything."""
    from rdflib.plugins.sparql.parserutils import CompValue
    from rdflib.term import URIRef

    if isinstance(node, CompValue) and node.name in ("BGP", "TriplesBlock"):
        # A BGP holds (s, p, o) tuples; the untranslated pattern of an EXISTS inside an
        # expression (FILTER, BIND) is a TriplesBlock of flat [s, p, o, s, p, o, ...] lists.
        flat = [x for t in node.get("triples") or [] for x in t]
        for p, o in zip(flat[1::3], flat[2::3], strict=True):
            if str(p) == RDF_TYPE_IRI and isinstance(o, URIRef):
                reads.add(TYPE_KEY + str(o))
            elif not _path_iris(p, reads):
                return False
    if isinstance(node, dict):  # CompValue is a dict too; the CONSTRUCT template is output
        return all(_walk_algebra(v, reads) for k, v in node.items() if k != "template")
    if isinstance(node, list | tuple):
        return all(_walk_algebra(v, reads) for v in node)
    return True


# --- relevance: which new triples can take part in a solution -----------------------------------
Pattern = tuple[str, str, str]  # one triple pattern in SPARQL syntax (terms as N3)


@dataclass(frozen=True)
class Alternatives:
    """A UNION: every solution matches all the patterns of one of its branches."""

    branches: tuple[tuple[Condition, ...], ...]


Condition = Pattern | Alternatives


@dataclass(frozen=True)
class ReadPattern:
    """One triple pattern of a rule's WHERE, keyed as rule_reads keys it, with what every
    solution that uses a match of it also matches (its join partners in the same group, the
    left side of the OPTIONAL it sits in, the group an EXISTS filters, the outer query a
    subquery joins through its projected variables). `pattern` is None for a property path:
    any new triple with one of its predicates counts."""

    keys: frozenset[str]
    pattern: Pattern | None
    context: tuple[Condition, ...]


def sparql_group(conditions: Iterable[Condition]) -> str:
    """Conditions as the body of a SPARQL group graph pattern."""
    out: list[str] = []
    for c in conditions:
        if isinstance(c, Alternatives):
            branches = " UNION ".join("{ " + sparql_group(b) + " }" for b in c.branches)
            out.append("{ " + branches + " }")
        else:
            out.append(" ".join(c) + " .")
    return " ".join(out)


class _Unknown(Exception):
    """A construct the relevance analysis does not model: the rule is then always rerun."""


# The analysis of every shipped rule, stored: the build then parses no rule (rdflib takes
# ~0.2 s a rule). Keyed by the query text, so an edited rule misses and is parsed instead;
# tests/test_rules.py fails, with the command to regenerate it, when the file is not current.
PATTERNS_FILE = Path("ontology") / "rules" / "read-patterns.json"
_MISSING = object()


@functools.lru_cache(maxsize=256)
def read_patterns(
    query: str, prefixes_key: tuple[tuple[str, str], ...]
) -> tuple[ReadPattern, ...] | None:
    """Every triple pattern the rule's WHERE reads, with its context (stored, else parsed);
    None when the query uses something the analysis does not model."""
    from service.kb.sources import project_root

    stored = _stored(project_root() / PATTERNS_FILE).get(_key(query, prefixes_key), _MISSING)
    if stored is not _MISSING:
        return None if stored is None else tuple(_decode_read(r) for r in stored)
    return analyse(query, prefixes_key)


def analyse(
    query: str, prefixes_key: tuple[tuple[str, str], ...]
) -> tuple[ReadPattern, ...] | None:
    """read_patterns from rdflib's parse of the query.

    Why it is sound: a new triple t changes a rule's result only if some evaluation matches
    t against one of its patterns P under a binding that reaches the result, and then all of
    P's context holds under that binding in the store that has t. So when, for every P, no
    new triple matches P together with P's context in the current store, the rule would
    derive exactly what it derived before (negation and aggregates included: a match inside
    NOT EXISTS, an OPTIONAL or a group is such a match as well)."""
    algebra = _parse(query, dict(prefixes_key))
    if algebra is None:
        return None
    walker = _Walker()
    try:
        walker.walk(algebra.get("p"), ())
    except _Unknown:
        return None
    return tuple(walker.found)


def patterns_file_text(queries: Iterable[str], prefixes_key: tuple[tuple[str, str], ...]) -> str:
    """What PATTERNS_FILE holds for these rule queries: one line per read pattern."""
    entries: list[str] = []
    for key, query in sorted((_key(q, prefixes_key), q) for q in set(queries)):
        found = analyse(query, prefixes_key)
        if found is None:
            entries.append(f"{json.dumps(key)}: null")
            continue
        lines = ",\n".join("  " + json.dumps(_encode_read(r), sort_keys=True) for r in found)
        entries.append(f"{json.dumps(key)}: [\n{lines}\n]")
    return "{\n" + ",\n".join(entries) + "\n}\n"


def _key(query: str, prefixes_key: tuple[tuple[str, str], ...]) -> str:
    return hashlib.sha256(json.dumps([query, prefixes_key]).encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _stored(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _encode(c: Condition) -> Any:
    if isinstance(c, Alternatives):
        return {"union": [[_encode(x) for x in b] for b in c.branches]}
    return list(c)


def _decode(c: Any) -> Condition:
    if isinstance(c, dict):
        return Alternatives(tuple(tuple(_decode(x) for x in b) for b in c["union"]))
    return (c[0], c[1], c[2])


def _encode_read(r: ReadPattern) -> Any:
    return {
        "keys": sorted(r.keys),
        "pattern": None if r.pattern is None else list(r.pattern),
        "context": [_encode(c) for c in r.context],
    }


def _decode_read(r: Any) -> ReadPattern:
    pattern = r["pattern"]
    return ReadPattern(
        frozenset(r["keys"]),
        None if pattern is None else (pattern[0], pattern[1], pattern[2]),
        tuple(_decode(c) for c in r["context"]),
    )


_PASS_THROUGH = ("Filter", "Extend", "Distinct", "Reduced", "Slice", "OrderBy", "ToMultiSet")


class _Walker:
    def __init__(self) -> None:
        self.found: list[ReadPattern] = []
        self._fresh = 0
        self._bnodes: dict[str, str] = {}

    def certain(self, node: Any) -> tuple[Condition, ...]:
        """What every solution of `node` matches (variables as in scope above `node`)."""
        name = getattr(node, "name", None)
        if name == "BGP":
            patterns = (_pattern(t, self._bnodes) for t in node.triples)
            return tuple(p for p in patterns if p is not None)
        if name == "Join":
            return self.certain(node.p1) + self.certain(node.p2)
        if name in ("LeftJoin", "Minus", "AggregateJoin") or name in _PASS_THROUGH:
            return self.certain(node.p1 if name in ("LeftJoin", "Minus") else node.p)
        if name == "Union":
            left, right = self.certain(node.p1), self.certain(node.p2)
            return (Alternatives((left, right)),) if left and right else ()
        if name == "Project":
            return self._rename_apart(self.certain(node.p), _projected(node))
        if name == "Group":
            # Each group has at least one input row only when there are group keys (an
            # implicit group over nothing is one row of aggregates over nothing).
            return self.certain(node.p) if node.expr else ()
        return ()  # inline values, anything else: nothing certain (sound, merely weaker)

    def walk(self, node: Any, context: tuple[Condition, ...]) -> None:
        from rdflib.plugins.sparql.parserutils import CompValue

        if node is None or getattr(node, "name", None) == "values" or isinstance(node, list):
            return  # nothing, or inline VALUES rows
        if not isinstance(node, CompValue):
            raise _Unknown(repr(node))
        step = getattr(self, "_" + node.name, None)
        if step is None:
            if node.name not in _PASS_THROUGH:
                raise _Unknown(node.name)  # GRAPH, SERVICE, ...: in no rule today
            self.walk(node.p, context)
            if node.name in ("Filter", "Extend"):
                self._expression(node.expr, context + self.certain(node.p))
            return
        step(node, context)

    def _BGP(self, node: Any, context: tuple[Condition, ...]) -> None:
        here = self.certain(node)
        for t in node.triples:
            self._read(t, context + here)

    def _Join(self, node: Any, context: tuple[Condition, ...]) -> None:
        self.walk(node.p1, context + self.certain(node.p2))
        self.walk(node.p2, context + self.certain(node.p1))

    def _LeftJoin(self, node: Any, context: tuple[Condition, ...]) -> None:
        left = self.certain(node.p1)
        self.walk(node.p1, context)
        self.walk(node.p2, context + left)
        self._expression(node.expr, context + left + self.certain(node.p2))

    def _Minus(self, node: Any, context: tuple[Condition, ...]) -> None:
        self.walk(node.p1, context)
        self.walk(node.p2, context + self.certain(node.p1))

    def _Union(self, node: Any, context: tuple[Condition, ...]) -> None:
        self.walk(node.p1, context)
        self.walk(node.p2, context)

    def _Group(self, node: Any, context: tuple[Condition, ...]) -> None:
        self.walk(node.p, context)

    def _AggregateJoin(self, node: Any, context: tuple[Condition, ...]) -> None:
        self.walk(node.p, context)
        self._expression(node.A, context + self.certain(node.p))

    def _Project(self, node: Any, context: tuple[Condition, ...]) -> None:
        # A subquery: only its projected variables are the outer query's.
        self.walk(node.p, self._rename_apart(context, _projected(node)))

    def _expression(self, expr: Any, context: tuple[Condition, ...]) -> None:
        """The (NOT) EXISTS patterns inside an expression: evaluated with the outer binding."""
        from rdflib.plugins.sparql.algebra import translateGroupGraphPattern
        from rdflib.plugins.sparql.parserutils import CompValue

        if isinstance(expr, CompValue):
            if expr.name in ("Builtin_EXISTS", "Builtin_NOTEXISTS"):
                graph = expr.graph
                if graph.name == "GroupGraphPatternSub":
                    graph = translateGroupGraphPattern(graph)
                self.walk(graph, context)
                return
            for value in expr.values():
                self._expression(value, context)
        elif isinstance(expr, list | tuple):
            for value in expr:
                self._expression(value, context)

    def _read(self, triple: tuple, context: tuple[Condition, ...]) -> None:
        from rdflib.term import URIRef, Variable

        _s, p, o = triple
        pattern = _pattern(triple, self._bnodes)
        if pattern is None or not isinstance(p, URIRef | Variable):  # a property path
            keys: set[str] = set()
            if not _path_iris(p, keys):
                raise _Unknown("a path that matches any predicate")
            self.found.append(ReadPattern(frozenset(keys), None, ()))
            return
        if not isinstance(p, URIRef):
            raise _Unknown("a variable predicate")
        key = TYPE_KEY + str(o) if str(p) == RDF_TYPE_IRI and isinstance(o, URIRef) else str(p)
        rest = tuple(c for c in context if c != pattern)
        self.found.append(ReadPattern(frozenset([key]), pattern, rest))

    def _rename_apart(
        self, conditions: Iterable[Condition], keep: frozenset[str]
    ) -> tuple[Condition, ...]:
        """The conditions with every variable not in `keep` renamed to one no other scope uses."""
        self._fresh += 1
        tag = f"_s{self._fresh}_"

        def term(t: str) -> str:
            return t if not t.startswith("?") or t in keep else "?" + tag + t[1:]

        def rename(c: Condition) -> Condition:
            if isinstance(c, Alternatives):
                return Alternatives(tuple(tuple(rename(x) for x in b) for b in c.branches))
            return (term(c[0]), term(c[1]), term(c[2]))

        return tuple(rename(c) for c in conditions)


def _projected(node: Any) -> frozenset[str]:
    return frozenset("?" + str(v) for v in node.PV or ())


def _pattern(triple: tuple, bnodes: dict[str, str]) -> Pattern | None:
    """A triple pattern in SPARQL syntax (its predicate may be a property path); None when a
    term has no SPARQL form here (a negated path)."""
    from rdflib.term import BNode, Literal, URIRef, Variable

    out: list[str] = []
    for term in triple:
        if isinstance(term, Variable):
            out.append("?" + str(term))
        elif isinstance(term, BNode):  # `[]` in a WHERE is a variable; named in parse order
            out.append(bnodes.setdefault(str(term), f"?_b{len(bnodes) + 1}"))
        elif isinstance(term, URIRef | Literal):
            out.append(term.n3())
        else:
            path = _path_sparql(term)
            if path is None:
                return None
            out.append(path)
    return (out[0], out[1], out[2])


def _path_sparql(path: object) -> str | None:
    """A property path in SPARQL syntax, every step parenthesised; None for a negated path."""
    from rdflib.paths import AlternativePath, InvPath, MulPath, SequencePath
    from rdflib.term import URIRef

    if isinstance(path, URIRef):
        return path.n3()
    if isinstance(path, SequencePath | AlternativePath):
        parts = [_path_sparql(a) for a in path.args]
        if any(p is None for p in parts):
            return None
        return "(" + ("/" if isinstance(path, SequencePath) else "|").join(parts) + ")"  # type: ignore[arg-type]
    if isinstance(path, MulPath):
        inner = _path_sparql(path.path)
        return None if inner is None else f"({inner}){path.mod}"
    if isinstance(path, InvPath):
        inner = _path_sparql(path.arg)
        return None if inner is None else f"^({inner})"
    return None
