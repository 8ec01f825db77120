"""The SHACL shapes compiled to SPARQL and run inside the pyoxigraph store.

A SHACL engine walks focus node by focus node; here each (shape, constraint component) is one
SELECT over all of that shape's focus nodes, which the store answers with its own indexes (the
value-based components of one property shape share one SELECT, which names the components each
value fails). The SHACL instances of every class the shapes name are written once into a private
named graph (INSTANCES), from which each query takes its focus nodes and sh:class its answer;
the working graphs are removed afterwards.

Only what shapes/*.ttl uses is compiled: node shapes with sh:targetClass holding sh:property,
sh:nodeKind and sh:sparql (SELECT without $PATH); property shapes with an IRI sh:path and
sh:minCount, sh:maxCount, sh:datatype, sh:class, sh:in, sh:or (of sh:datatype / sh:class
shapes), sh:minInclusive, sh:maxInclusive, sh:minLength, sh:pattern, sh:languageIn, sh:lessThan,
sh:lessThanOrEquals, sh:nodeKind. A node shape using anything else is left to the SHACL engine
(`Compiled.uncompiled`), which the caller reports. Tests compare the results with pySHACL's.

Each check also knows whether it is *local*: whether its answer for a focus node reads only
that node's own triples, the triples of the nodes it points to (one hop: a value's rdf:type)
and the schema. Only local checks may be restricted to the nodes a change touched.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Collection as Collection_
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

import pyoxigraph as ox
import rdflib
from pyshacl.rdfutil import stringify_node
from rdflib.collection import Collection
from rdflib.namespace import RDF, RDFS, SH

from service.vocab import NUMERIC_DATATYPES

# (node, INSTANCE_OF, class): SHACL instances (rdf:type/rdfs:subClassOf*) of the classes the
# shapes name, computed once: a path per value made sh:class the slowest check by far.
INSTANCES = ox.NamedNode("urn:cmpkg:shacl:instances")
INSTANCE_OF = ox.NamedNode("urn:cmpkg:shacl:instanceOf")
SCOPE = ox.NamedNode("urn:cmpkg:shacl:scope")  # (node, IN_SCOPE, IN_SCOPE): the nodes to check
IN_SCOPE = ox.NamedNode("urn:cmpkg:shacl:inScope")
_SH = str(SH)

# Predicates that describe a shape without constraining anything.
_ANNOTATIONS = {
    RDF.type,
    RDFS.label,
    RDFS.comment,
    SH.message,
    SH.severity,
    SH.name,
    SH.description,
    SH.order,
    SH.group,
}
_NODE_KEYS = _ANNOTATIONS | {SH.targetClass, SH.property, SH.sparql, SH.nodeKind}
_VALUE_COMPONENTS = {
    SH.minCount,
    SH.maxCount,
    SH.datatype,
    SH["class"],
    SH["in"],
    SH["or"],
    SH.minInclusive,
    SH.maxInclusive,
    SH.minLength,
    SH.pattern,
    SH.flags,
    SH.languageIn,
    SH.lessThan,
    SH.lessThanOrEquals,
    SH.nodeKind,
}
_PROPERTY_KEYS = _ANNOTATIONS | _VALUE_COMPONENTS | {SH.path}
_NODE_KINDS = {
    SH.IRI: "isIRI(?value)",
    SH.BlankNode: "isBlank(?value)",
    SH.Literal: "isLiteral(?value)",
    SH.BlankNodeOrIRI: "(isBlank(?value) || isIRI(?value))",
    SH.BlankNodeOrLiteral: "(isBlank(?value) || isLiteral(?value))",
    SH.IRIOrLiteral: "(isIRI(?value) || isLiteral(?value))",
}
_XSD = "http://www.w3.org/2001/XMLSchema#"
_STRINGS = {_XSD + "string", str(RDF.langString)}


@dataclass(frozen=True)
class Check:
    """One query over all focus nodes of a shape: one constraint component, or (a "values"
    check) every value-based component of one property shape, which then read the path's
    values once and name the components each value fails in ?failed (with one component,
    ?failed is left unbound: a filter alone is cheaper than building the text)."""

    shape: str  # reported as the rule: the property shape, node shape or SPARQL constraint
    components: tuple[str, ...]  # sh:sourceConstraintComponent (by index in ?failed)
    kind: str  # values | class | pair | min | max | node | sparql
    body: str  # the data pattern (for sparql: the whole query)
    severity: str  # Violation | Warning | Info
    messages: tuple[str, ...]
    path: str | None  # the property shape's path; SPARQL checks bind ?path themselves
    local: bool
    classes: tuple[str, ...] = ()  # the target classes of the shape (of all its node shapes)
    node_shape: str = ""  # node-level checks: whose targets the query reads

    this_bound: bool = False  # sparql: a top-level pattern binds $this (see reads_one_hop)
    # class: the pattern a conforming ?value matches (a values check of sh:class alone).
    conforms: str = ""
    whole_body: str = ""  # sparql: the query to run over all the data, if not `body` (MINUS)

    def query(self, scoped: bool, few: bool = False) -> tuple[str, bool]:
        """The SELECT, and whether its rows still need filtering to the focus nodes.

        On many focus nodes, a check whose pattern binds ?this itself reads the data alone
        and the few failing rows are then kept if they are focus nodes (a join with the
        targets in the query cost as much as the check). On a scope, or on `few` focus nodes
        (the terms, among thousands of labelled nodes), the targets come first."""
        classes = " ".join(f"<{c}>" for c in self.classes)
        targets = (
            f"{{ SELECT DISTINCT ?this WHERE {{ VALUES ?cmpkgClass {{ {classes} }} "
            f"GRAPH <{INSTANCES.value}> {{ ?this <{INSTANCE_OF.value}> ?cmpkgClass }} }} }}"
        )
        if scoped and self.local:
            targets += f" GRAPH <{SCOPE.value}> {{ ?this <{IN_SCOPE.value}> ?cmpkgIn }}"
        whole = not scoped and not few
        if self.kind == "sparql":
            body = self.whole_body if whole and self.whole_body else self.body
            where = re.search(r"\bWHERE\s*\{", body, re.IGNORECASE)
            assert where is not None  # checked when compiled
            inserted = "" if whole and self.this_bound else f" {targets}\n"
            text = body[: where.end()] + inserted + body[where.end() :]
            return re.sub(r"\$this\b", "?this", text), whole and self.this_bound
        if self.kind in ("values", "class", "pair"):
            out = "?this ?value ?failed" if self.kind == "values" else "?this ?value"
            pattern = self.body
            if self.kind == "class":
                # Over all the data, the instances are read once into a hash (MINUS) rather
                # than looked up for each value: half the time at a million triples.
                pattern += f" {'MINUS' if whole else 'FILTER NOT EXISTS'} {{ {self.conforms} }}"
            if whole:
                return f"SELECT DISTINCT {out} WHERE {{ {pattern} }}", True
            return f"SELECT DISTINCT {out} WHERE {{ {targets} {pattern} }}", False
        if self.kind == "max":
            inner, having = self.body.split(" GROUP BY ", 1)
            if whole:
                return f"SELECT ?this WHERE {{ {inner} }} GROUP BY {having}", True
            return f"SELECT ?this WHERE {{ {targets} {inner} }} GROUP BY {having}", False
        if self.kind == "min":
            if " GROUP BY " in self.body:  # sh:minCount above 1
                inner, having = self.body.split(" GROUP BY ", 1)
                return f"SELECT ?this WHERE {{ {targets} {inner} }} GROUP BY {having}", False
            negation = "FILTER NOT EXISTS" if scoped or few else "MINUS"
            query = f"SELECT DISTINCT ?this WHERE {{ {targets} {negation} {{ {self.body} }} }}"
            return query, False
        return f"SELECT DISTINCT ?this WHERE {{ {targets} {self.body} }}", False  # node


@dataclass
class Compiled:
    checks: list[Check]
    classes: set[str] = field(default_factory=set)  # every class whose instances are read
    uncompiled: dict[str, str] = field(default_factory=dict)  # node shape -> why not


@dataclass(frozen=True)
class Result:
    severity: str
    focus: ox.NamedNode | ox.BlankNode
    path: str | None
    value: ox.NamedNode | ox.BlankNode | ox.Literal | None
    message: str
    shape: str
    component: str
    local: bool


class Unsupported(Exception):
    """A shape uses SHACL this module does not compile."""


def _lit(text: str) -> str:
    """A SPARQL string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r") + '"'


