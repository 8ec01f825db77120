"""Hostile parameter values never change a named query's structure (library level).

Values are resolved to terms or refused (UnknownTerm / ValueError) and bound by the engine,
so whatever arrives, the text Oxigraph parses is the file's own (plus a LIMIT/OFFSET tail that
depends on the page number only), the result columns stay the same, and the rows are a subset
of what the query gives with no values at all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyoxigraph as ox
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.kb.sources import PREFIXES, knowledge_files, load_store
from service.query.named import (
    NamedQuery,
    _segments,
    inline,
    load_queries,
    page_tail,
    prepare,
    resolver_for,
)

FIXTURE = Path(__file__).parent / "fixtures" / "queries" / "mini-kg.ttl"
QUERIES = load_queries()
# the shipped ontology (every term kind, every default) plus a few claims to find
STORE = load_store({"ontology": knowledge_files()["ontology"], "asserted": [FIXTURE]})
RESOLVER = resolver_for(STORE)

FRAGMENTS = [
    '"',
    "'",
    '"""',
    "'''",
    "{",
    "}",
    "} UNION {",
    " UNION ",
    "\n",
    "\r\n",
    "\t",
    "#",
    "# comment\n",
    ">",
    "<",
    "<http://evil.example/>",
    "http://evil.example/a>b",
    "https://w3id.org/cmpkg/condition/fibromyalgia> . ?s ?p ?o . <x",
    "\\",
    "\\u0022",
    "\\>",
    "?s",
    "$s",
    "?_condition_iri",
    ".",
    ";",
    ",",
    "(",
    ")",
    "FILTER(true)",
    "} } SELECT * {",
    "LIMIT 1",
    "OFFSET 9",
    "DROP ALL",
    "INSERT DATA { <a> <b> <c> }",
    "SERVICE <http://x/> {",
    "\x00",
    "\x7f",
    "^^<http://www.w3.org/2001/XMLSchema#integer>",
    "@en",
    "cond:",
    "MeSH:",
    "DOID:",
    "obo:",
    "_:b0",
    "%3E",
    "&gt;",
    "\u202e",
    "\ufeff",
    "é",
    "🏃",
    " " * 3,
]
KNOWN = [
    "fibromyalgia",
    "FMS",
    "MeSH:D005356",
    "DOID:631",
    "cond:osteoarthritis",
    "OA",
    "physical function",
    "FIQ total",
    "pain",
    "exercise",
    "Tai Ji",
    "aquatic exercise",
    "kinesiophobia",
    "disability",
    "Busch 2007",
    "src:geneen-2017",
    "cmp:ExerciseModality",
    PREFIXES["cond"] + "knee-osteoarthritis",
    f"<{PREFIXES['out']}pain-severity>",
]

hostile = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(FRAGMENTS + KNOWN), min_size=1, max_size=6).map("".join),
    st.tuples(st.sampled_from(KNOWN), st.sampled_from(FRAGMENTS)).map("".join),
    st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(KNOWN)).map("".join),
    st.sampled_from(KNOWN),
)
PAIRS = [(q, p.name) for q in sorted(QUERIES) for p in QUERIES[q].parameters]


def _aggregates(query: NamedQuery) -> set[str]:
    """Columns computed by aggregates: a narrower question may count less, so skip them."""
    select = query.text[query.text.index("SELECT") : query.text.index("WHERE")]
    return set(re.findall(r"AS\s+\?(\w+)\s*\)", select))


def _answer_columns(query: NamedQuery, variables: list[ox.Variable]) -> list[int]:
    skip = {p.variable for p in query.parameters} | _aggregates(query)
    return [i for i, v in enumerate(variables) if v.value not in skip]


def _unparameterised(name: str) -> tuple[list[ox.Variable], set[tuple[str, ...]]]:
    query = QUERIES[name]
    result = STORE.query(query.text, use_default_graph_as_union=True)
    keep = _answer_columns(query, result.variables)
    return result.variables, {tuple(str(row[i]) for i in keep) for row in result}


BASELINE = {name: _unparameterised(name) for name in QUERIES}


def check_structure(name: str, values: dict[str, str], page: int = 1) -> None:
    query = QUERIES[name]
    try:
        prepared = prepare(query, values, RESOLVER, page)
    except ValueError:  # UnknownTerm is a ValueError too: a clean refusal, a 4xx upstream
        return
    assert prepared.text == query.text + page_tail(query, page)
    for variable, term in prepared.substitutions.items():
        assert variable.value in {p.variable for p in query.parameters}
        assert isinstance(term, ox.NamedNode | ox.Literal)
    result = STORE.query(
        prepared.text, use_default_graph_as_union=True, substitutions=prepared.substitutions
    )
    variables, baseline = BASELINE[name]
    assert result.variables == variables
    keep = _answer_columns(query, result.variables)
    bound = sorted(tuple(str(row[i]) for i in keep) for row in result)
    assert set(bound) <= baseline
    # the same values written into the text (for remote stores) give the same answer
    inlined = STORE.query(inline(prepared), use_default_graph_as_union=True)
    assert inlined.variables == variables
    assert sorted(tuple(str(row[i]) for i in keep) for row in inlined) == bound


@settings(
    max_examples=1500, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(pair=st.sampled_from(PAIRS), value=hostile, page=st.integers(1, 3))
def test_one_hostile_value_at_a_time(pair: tuple[str, str], value: str, page: int) -> None:
    name, parameter = pair
    check_structure(name, {parameter: value}, page if QUERIES[name].pagination else 1)


@settings(
    max_examples=200, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_every_parameter_of_a_query_at_once(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(QUERIES)))
    values = {p.name: data.draw(hostile) for p in QUERIES[name].parameters}
    check_structure(name, values)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_values_that_resolve_still_leave_the_text_alone(name: str) -> None:
    # the same check with values known to resolve, so the binding path is always exercised
    query = QUERIES[name]
    values = {}
    for p in query.parameters:
        if p.kind == "literal":
            values[p.name] = '"} UNION { ?s ?p ?o } #'
        elif p.term_class:
            choices = RESOLVER.choices(p.term_class)
            if choices:
                values[p.name] = choices[0]
    check_structure(name, values)
    prepared = prepare(query, values, RESOLVER)
    assert len(prepared.substitutions) == len(values) + sum(
        1 for p in query.parameters if p.name not in values and p.default is not None
    )


@settings(max_examples=300, database=None, deadline=None)
@given(text=st.one_of(st.text(), st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join)))
def test_the_lexer_loses_nothing(text: str) -> None:
    # inline() rewrites only code pieces; the pieces must add up to the text exactly
    assert "".join(piece for _, piece in _segments(text)) == text
