"""Values written into a query's text, for stores that cannot bind them (a remote endpoint).

The embedded store binds parameter values as SEP-0007 substitutions and never sees them in the
text. SPARQL 1.1 Protocol has no such binding, so for a `RemoteStore` each `?_name` outside
comments, strings and IRIs becomes the RDF term, written by Oxigraph's serialiser (IRIs are
terms we hold, literals are escaped): no value can close a string or an IRI (grlc's way). The
`$_name` projections stay variables and come back unbound. `segments` is the one lexer that
tells code from comments, strings and IRIs; the named-query reader uses it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pyoxigraph as ox

_PARAMETER = re.compile(r"\?__?[A-Za-z0-9]+(?:_[A-Za-z0-9]+)?(?![A-Za-z0-9_])")


def inline(text: str, substitutions: Mapping[ox.Variable, ox.NamedNode | ox.Literal]) -> str:
    """The text with each bound `?_name` replaced by its term, everywhere it is code."""
    by_name = {f"?{v.value}": str(term) for v, term in substitutions.items()}
    if not by_name:
        return text
    return "".join(
        _PARAMETER.sub(lambda m: by_name.get(m.group(0), m.group(0)), piece) if code else piece
        for code, piece in segments(text)
    )


def segments(text: str) -> list[tuple[bool, str]]:
    """The query cut into (is_code, piece): comments, strings and IRIs are not code."""
    pieces: list[tuple[bool, str]] = []
    code_start, i, n = 0, 0, len(text)
    while i < n:
        end = _end_of_non_code(text, i)
        if end < 0:
            i += 1
            continue
        if code_start < i:
            pieces.append((True, text[code_start:i]))
        pieces.append((False, text[i:end]))
        code_start = i = end
    if code_start < n:
        pieces.append((True, text[code_start:]))
    return pieces


def _end_of_non_code(text: str, i: int) -> int:
    """Where the comment, IRI or string starting at `i` ends; -1 when none starts there."""
    c, n = text[i], len(text)
    if c == "#":
        j = text.find("\n", i)
        return n if j < 0 else j
    if c == "<":
        # an IRI reference: kept whole so a '#' fragment is not read as a comment
        j = i + 1
        while j < n and text[j] not in '<>"{}|^`\\ \t\r\n':
            j += 1
        return j + 1 if j < n and text[j] == ">" else -1
    if c in "'\"":
        quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
        j = i + len(quote)
        while j < n and not text.startswith(quote, j):
            j += 2 if text[j] == "\\" else 1
        return min(n, j + len(quote))
    return -1