def _term(node: rdflib.term.Node) -> str:
    if isinstance(node, rdflib.URIRef):
        return f"<{node}>"
    if isinstance(node, rdflib.Literal):
        if node.language:
            return f"{_lit(str(node))}@{node.language}"
        return f"{_lit(str(node))}^^<{node.datatype or _XSD + 'string'}>"
    raise Unsupported(f"a blank node {node} as a constraint parameter")


def _one(shapes: rdflib.Graph, shape: rdflib.term.Node, pred: rdflib.URIRef) -> rdflib.term.Node:
    values = list(shapes.objects(shape, pred))
    if len(values) != 1:
        raise Unsupported(f"{len(values)} values of {pred} on {shape}")
    return values[0]


def _severity(shapes: rdflib.Graph, shape: rdflib.term.Node) -> str:
    values = list(shapes.objects(shape, SH.severity))
    if len(values) > 1:
        raise Unsupported(f"several severities on {shape}")
    return str(values[0]).rsplit("#", 1)[-1] if values else "Violation"


def _datatype_test(datatype: str, var: str = "?value") -> str:
    base = f"(isLiteral({var}) && datatype({var}) = <{datatype}>"
    if datatype == str(RDF.langString):
        return f'(isLiteral({var}) && lang({var}) != "")'
    if datatype == _XSD + "string":
        return f'{base} && lang({var}) = "")'
    if datatype in NUMERIC_DATATYPES:
        # The store parses these into values: an ill-formed literal ("1.5"^^xsd:integer) is
        # then not numeric, which is how pySHACL's ill-typed check is reproduced.
        return f"{base} && isNumeric({var}))"
    if datatype == _XSD + "boolean":
        return f"{base} && COALESCE({var} = true || {var} = false, false))"
    raise Unsupported(f"sh:datatype {datatype}")  # its well-formedness would need a parser


def _class_test(cls: str, var: str = "?value") -> str:
    return f"EXISTS {{ GRAPH <{INSTANCES.value}> {{ {var} <{INSTANCE_OF.value}> <{cls}> }} }}"


