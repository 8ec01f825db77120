"""The named queries rewritten for speed (issue 15) answer exactly what they answered before.

Each file in tests/oracle_queries/ is a query's text as it was before the rewrite. On the
shipped build (the reasoned artifact the service serves, over the union of its graphs) a
rewritten query and its oracle must give the same multiset of rows: with the defaults, for
many values of each parameter, for combinations that select one body, and, when every
parameter is optional, as raw text with nothing bound (what /sparql runs). A query whose text
needs a parameter (`?_name`) is never run without it (the API applies the default or
refuses), so that is not one of its answers: modality-evidence now walks the subtypes from
the bound modality, which needs it bound. The ORDER BY clauses are the same, so pages keep
their order. How fast the queries are is measured in benchmarks/, never here.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TypeVar

import pyoxigraph as ox
import pytest
from querying import resolver_for

from service.kb.sources import PREFIXES, parse_file
from service.query.named import NamedQuery, load_queries, prepare, read_query

ORACLES = Path(__file__).parent / "oracle_queries"
REWRITTEN = sorted(p.stem for p in ORACLES.glob("*.rq"))
QUERIES: dict[str, NamedQuery] = load_queries()
CMP = PREFIXES["cmp"]
SAMPLES_PER_PARAMETER = 6  # a spread of each kind's terms; every one would take minutes
TEXTS = ["pain", "KINESIO", "exercise", "walk", "no such term anywhere"]
DECORATOR = re.compile(r"^#\+.*$", re.MULTILINE)
TYPES = [CMP + "Condition", CMP + "Outcome", CMP + "ExerciseModality", CMP + "SecondaryPathology"]

Row = tuple[str | None, ...]
T = TypeVar("T")


@pytest.fixture(scope="module")
def built() -> ox.Store:
    from service.kb.build import ensure_artifact

    store = ox.Store()
    store.extend(parse_file(ensure_artifact()))
    return store


def rows(store: ox.Store, query: NamedQuery, values: dict[str, str] | None) -> Counter[Row]:
    """Every row (no page tail) as a multiset; `values=None` runs the raw text, nothing bound."""
    substitutions: dict[ox.Variable, ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple] = {}
    if values is not None:
        substitutions.update(prepare(query, values, resolver_for(store)).substitutions)
    result = store.query(query.text, use_default_graph_as_union=True, substitutions=substitutions)
    assert isinstance(result, ox.QuerySolutions)
    names = [v.value for v in result.variables]
    return Counter(
        tuple(None if term is None else str(term) for term in (row[n] for n in names))
        for row in result
    )


def spread(values: list[T], count: int) -> list[T]:
    """`count` values spread evenly over a sorted list (all of them when it is short)."""
    if len(values) <= count:
        return values
    step = len(values) / count
    return [values[int(i * step)] for i in range(count)]


def body_terms(store: ox.Store) -> list[dict[str, str]]:
    """The modality, outcome and condition of a spread of the derived bodies."""
    found = store.query(
        f"SELECT ?body ?modality ?outcome ?condition WHERE {{ ?body a <{CMP}EvidenceBody> ;"
        f" <{CMP}modality> ?modality ; <{CMP}outcome> ?outcome ; <{CMP}condition> ?condition }}"
        " ORDER BY ?body",
        use_default_graph_as_union=True,
    )
    assert isinstance(found, ox.QuerySolutions)
    combos = [
        {k: row[k].value for k in ("body", "modality", "outcome", "condition")} for row in found
    ]
    assert combos, "the shipped build derives no body of evidence"
    return spread(combos, 5)


def cases(store: ox.Store, query: NamedQuery) -> list[dict[str, str] | None]:
    """Parameter values to compare on: defaults, each parameter alone, whole bodies, raw text."""
    resolver = resolver_for(store)
    required = {p.name: (p.default or TEXTS[0]) for p in query.parameters if p.required}
    # `?_name` (one underscore) is bound on every call, from the value or the default
    always_bound = any(not p.variable.startswith("__") for p in query.parameters)
    found: list[dict[str, str] | None] = [dict(required)]
    if not always_bound:
        found.append(None)
    for p in query.parameters:
        if p.kind == "iri" and p.term_class is not None:
            choices = spread(resolver.choices(p.term_class), SAMPLES_PER_PARAMETER)
        elif p.kind == "iri":
            choices = TYPES
        else:
            choices = TEXTS
        found.extend({**required, p.name: value} for value in choices)
    names = {p.name for p in query.parameters}
    for combo in body_terms(store):
        found.append({**required, **{k: v for k, v in combo.items() if k in names}})
        if "body" in names:
            found.append({**required, "body": combo["body"]})
    return found


def order_by(text: str) -> str:
    return " ".join(text[text.rindex("ORDER BY") :].split())


@pytest.mark.parametrize("name", REWRITTEN)
def test_the_rewrite_answers_as_its_oracle(built: ox.Store, name: str) -> None:
    oracle = read_query(ORACLES / f"{name}.rq")
    rewritten = QUERIES[name]
    assert oracle.text.splitlines()[0].startswith("# Oracle: the pre-rewrite text")
    assert rewritten.text != oracle.text  # an oracle is kept only for a rewritten query
    assert rewritten.variables == oracle.variables
    assert [(p.name, p.kind, p.default) for p in rewritten.parameters] == [
        (p.name, p.kind, p.default) for p in oracle.parameters
    ]
    assert order_by(rewritten.text) == order_by(oracle.text)
    answered = 0
    for values in cases(built, rewritten):
        expected = rows(built, oracle, values)
        assert rows(built, rewritten, values) == expected, values
        answered += bool(expected)
    assert answered >= 2, "the comparison must include cases that return rows"


def test_every_oracle_is_a_named_query() -> None:
    assert REWRITTEN and set(REWRITTEN) <= set(QUERIES)
    for name in REWRITTEN:
        # the decorators are the served query's: grlc, the API and OpenAPI read the same
        oracle = read_query(ORACLES / f"{name}.rq").text
        assert DECORATOR.findall(QUERIES[name].text) == DECORATOR.findall(oracle)
