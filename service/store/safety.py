"""Query checks that run before any store sees a query: read-only, no outbound requests.

The query is parsed (rdflib's SPARQL grammar) and its parse tree inspected, so the word
SERVICE inside a string, an IRI or a comment is harmless while a real SERVICE clause at any
depth is rejected. FROM / FROM NAMED and the protocol's graph parameters only ever select
graphs we hold: a graph we do not hold is empty, never fetched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import pyoxigraph as ox
from pyparsing import ParseBaseException
from rdflib.plugins.sparql.parser import parseQuery, parseUpdate
from rdflib.plugins.sparql.parserutils import CompValue

FORMS = {
    "SelectQuery": "SELECT",
    "AskQuery": "ASK",
    "ConstructQuery": "CONSTRUCT",
    "DescribeQuery": "DESCRIBE",
}


class QueryRejected(Exception):
    """A query we refuse, with the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Analysis:
    form: str  # SELECT, ASK, CONSTRUCT or DESCRIBE
    from_default: tuple[str, ...]
    from_named: tuple[str, ...]

    @property
    def returns_graph(self) -> bool:
        return self.form in ("CONSTRUCT", "DESCRIBE")


@dataclass(frozen=True)
class Dataset:
    """Graphs a query sees. None = the service default: union default graph, all named graphs."""

    default: tuple[str, ...] | None = None
    named: tuple[str, ...] | None = None

    @property
    def is_default(self) -> bool:
        return self.default is None and self.named is None


def _walk(node: object) -> Iterable[CompValue]:
    if isinstance(node, CompValue):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list | tuple) or hasattr(node, "asList"):
        for value in node:  # type: ignore[attr-defined]
            yield from _walk(value)


def _iri(value: object, prefixes: dict[str, str]) -> str:
    if isinstance(value, CompValue) and value.name == "pname":
        prefix = str(value["prefix"]) if "prefix" in value else ""
        if prefix not in prefixes:
            raise QueryRejected(400, f"undeclared prefix {prefix!r} in a FROM clause")
        return prefixes[prefix] + (str(value["localname"]) if "localname" in value else "")
    return str(value)


@lru_cache(maxsize=2048)
def analyze(query: str) -> Analysis:
    """Parse and check one query; raises QueryRejected. Cached: parsing is the slow part."""
    try:
        tree = parseQuery(query)
    except ParseBaseException as err:
        raise _syntax_or_update(query, err) from None
    nodes = list(_walk(tree))
    if any(n.name == "ServiceGraphPattern" for n in nodes):
        raise QueryRejected(
            400,
            "SERVICE is not allowed: this endpoint never sends requests to other services "
            "(federate from your own client instead)",
        )
    declared = [n for n in nodes if n.name == "PrefixDecl"]
    prefixes = {(str(n["prefix"]) if "prefix" in n else ""): str(n["iri"]) for n in declared}
    default: list[str] = []
    named: list[str] = []
    for clause in (n for n in nodes if n.name == "DatasetClause"):
        # CompValue.get returns the key itself when absent, so test membership.
        if "default" in clause:
            default.append(_iri(clause["default"], prefixes))
        if "named" in clause:
            named.append(_iri(clause["named"], prefixes))
    return Analysis(FORMS[tree[1].name], tuple(default), tuple(named))


def _syntax_or_update(query: str, err: ParseBaseException) -> QueryRejected:
    try:
        update = parseUpdate(query)
    except ParseBaseException:
        update = None
    if update is not None:
        kinds = {n.name for n in _walk(update)}
        if "Load" in kinds:
            return QueryRejected(
                400, "LOAD is not allowed: this endpoint is read-only and never fetches URLs"
            )
        return QueryRejected(
            400, "SPARQL Update is not accepted: this endpoint is read-only (query only)"
        )
    # Oxigraph's parser gives the clearer message; it runs on an empty store, so nothing is read.
    try:
        ox.Store().query(query)
    except SyntaxError as ox_err:
        return QueryRejected(400, f"malformed query: {ox_err}")
    except Exception:  # any other failure: fall back to rdflib's message
        pass
    return QueryRejected(400, f"malformed query: {err.msg} at line {err.lineno}, column {err.col}")


def select_dataset(
    analysis: Analysis,
    default_graph_uris: Iterable[str],
    named_graph_uris: Iterable[str],
    held: Iterable[str],
) -> Dataset:
    """The protocol's graph parameters override FROM / FROM NAMED (SPARQL 1.1 Protocol 2.1.4).

    Graphs we do not hold are dropped: they are empty, and nothing is ever fetched.
    """
    default_graph_uris, named_graph_uris = list(default_graph_uris), list(named_graph_uris)
    if default_graph_uris or named_graph_uris:
        defaults, named = default_graph_uris, named_graph_uris
    elif analysis.from_default or analysis.from_named:
        defaults, named = list(analysis.from_default), list(analysis.from_named)
    else:
        return Dataset()
    held = set(held)
    return Dataset(
        tuple(dict.fromkeys(g for g in defaults if g in held)),
        tuple(dict.fromkeys(g for g in named if g in held)),
    )


# Tokens that may contain the letters F-R-O-M without being the keyword.
_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"
               |'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
  | (?P<var>[?$][\w\u00b7\u00c0-\ufffd]+)
  | (?P<word>[A-Za-z_\u00c0-\ufffd][\w.\-\u00b7\u00c0-\ufffd]*(?::[^\s{}()<>,;"']*)?
             |:[^\s{}()<>,;"']*)
  | (?P<other>\s+|.)
    """,
    re.VERBOSE | re.DOTALL,
)


def strip_dataset_clauses(query: str) -> str:
    """The query without FROM / FROM NAMED clauses (for a remote store: the dataset travels as
    protocol parameters restricted to our graphs, so no store is asked to resolve an IRI)."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(query)]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "word" and text.upper() == "FROM":
            j = _next_significant(tokens, i + 1)
            if j < len(tokens) and tokens[j][0] == "word" and tokens[j][1].upper() == "NAMED":
                j = _next_significant(tokens, j + 1)
            if j < len(tokens) and tokens[j][0] in ("iri", "word"):
                out.append(" ")
                i = j + 1
                continue
        out.append(text)
        i += 1
    return "".join(out)


def _next_significant(tokens: list[tuple[str | None, str]], i: int) -> int:
    while i < len(tokens) and (tokens[i][0] == "comment" or tokens[i][1].isspace()):
        i += 1
    return i