def _or_test(shapes: rdflib.Graph, items: rdflib.term.Node) -> str:
    tests = []
    for member in Collection(shapes, items):
        keys = set(shapes.predicates(member)) - {RDF.type}
        if keys == {SH.datatype}:
            tests.append(_datatype_test(str(_one(shapes, member, SH.datatype))))
        elif keys == {SH["class"]}:
            tests.append(_class_test(str(_one(shapes, member, SH["class"]))))
        else:
            raise Unsupported(f"sh:or member with {sorted(map(str, keys))}")
    return "(" + " || ".join(tests) + ")" if tests else "false"


def _in_test(shapes: rdflib.Graph, _ps: rdflib.term.Node, value: rdflib.term.Node) -> str:
    members = list(Collection(shapes, value))
    return "(" + (" || ".join(f"sameTerm(?value, {_term(m)})" for m in members) or "false") + ")"


def _pattern_test(shapes: rdflib.Graph, ps: rdflib.term.Node, value: rdflib.term.Node) -> str:
    flags = shapes.value(ps, SH.flags)
    args = _lit(str(value)) + (f", {_lit(str(flags))}" if flags is not None else "")
    return f"(!isBlank(?value) && REGEX(STR(?value), {args}))"


def _language_test(shapes: rdflib.Graph, _ps: rdflib.term.Node, value: rdflib.term.Node) -> str:
    tags = [str(t) for t in Collection(shapes, value)]
    any_tag = " || ".join(f"langMatches(lang(?value), {_lit(t)})" for t in tags)
    return f"(isLiteral(?value) && ({any_tag or 'false'}))"


def _node_kind_test(_shapes: rdflib.Graph, _ps: rdflib.term.Node, value: rdflib.term.Node) -> str:
    if value not in _NODE_KINDS:
        raise Unsupported(f"sh:nodeKind {value}")
    return _NODE_KINDS[value]  # type: ignore[index]


# The SPARQL condition a conforming ?value meets, per value-based component parameter.
_VALUE_TESTS: dict[
    rdflib.URIRef, Callable[[rdflib.Graph, rdflib.term.Node, rdflib.term.Node], str]
] = {
    SH.datatype: lambda _g, _ps, v: _datatype_test(str(v)),
    SH["class"]: lambda _g, _ps, v: _class_test(str(v)),
    SH["in"]: _in_test,
    SH["or"]: lambda g, _ps, v: _or_test(g, v),
    SH.minInclusive: lambda _g, _ps, v: f"COALESCE(?value >= {_term(v)}, false)",
    SH.maxInclusive: lambda _g, _ps, v: f"COALESCE(?value <= {_term(v)}, false)",
    SH.minLength: lambda _g, _ps, v: f"(!isBlank(?value) && STRLEN(STR(?value)) >= {_int(v)})",
    SH.pattern: _pattern_test,
    SH.languageIn: _language_test,
    SH.nodeKind: _node_kind_test,
}


def _int(node: rdflib.term.Node | None) -> int:
    if not isinstance(node, rdflib.Literal) or not isinstance(node.value, int):
        raise Unsupported(f"{node} is not a whole number")
    return node.value


def _component(pred: rdflib.URIRef) -> str:
    name = str(pred).rsplit("#", 1)[-1]
    return _SH + name[0].upper() + name[1:] + "ConstraintComponent"


def _property_checks(shapes: rdflib.Graph, ps: rdflib.term.Node) -> list[Check]:
    if not isinstance(ps, rdflib.URIRef):
        raise Unsupported(f"an unnamed property shape {ps}")  # its results name no shape
    unknown = set(shapes.predicates(ps)) - _PROPERTY_KEYS
    if unknown:
        raise Unsupported(f"{ps} uses {sorted(map(str, unknown))}")
    path = _one(shapes, ps, SH.path)
    if not isinstance(path, rdflib.URIRef):
        raise Unsupported(f"a complex sh:path on {ps}")
    messages = tuple(sorted(str(m) for m in shapes.objects(ps, SH.message)))
    if not messages:
        raise Unsupported(f"{ps} has no sh:message")  # pySHACL's default texts are not copied
    severity = _severity(shapes, ps)
    return [
        Check(str(ps), components, kind, body, severity, messages, str(path), True, conforms=c)
        for components, kind, body, c in _property_queries(shapes, ps, f"<{path}>")
    ]


