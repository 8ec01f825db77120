"""What an untrusted query text contains, read token by token inside the query worker.

Oxigraph's parser alone decides whether a query is valid (it runs next, in the same sandboxed
worker); this reader only finds what we refuse before Oxigraph sees it, and what a remote store
must be told: SERVICE, LOAD and updates outside strings, IRIs and comments; the query form; the
FROM / FROM NAMED graphs; and how deeply the query nests (Oxigraph's parser and evaluator
recurse, so depth is bounded here with a clear 400 rather than by a crash).

It is a lexer, not a grammar, so it is kept conservative where the two could disagree:
- a keyword is any ASCII letter run Oxigraph could read as one (`true.SERVICE`, `]SERVICE`,
  `SERVICESILENT` all count), including the prefix part of a prefixed name;
- `<` after an operand inside an expression is the less-than operator, never an IRI, so an
  IRI look-alike cannot hide code (`FILTER(?a<'>') SERVICE ...`);
- a comment ends at CR or LF, as in Oxigraph.
The workers also have no network at all (service.store.pool), so a query that got past this reader
still could not reach anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

MAX_DEPTH = 128  # brackets; 30 nested sub-SELECTs use about 60
FORMS = ("SELECT", "ASK", "CONSTRUCT", "DESCRIBE")
UPDATES = {"INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "WITH"}
# A `(` after a word opens an expression (FILTER(, BIND(, STR(, IN (...) except after these.
NOT_FUNCTIONS = {"A", "TRUE", "FALSE", "VALUES", "UNDEF"}
# After these, `(` at any depth is an expression: SELECT (... AS ?x), ORDER BY (...), HAVING (...).
PROJECTION_START = {"SELECT", "BY", "HAVING"}
PROJECTION_END = {"WHERE", "LIMIT", "OFFSET", "VALUES"}

_BASE_CHARS = (
    "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_PN_CHARS = _BASE_CHARS + "_\\-0-9\u00b7\u0300-\u036f\u203f-\u2040"
_VAR_CHARS = _BASE_CHARS + "_0-9\u00b7\u0300-\u036f\u203f-\u2040"
_PLX = r"%[0-9A-Fa-f]{2}|\\[_~.\-!$&'()*+,;=/?#@%]"
_PN_PREFIX = f"[{_BASE_CHARS}](?:\\.*[{_PN_CHARS}])*"
_PN_LOCAL = f"(?:[{_BASE_CHARS}_:0-9]|{_PLX})(?:\\.*(?:[{_PN_CHARS}:]|{_PLX}))*"

_TOKEN = re.compile(
    rf"""
    [\x20\t\r\n]*
    (?:
    (?P<comment>\#[^\r\n]*)
  | (?P<var>[?$][{_VAR_CHARS}]+)
  | (?P<iri><(?:[^<>"{{}}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{{4}}|\\U[0-9A-Fa-f]{{8}})*>)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?![{_PN_CHARS}.:]))
  | (?P<pname>(?:{_PN_PREFIX})?:(?:{_PN_LOCAL})?)
  | (?P<string>'\'\'(?:(?:'|'')?(?:[^'\\]|\\.))*'\'\'|\"\"\"(?:(?:"|"")?(?:[^"\\]|\\.))*\"\"\"
               |'(?:[^'\\\r\n]|\\.)*'|"(?:[^"\\\r\n]|\\.)*")
  | (?P<tripleopen><<\()
  | (?P<tripleclose>\)>>)
  | (?P<lang>@[A-Za-z]+(?:-[A-Za-z0-9]+)*(?:--[A-Za-z]+)?)
  | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)
  | (?P<other>.)
    )
    """,
    re.VERBOSE | re.DOTALL,
)
_LETTERS = re.compile(r"[A-Za-z]+")
# Inside an IRI look-alike: leaving an expression and starting SERVICE without any space.
_HIDDEN_SERVICE = re.compile(r"\)\.?service", re.IGNORECASE)
_OPERAND_END = {"var", "string", "iri", "pname", "number", "lang", "tripleclose"}
_OPEN = {"{", "(", "["}
_CLOSE = {"}", ")", "]"}


class Refused(Exception):
    """A query we do not run: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


SERVICE_REFUSED = (
    "SERVICE is not allowed: this endpoint never sends requests to other services "
    "(federate from your own client instead)"
)
LOAD_REFUSED = "LOAD is not allowed: this endpoint is read-only and never fetches URLs"
UPDATE_REFUSED = "SPARQL Update is not accepted: this endpoint is read-only (query only)"


@dataclass(frozen=True)
class Inspection:
    form: str | None  # SELECT, ASK, CONSTRUCT, DESCRIBE; None when the text names none
    from_default: tuple[str, ...] = ()
    from_named: tuple[str, ...] = ()
    depth: int = 0

    @property
    def has_dataset(self) -> bool:
        return bool(self.from_default or self.from_named)


# A token: (kind, text, start offset).
Token = tuple[str, str, int]


def tokens(query: str, check: bool = False) -> tuple[list[Token], int]:
    """Significant tokens (no spaces, no comments) and the deepest bracket nesting; `<` is an
    operator or an IRI by context. With `check`, refuses SERVICE and deep nesting as it goes,
    so a huge query is refused at its first offending token."""
    reader = _Reader(check)
    scanner = _TOKEN.finditer(query)
    while (match := next(scanner, None)) is not None:
        kind = match.lastgroup or "other"
        if kind == "comment":
            continue
        start = match.start(kind)
        if kind == "iri" and reader.in_expression_after_operand():
            reader.out.append(("other", "<", start))  # less-than, never an IRI here
            scanner = _TOKEN.finditer(query, start + 1)
            continue
        reader.take(kind, match.group(kind), start)
    return reader.out, reader.deepest


class _Reader:
    """The state `tokens` keeps: open brackets by kind, and whether `(` opens an expression."""

    def __init__(self, check: bool) -> None:
        self.check = check
        self.out: list[Token] = []
        self.stack: list[str] = []  # "group", "expr", "term" for each open bracket
        self.projection = False  # in a projection or solution modifier: `(` is an expression
        self.deepest = 0

    def in_expression_after_operand(self) -> bool:
        return bool(self.stack and self.stack[-1] == "expr" and self.out) and _ends_operand(
            self.out[-1]
        )

    def take(self, kind: str, text: str, start: int) -> None:
        if text in _OPEN or kind == "tripleopen":
            self._open(kind, text, start)
        elif text in _CLOSE or kind == "tripleclose":
            if text == "}":
                self.projection = False
            if self.stack:
                self.stack.pop()
        elif kind == "word":
            upper = text.upper()
            if upper in PROJECTION_START:
                self.projection = True
            elif upper in PROJECTION_END:
                self.projection = False
        if self.check and _hides_service(kind, text):
            raise Refused(400, SERVICE_REFUSED)
        self.out.append((kind, text, start))

    def _open(self, kind: str, text: str, start: int) -> None:
        if text == "{":
            self.stack.append("group")
            self.projection = False
        elif text == "(":
            self.stack.append(_paren_context(self.stack, self.out, self.projection))
        else:
            self.stack.append("term")
        if len(self.stack) > self.deepest:
            self.deepest = len(self.stack)
            if self.check and self.deepest > MAX_DEPTH:
                raise Refused(
                    400,
                    f"query nested too deeply: more than {MAX_DEPTH} levels of brackets "
                    f"(at character {start})",
                )


def _hides_service(kind: str, text: str) -> bool:
    """Whether Oxigraph could read SERVICE in this token (see the module doc)."""
    if kind == "word":
        return text.upper().startswith("SERVICE")
    if kind == "pname":
        prefix = text.split(":", 1)[0]
        return any(run.upper().startswith("SERVICE") for run in _LETTERS.findall(prefix))
    return kind == "iri" and _HIDDEN_SERVICE.search(text) is not None


def _ends_operand(token: Token) -> bool:
    kind, text, _ = token
    if kind in _OPERAND_END or text in (")", "]", "*"):
        return True
    return kind == "word" and text.upper() in ("TRUE", "FALSE")


def _paren_context(stack: list[str], out: list[Token], projection: bool) -> str:
    if stack and stack[-1] == "expr":
        return "expr"
    if not out:
        return "expr"
    kind, text, _ = out[-1]
    if kind == "word":
        return "term" if text.upper() in NOT_FUNCTIONS else "expr"
    if kind in ("iri", "pname") and len(out) > 1:
        before = out[-2]
        if before[0] == "word" and before[1].upper() == "FILTER":
            return "expr"  # FILTER <function>(...)
    if not stack or projection:
        return "expr"  # SELECT (... AS ?x), ORDER BY (...) at the top level
    return "term"  # a collection, a path group, a VALUES row


def inspect(query: str) -> Inspection:
    """Refuse SERVICE, LOAD, updates and deep nesting; report the form and dataset clauses."""
    toks, deepest = tokens(query, check=True)
    words = [t[1].upper() for t in toks if t[0] == "word"]
    form = next((w for w in words if w in FORMS), None)
    first = next((w for w in words if w not in ("PREFIX", "BASE", "VERSION")), None)
    if form is None or (first in UPDATES and words.index(first) < words.index(form)):
        if "LOAD" in words:
            raise Refused(400, LOAD_REFUSED)
        if first in UPDATES:
            raise Refused(400, UPDATE_REFUSED)
    default, named = _dataset_clauses(toks)
    return Inspection(form, default, named, deepest)


# A prologue (spaces, comments, PREFIX and BASE declarations) and then the query form.
_IRI_BODY = r"""[^<>"{}|^`\\\x00-\x20]*"""
_PLAIN_START = re.compile(
    rf"""(?:[\x20\t\r\n]+|\#[^\r\n]*
    |(?i:PREFIX)[\x20\t\r\n]+[A-Za-z0-9_.\-]*:[\x20\t\r\n]*<{_IRI_BODY}>
    |(?i:BASE)[\x20\t\r\n]*<{_IRI_BODY}>)*
    (?i:SELECT|ASK|CONSTRUCT|DESCRIBE)(?=[\x20\t\r\n{{(*?$<])""",
    re.VERBOSE,
)


# What a FROM / FROM NAMED clause could start as (lower-cased): `from`, spaces or comments,
# then `named`, an IRI or a prefixed name. Broader than the grammar on purpose.
_MAYBE_FROM = re.compile(
    r"from(?![a-z0-9_])(?:[\x20\t\r\n]+|\#[^\r\n]*)*(?:<|named|[a-z0-9_.\-]*:)"
)


def _plain(query: str) -> bool:
    """Whether `inspect` must pass this text with no dataset clause, proven without reading it
    token by token (most queries): ASCII text with no `service` anywhere and nothing that could
    start a FROM clause, fewer brackets in all than MAX_DEPTH, and a query form right after the
    prologue (so it is no update and no LOAD). Anything else is read in full."""
    if not query.isascii():
        return False
    lowered = query.lower()
    if "service" in lowered or _MAYBE_FROM.search(lowered):
        return False
    if query.count("{") + query.count("(") + query.count("[") > MAX_DEPTH:
        return False
    return _PLAIN_START.match(query) is not None


def has_dataset(query: str) -> bool:
    """`inspect(query).has_dataset`, refusing what `inspect` refuses, quickly when `_plain`."""
    return False if _plain(query) else inspect(query).has_dataset


def _dataset_clauses(toks: list[Token]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    prefixes: dict[str, str] = {}
    base = ""
    default: list[str] = []
    named: list[str] = []
    i = 0
    while i < len(toks):
        word = toks[i][1].upper() if toks[i][0] == "word" else ""
        if word == "BASE" and i + 1 < len(toks) and toks[i + 1][0] == "iri":
            base = urljoin(base, toks[i + 1][1][1:-1])
            i += 2
            continue
        if word == "PREFIX" and i + 2 < len(toks) and toks[i + 2][0] == "iri":
            name = toks[i + 1][1].rstrip(":")
            prefixes[name] = urljoin(base, toks[i + 2][1][1:-1])
            i += 3
            continue
        if word == "FROM":
            target = default
            j = i + 1
            if j < len(toks) and toks[j][0] == "word" and toks[j][1].upper() == "NAMED":
                target, j = named, j + 1
            if j < len(toks):
                iri = _iri(toks[j], prefixes, base)
                if iri is not None:
                    target.append(iri)
            i = j + 1
            continue
        i += 1
    return tuple(default), tuple(named)


def _iri(token: Token, prefixes: dict[str, str], base: str) -> str | None:
    kind, text, _ = token
    if kind == "iri":
        return urljoin(base, text[1:-1]) if base else text[1:-1]
    if kind == "pname":
        prefix, _, local = text.partition(":")
        if prefix not in prefixes:
            raise Refused(400, f"undeclared prefix {prefix!r} in a FROM clause")
        return prefixes[prefix] + re.sub(r"\\(.)", r"\1", local)
    return None


def strip_dataset_clauses(query: str) -> str:
    """The query without FROM / FROM NAMED clauses (for a remote store: the dataset travels as
    protocol parameters restricted to our graphs, so no store is asked to resolve an IRI)."""
    toks, _ = tokens(query)
    cut: list[tuple[int, int]] = []
    i = 0
    while i < len(toks):
        if toks[i][0] == "word" and toks[i][1].upper() == "FROM":
            j = i + 1
            if j < len(toks) and toks[j][0] == "word" and toks[j][1].upper() == "NAMED":
                j += 1
            if j < len(toks) and toks[j][0] in ("iri", "pname"):
                cut.append((toks[i][2], toks[j][2] + len(toks[j][1])))
                i = j + 1
                continue
        i += 1
    out, last = [], 0
    for start, stop in cut:
        out += [query[last:start], " "]
        last = stop
    out.append(query[last:])
    return "".join(out)