def _property_queries(
    shapes: rdflib.Graph, ps: rdflib.URIRef, p: str
) -> Iterator[tuple[tuple[str, ...], str, str, str]]:
    """(components, kind, body, Check.conforms) of each check of one property shape with
    path `p`. Counts need no DISTINCT: a focus node's values of one predicate are the objects
    of distinct triples of one graph (the focus nodes come one each from a DISTINCT)."""
    if (n := shapes.value(ps, SH.minCount)) is not None and _int(n) > 0:
        body = f"?this {p} ?v"
        if _int(n) > 1:
            body = f"OPTIONAL {{ {body} }} GROUP BY ?this HAVING (COUNT(?v) < {_int(n)})"
        yield (_SH + "MinCountConstraintComponent",), "min", body, ""
    if (n := shapes.value(ps, SH.maxCount)) is not None:
        having = f"GROUP BY ?this HAVING (COUNT(?v) > {_int(n)})"
        yield (_SH + "MaxCountConstraintComponent",), "max", f"?this {p} ?v {having}", ""
    for pred, op in ((SH.lessThan, "<"), (SH.lessThanOrEquals, "<=")):
        other = shapes.value(ps, pred)
        if other is None:
            continue
        if not isinstance(other, rdflib.URIRef):
            raise Unsupported(f"{pred} {other}")
        # As in pySHACL: a value that does not compare (a string with a number) fails.
        body = f"?this {p} ?value . ?this <{other}> ?other "
        test = f"FILTER (!COALESCE(?value {op} ?other, false))"
        yield (_component(pred),), "pair", body + test, ""
    used = sorted(p for p in _VALUE_TESTS if (ps, p, None) in shapes)
    if used == [SH["class"]]:
        cls = _one(shapes, ps, SH["class"])
        conforms = f"GRAPH <{INSTANCES.value}> {{ ?value <{INSTANCE_OF.value}> <{cls}> }}"
        yield (_component(SH["class"]),), "class", f"?this {p} ?value", conforms
        return
    tests = [(_component(p), _VALUE_TESTS[p](shapes, ps, _one(shapes, ps, p))) for p in used]
    if tests:
        # The values failing any test, and (with several) ?failed: the indices of the tests
        # each fails ("0 2 "), worked out for those values only.
        passes = " && ".join(f"COALESCE({t}, false)" for _c, t in tests)
        body = f"?this {p} ?value . FILTER (!({passes}))"
        if len(tests) > 1:
            failed = ", ".join(
                f'IF(COALESCE({t}, false), "", "{i} ")' for i, (_c, t) in enumerate(tests)
            )
            body += f' BIND (CONCAT({failed}, "") AS ?failed)'
        yield tuple(c for c, _t in tests), "values", body, ""


def _node_kind_check(shapes: rdflib.Graph, ns: rdflib.URIRef) -> Check | None:
    kind = shapes.value(ns, SH.nodeKind)
    if kind is None:
        return None
    if kind not in _NODE_KINDS:
        raise Unsupported(f"sh:nodeKind {kind}")
    messages = tuple(sorted(str(m) for m in shapes.objects(ns, SH.message))) or (
        f"Value is not of Node Kind {stringify_node(shapes, kind)}",
    )
    test = _NODE_KINDS[kind].replace("?value", "?this")  # type: ignore[index]
    return Check(
        str(ns),
        (_SH + "NodeKindConstraintComponent",),
        "node",
        f"FILTER (!{test})",
        _severity(shapes, ns),
        messages,
        None,
        True,
        node_shape=str(ns),
    )


def declared_prefixes(shapes: rdflib.Graph, constraint: rdflib.term.Node) -> str:
    lines = []
    for holder in shapes.objects(constraint, SH.prefixes):
        for decl in shapes.objects(holder, SH.declare):
            prefix, ns = shapes.value(decl, SH.prefix), shapes.value(decl, SH.namespace)
            if prefix is not None and ns is not None:
                lines.append(f"PREFIX {prefix}: <{ns}>")
    return "\n".join(sorted(set(lines))) + "\n"


def _sparql_check(shapes: rdflib.Graph, ns: rdflib.URIRef, constraint: rdflib.term.Node) -> Check:
    if not isinstance(constraint, rdflib.URIRef):
        raise Unsupported(f"an unnamed SPARQL constraint on {ns}")
    unknown = set(shapes.predicates(constraint)) - {
        RDF.type,
        RDFS.label,
        RDFS.comment,
        SH.message,
        SH.prefixes,
        SH.select,
    }
    if unknown:
        raise Unsupported(f"{constraint} uses {sorted(map(str, unknown))}")
    select = str(_one(shapes, constraint, SH.select))
    if "$PATH" in select:
        raise Unsupported(f"$PATH in {constraint}")
    text = declared_prefixes(shapes, constraint) + select
    where = re.search(r"\bWHERE\s*\{", text, re.IGNORECASE)
    if where is None:
        raise Unsupported(f"no WHERE in {constraint}")
    messages = [str(m) for m in shapes.objects(constraint, SH.message)] or [
        str(m) for m in shapes.objects(ns, SH.message)
    ]
    return Check(
        str(constraint),
        (_SH + "SPARQLConstraintComponent",),
        "sparql",
        text,
        _severity(shapes, ns),
        tuple(messages),
        None,
        reads_one_hop(text),
        node_shape=str(ns),
        this_bound=_binds_this(text),
        whole_body=minus_form(text),
    )


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<comment>\#[^\r\n]*)
    | (?P<var>[?$]\w+)
    | (?P<iri><[^<>"{}|^`\\\s]*>)
    | (?P<string>'\'\'(?:[^\\]|\\.)*?'\'\'|\"\"\"(?:[^\\]|\\.)*?\"\"\"|'(?:[^'\\\n]|\\.)*'
                 |"(?:[^"\\\n]|\\.)*")
    | (?P<pname>(?:[A-Za-z][\w.-]*)?:(?:[\w:%-]|\.(?=[\w:%-]))*)
    | (?P<word>[A-Za-z_]\w*)
    | (?P<lang>@[A-Za-z]+(?:-[A-Za-z0-9]+)*)
    | (?P<number>[+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)
    | (?P<dt>\^\^)
    | (?P<other>\S)
    )""",
    re.VERBOSE,
)


class _NotLocal(Exception):
    pass


class _PatternReader:
    """The triple patterns of a SELECT's WHERE clause, FILTER (NOT) EXISTS included.

    Deliberately narrow: anything it does not know (a sub-SELECT, GRAPH, a property path,
    blank-node brackets, a collection) ends the reading as not local, which only costs speed
    (the constraint is then run on every focus node)."""

    def __init__(self, query: str) -> None:
        self.toks: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(query):
            kind = m.lastgroup or "other"
            if kind != "comment":
                self.toks.append((kind, m.group(kind)))
        self.i = 0
        # Each pattern with the groups it sits in (outermost first): a variable one pattern
        # binds is seen by the patterns of that group and of the groups inside it.
        self.triples: list[tuple[str, str, str, tuple[int, ...]]] = []
        self.groups: list[int] = []
        self.opened = 0

    def peek(self) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise _NotLocal("unexpected end")
        return self.toks[self.i]

    def take(self, text: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if text is not None and tok[1].upper() != text:
            raise _NotLocal(f"expected {text}, not {tok[1]}")
        self.i += 1
        return tok

    def where(self) -> list[tuple[str, str, str, tuple[int, ...]]]:
        while self.peek()[1] != "{":  # the projection holds no triple pattern
            self.i += 1
        self.group()
        return self.triples

    def group(self) -> None:
        self.take("{")
        self.opened += 1
        self.groups.append(self.opened)
        while (tok := self.peek())[1] != "}":
            word = tok[1].upper() if tok[0] == "word" else None
            if tok[1] == ".":
                self.i += 1
            elif word in ("FILTER", "BIND"):
                self.i += 1
                self.expression()
            elif word in ("OPTIONAL", "MINUS"):
                self.i += 1
                self.group()
            elif word == "UNION":
                self.i += 1
            elif tok[1] == "{":
                self.group()
            elif word == "VALUES":
                self.values()
            else:
                self.pattern()
        self.take("}")
        self.groups.pop()

    def expression(self) -> None:
        """One constraint expression: EXISTS groups inside it are read, the rest skipped."""
        depth = 0
        while True:
            kind, text = self.peek()
            upper = text.upper() if kind == "word" else ""
            if upper == "EXISTS":
                self.i += 1
                self.group()
            elif upper == "NOT":
                self.i += 1
            elif text == "(":
                depth += 1
                self.i += 1
            elif text == ")":
                depth -= 1
                self.i += 1
            elif text in ("{", "}"):
                raise _NotLocal("a group inside an expression")
            else:
                self.i += 1
                if kind == "word" and self.peek()[1] == "(":
                    continue  # a function call: its arguments follow
            if depth == 0 and (upper != "NOT"):
                return

    def values(self) -> None:
        self.take("VALUES")
        while self.peek()[1] != "{":
            self.i += 1
        depth = 0
        while True:
            text = self.take()[1]
            depth += {"{": 1, "}": -1}.get(text, 0)
            if depth == 0:
                return

    def term(self) -> str:
        kind, text = self.take()
        if kind == "var":
            return "?" + text[1:]  # $x and ?x are one variable
        if kind in ("iri", "pname", "number") or (kind == "word" and text in ("true", "false")):
            return text
        if kind == "string":
            if self.peek()[0] == "lang":
                self.i += 1
            elif self.peek()[0] == "dt":
                self.i += 1
                self.term()
            return text
        raise _NotLocal(f"{text} in a triple pattern")

    def pattern(self) -> None:
        subject = self.term()
        while True:
            kind, text = self.take()
            if not (kind in ("var", "iri", "pname") or (kind, text) == ("word", "a")):
                raise _NotLocal(f"the predicate {text}")  # a path or a keyword
            text = "?" + text[1:] if kind == "var" else text
            while True:
                self.triples.append((subject, text, self.term(), tuple(self.groups)))
                if self.peek()[1] != ",":
                    break
                self.i += 1
            if self.peek()[1] != ";":
                return
            while self.peek()[1] == ";":
                self.i += 1
            if self.peek()[1] in (".", "}"):
                return


def _binds_this(query: str) -> bool:
    """Whether a triple pattern of the WHERE clause's own group has $this as its subject (and a
    constant predicate), so
    that every solution binds it there: joining with the focus nodes is then the same as
    keeping the solutions whose ?this is one (no grouping or slicing to change that)."""
    if re.search(r"\b(GROUP|HAVING|ORDER|LIMIT|OFFSET)\b", query, re.IGNORECASE):
        return False
    try:
        triples = _PatternReader(query).where()
    except _NotLocal:
        return False
    # With a variable predicate, the data alone is every triple of the store.
    return any(
        s == "?this" and where == (1,) and not p.startswith("?") for s, p, _o, where in triples
    )


# Words that make a FILTER NOT EXISTS block more than triple patterns and filters.
_NOT_FLAT = {"OPTIONAL", "UNION", "MINUS", "GRAPH", "SERVICE", "VALUES", "BIND", "SELECT", "EXISTS"}


def minus_form(query: str) -> str:
    """The query with each FILTER NOT EXISTS { ... } of its WHERE group's top level that means
    a MINUS written as one, at the group's end; "" when there is none. Over all the data, MINUS
    reads its pattern once into a hash where NOT EXISTS runs it once per solution (the
    undeclared-property rule: 4 s at a million triples, a third of that as MINUS). SHACL
    forbids MINUS in the shapes themselves, hence the rewrite here.

    A block means the same as a MINUS when it holds triple patterns and filters alone, each of
    its variables is in one of its triple patterns, and those it shares with the rest of the
    query are bound in every solution (by a triple pattern of the top level, or ?this, which
    the focus nodes bind), at least one of them: both forms then drop the solutions whose
    shared values the pattern matches."""
    toks = [
        (m.lastgroup or "other", m.start(m.lastgroup or 0), m.end()) for m in _TOKEN.finditer(query)
    ]
    toks = [t for t in toks if t[0] != "comment"]
    text = [query[start:end] for _kind, start, end in toks]
    try:
        bound = {v for s, p, o, where in _PatternReader(query).where() if where == (1,)
                 for v in (s, p, o) if v.startswith("?")} | {"?this"}  # fmt: skip
    except _NotLocal:
        return ""
    # The WHERE group: its opening brace, and the top-level FILTER NOT EXISTS blocks in it.
    opening = next((i + 1 for i, t in enumerate(text) if t.upper() == "WHERE"), None)
    if opening is None or opening >= len(text) or text[opening] != "{":
        return ""
    blocks: list[tuple[int, int]] = []  # token indices: FILTER .. the block's closing brace
    depth, closing = 0, None
    for i in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            closing = i
            break
        words = [w.upper() for w in text[i : i + 4]]
        if depth == 1 and words == ["FILTER", "NOT", "EXISTS", "{"]:
            end = next((j for j in range(i + 4, len(text)) if text[j] in ("{", "}")), None)
            if end is not None and text[end] == "}":  # no group inside
                blocks.append((i, end))
    if closing is None:
        return ""
    kept = [(i, end) for i, end in blocks if _means_minus(toks, text, i, end, bound)]
    if not kept:
        return ""
    edits = [(toks[i][1], toks[end][2], "") for i, end in kept]
    inner = [query[toks[i + 3][2] : toks[end][1]].strip() for i, end in kept]
    moved = " ".join(f"MINUS {{ {pattern} }}" for pattern in inner)
    edits.append((toks[closing][1], toks[closing][1], moved + "\n"))
    out = query
    for start, end, new in sorted(edits, reverse=True):
        out = out[:start] + new + out[end:]
    return out


def _means_minus(
    toks: list[tuple[str, int, int]], text: list[str], i: int, end: int, bound: set[str]
) -> bool:
    """Whether the FILTER NOT EXISTS block of tokens i..end can be a MINUS (see minus_form)."""
    inner = range(i + 4, end)
    if any(toks[j][0] == "word" and text[j].upper() in _NOT_FLAT for j in inner):
        return False
    name = {j: "?" + text[j][1:] for j in range(len(text)) if toks[j][0] == "var"}
    own = {name[j] for j in inner if j in name}
    try:
        block = "SELECT * WHERE { " + " ".join(text[j] for j in inner) + " }"
        in_patterns = {v for t in _PatternReader(block).where() for v in t[:3] if v.startswith("?")}
    except _NotLocal:
        return False
    outside = {v for j, v in name.items() if not i <= j <= end}
    shared = own & outside
    return own <= in_patterns and bool(shared) and shared <= bound


def reads_one_hop(query: str) -> bool:
    """Whether every triple pattern starts at $this or at a variable that a $this pattern in
    the same group or an enclosing one binds (its object, or its predicate: that property's
    declaration). A variable bound only inside an OPTIONAL, a UNION branch or an EXISTS may be
    unbound outside it, where a pattern starting at it would read any node."""
    try:
        triples = _PatternReader(query).where()
    except _NotLocal:
        return False
    from_this = [(p, o, where) for s, p, o, where in triples if s == "?this"]

    def reached(subject: str, where: tuple[int, ...]) -> bool:
        return subject == "?this" or any(
            subject in (p, o) and subject.startswith("?") and where[: len(w)] == w
            for p, o, w in from_this
        )

    return all(reached(s, where) for s, _p, _o, where in triples)


def compile_shapes(shapes: rdflib.Graph) -> Compiled:
    """The checks of every node shape with sh:targetClass that only uses what this module
    compiles; the others are named in `uncompiled` for the SHACL engine."""
    compiled = Compiled(checks=[])
    parents: dict[str, set[str]] = {}  # property shape -> target classes of its node shapes
    by_shape: dict[str, list[Check]] = {}
    for ns in sorted(set(shapes.subjects(SH.targetClass)), key=str):
        if not isinstance(ns, rdflib.URIRef):
            compiled.uncompiled[f"_:{ns}"] = "an unnamed shape"
            continue
        classes = tuple(sorted(str(c) for c in shapes.objects(ns, SH.targetClass)))
        try:
            node_checks, properties = _compile_node_shape(shapes, ns)
        except Unsupported as why:
            compiled.uncompiled[str(ns)] = str(why)
            continue
        compiled.checks += [replace(c, classes=classes) for c in node_checks]
        compiled.classes |= set(classes)
        for ps, checks in properties.items():
            parents.setdefault(ps, set()).update(classes)
            by_shape[ps] = checks
    # A property shape several node shapes hold is checked once, on all of their focus nodes.
    for ps, checks in sorted(by_shape.items()):
        compiled.checks += [replace(c, classes=tuple(sorted(parents[ps]))) for c in checks]
    # A node shape targeting in another way only (sh:targetNode, ..., or being a class itself)
    # never came through the loop above: named here, the SHACL engine runs it.
    for ns in sorted(_other_targets(shapes) - set(shapes.subjects(SH.targetClass)), key=str):
        shown = str(ns) if isinstance(ns, rdflib.URIRef) else f"_:{ns}"
        compiled.uncompiled[shown] = "a target other than sh:targetClass"
    compiled.classes |= {str(c) for c in shapes.objects(None, SH["class"])}
    return compiled


def _other_targets(shapes: rdflib.Graph) -> set[rdflib.term.Node]:
    found: set[rdflib.term.Node] = set()
    for target in (SH.targetNode, SH.targetSubjectsOf, SH.targetObjectsOf, SH.target):
        found |= set(shapes.subjects(target))
    for kind in (SH.NodeShape, SH.PropertyShape):
        for shape in shapes.subjects(RDF.type, kind):
            if set(shapes.objects(shape, RDF.type)) & {RDFS.Class, rdflib.OWL.Class}:
                found.add(shape)  # an implicit class target
    return found


def _compile_node_shape(
    shapes: rdflib.Graph, ns: rdflib.URIRef
) -> tuple[list[Check], dict[str, list[Check]]]:
    unknown = set(shapes.predicates(ns)) - _NODE_KEYS
    if unknown:
        raise Unsupported(f"uses {sorted(map(str, unknown))}")
    if set(shapes.objects(ns, RDF.type)) & {RDFS.Class, rdflib.OWL.Class}:
        raise Unsupported("an implicit class target")
    checks: list[Check] = []
    node_kind = _node_kind_check(shapes, ns)
    if node_kind is not None:
        checks.append(node_kind)
    properties = {}
    for ps in sorted(shapes.objects(ns, SH.property), key=str):
        # A property shape with targets of its own would have other focus nodes too.
        if set(shapes.predicates(ps)) & {
            SH.targetClass,
            SH.targetNode,
            SH.targetSubjectsOf,
            SH.targetObjectsOf,
            SH.target,
        }:
            raise Unsupported(f"{ps} has targets of its own")
        properties[str(ps)] = _property_checks(shapes, ps)
    for constraint in sorted(shapes.objects(ns, SH.sparql), key=str):
        checks.append(_sparql_check(shapes, ns, constraint))
    return checks, properties


def record_targets(
    store: ox.Store,
    compiled: Compiled,
    scope: Collection_[ox.NamedNode | ox.BlankNode] | None,
) -> None:
    """Write the instances of every class the shapes read into INSTANCES (the focus nodes of
    sh:targetClass, the values sh:class checks). With a scope and only local checks, only
    for the scope's nodes and the nodes they point to: the only nodes those checks read."""
    clear_targets(store)
    if scope is not None:
        store.extend(ox.Quad(n, IN_SCOPE, IN_SCOPE, SCOPE) for n in scope)
        if all(c.local for c in compiled.checks):
            _record_instances_near(store, scope, compiled.classes)
            return
    for cls in sorted(compiled.classes):
        subs = " ".join(f"<{t.value}>" for t in _subclasses(store, cls))
        store.update(
            f"INSERT {{ GRAPH <{INSTANCES.value}> {{ ?x <{INSTANCE_OF.value}> <{cls}> }} }} "
            f"WHERE {{ VALUES ?t {{ {subs} }} ?x <{RDF.type}> ?t }}"
        )


def _subclasses(store: ox.Store, cls: str) -> list[ox.NamedNode | ox.BlankNode]:
    query = f"SELECT DISTINCT ?sub WHERE {{ ?sub <{RDFS.subClassOf}>* <{cls}> }}"
    solutions = store.query(query)
    assert isinstance(solutions, ox.QuerySolutions)
    return [row["sub"] for row in solutions if isinstance(row["sub"], ox.NamedNode)]


def _record_instances_near(
    store: ox.Store, scope: Iterable[ox.NamedNode | ox.BlankNode], classes: set[str]
) -> None:
    near: set[ox.NamedNode | ox.BlankNode] = set(scope)
    for node in list(near):
        for q in store.quads_for_pattern(node, None, None, ox.DefaultGraph()):
            if isinstance(q.object, ox.NamedNode | ox.BlankNode):
                near.add(q.object)
    rdf_type = ox.NamedNode(str(RDF.type))
    subs = {cls: set(_subclasses(store, cls)) for cls in classes}
    found = []
    for node in near:
        types = {q.object for q in store.quads_for_pattern(node, rdf_type, None, ox.DefaultGraph())}
        found += [
            ox.Quad(node, INSTANCE_OF, ox.NamedNode(cls), INSTANCES)
            for cls, below in subs.items()
            if types & below
        ]
    store.extend(found)


def clear_targets(store: ox.Store) -> None:
    present = set(store.named_graphs())
    for graph in (INSTANCES, SCOPE):
        if graph in present:
            store.remove_graph(graph)


FEW_TARGETS = 1000  # below this many focus nodes a check starts from them (speed alone)


def _target_count(store: ox.Store, classes: tuple[str, ...]) -> int:
    """The number of focus nodes of these classes, counted up to FEW_TARGETS: whether they
    are few is all a check needs (a full count cost a second at a million triples)."""
    solutions = store.query(
        "SELECT DISTINCT ?this WHERE { VALUES ?c { "
        + " ".join(f"<{c}>" for c in classes)
        + f" }} GRAPH <{INSTANCES.value}> {{ ?this <{INSTANCE_OF.value}> ?c }} }} "
        + f"LIMIT {FEW_TARGETS}"
    )
    assert isinstance(solutions, ox.QuerySolutions)
    return sum(1 for _row in solutions)


QUERY_THREADS = 2  # the build machine's cores; queries beyond them only wait

Row = dict[str, ox.NamedNode | ox.BlankNode | ox.Literal]


class CheckFailed(RuntimeError):
    """A check's query failed in the store (a broken sh:select, a store error)."""


def run_checks(
    store: ox.Store,
    checks: Iterable[Check],
    scoped: bool,
    threads: int | None = None,
    seconds: list[float] | None = None,
) -> list[Result]:
    """Every check's results; with `scoped`, local checks only on the recorded scope.

    The queries run on `threads` (default QUERY_THREADS) threads over the one store:
    pyoxigraph evaluates a query without holding the GIL, and the store is only read meanwhile
    (a write beside a query would be another matter). The results are those of one thread,
    in the checks' order. `seconds`, when given, receives each check's query time (CPU of its
    thread), in order: 0 for a check whose query an earlier check had (one path's checks
    on several shapes, over all the data, are one query, run once)."""
    checks = list(checks)
    sizes: dict[tuple[str, ...], int] = {}
    if not scoped:
        sizes = {c: _target_count(store, c) for c in dict.fromkeys(ch.classes for ch in checks)}
    queries = [ch.query(scoped, not scoped and sizes[ch.classes] < FEW_TARGETS) for ch in checks]

    def answer(i: int) -> tuple[list[Row], float]:
        started = time.thread_time()
        try:
            solutions = store.query(queries[i][0])
            assert isinstance(solutions, ox.QuerySolutions)
            names = [v.value for v in solutions.variables]
            rows = [{n: row[n] for n in names if row[n] is not None} for row in solutions]
        except (SyntaxError, OSError, ValueError, TypeError) as err:
            check = checks[i]
            raise CheckFailed(
                f"the SHACL check {check.shape} ({', '.join(check.components)}) failed in "
                f"the store: {type(err).__name__}: {err}"
            ) from err
        return rows, time.thread_time() - started

    first: dict[str, int] = {}  # each query: the first check that has it
    for i, (text, _to_filter) in enumerate(queries):
        first.setdefault(text, i)
    # The widest checks first, so that no long query starts last while the other thread idles.
    order = sorted(
        first.values(),
        key=lambda i: (checks[i].kind != "sparql", -sizes.get(checks[i].classes, 0), i),
    )
    answers = _in_threads(answer, order, QUERY_THREADS if threads is None else threads)
    if seconds is not None:
        seconds[:] = [answers[i][1] if first[q] == i else 0.0 for i, (q, _f) in enumerate(queries)]
    results: list[Result] = []
    for check, (query, to_filter) in zip(checks, queries, strict=True):
        results += _results(store, check, answers[first[query]][0], to_filter)
    return results


def _results(store: ox.Store, check: Check, rows: list[Row], to_filter: bool) -> list[Result]:
    """One check's results from its query's rows (kept if focus nodes, with `to_filter`)."""
    results: list[Result] = []
    classes = [ox.NamedNode(c) for c in check.classes]
    for bound in rows:
        focus = bound.get("this")
        if not isinstance(focus, ox.NamedNode | ox.BlankNode):
            continue
        if to_filter and not any(
            ox.Quad(focus, INSTANCE_OF, c, INSTANCES) in store for c in classes
        ):
            continue  # not a focus node of this shape
        value = bound.get("value") if check.kind in _VALUED else None
        path = bound.get("path") if check.kind == "sparql" else None
        failed = bound.get("failed")
        components = (
            [check.components[int(i)] for i in failed.value.split()]
            if failed is not None
            else check.components
        )
        for component in components:
            results.append(
                Result(
                    severity=check.severity,
                    focus=focus,
                    path=path.value if isinstance(path, ox.NamedNode) else check.path,
                    value=None if value == focus else value,
                    message=_message(check, bound),
                    shape=check.shape,
                    component=component,
                    local=check.local,
                )
            )
    return results


_VALUED = ("values", "class", "pair", "sparql")  # the kinds whose rows name a ?value
_T = TypeVar("_T")


def _in_threads(task: Callable[[int], _T], order: list[int], threads: int) -> dict[int, _T]:
    """task(i) for every i of `order` on `threads` threads, started in that order. The first
    failure (in `order`) is raised once the tasks already running have ended."""
    if threads <= 1:
        return {i: task(i) for i in order}
    with ThreadPoolExecutor(threads, thread_name_prefix="shacl-check") as pool:
        futures = {i: pool.submit(task, i) for i in order}
        try:
            return {i: futures[i].result() for i in order}
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _message(check: Check, bound: dict) -> str:
    if not check.messages:
        return "Constraint not met."
    if check.kind != "sparql":
        return check.messages[0]
    texts = []
    for message in check.messages:
        for var, term in bound.items():
            message = re.sub("{[?$]" + var + "}", term.value.replace("\\", "\\\\"), message)
        texts.append(message)
    return sorted(texts)[0]
