"""Answers written straight in the format asked for equal those cut through TSV, at any cap."""

from __future__ import annotations

import pyoxigraph as ox
import pytest

from service.store import results
from service.store.results import SOLUTION_FORMATS, encode_solutions

QUERY = "SELECT ?s ?o WHERE { ?s <urn:p> ?o } ORDER BY ?s"


@pytest.fixture(scope="module")
def store() -> ox.Store:
    data = ox.Store()
    for i in range(40):
        obj = (
            ox.Literal(f'line\nbreak, "quoted" {i}') if i % 3 else ox.Literal(str(i), language="en")
        )
        data.add(ox.Quad(ox.NamedNode(f"urn:s{i:02d}"), ox.NamedNode("urn:p"), obj))
    return data


@pytest.mark.parametrize("media", list(SOLUTION_FORMATS))
@pytest.mark.parametrize("cap", [1, 3, 39, 40, 41, 1000])
def test_direct_answers_equal_the_capped_tsv_path(store, media, cap):
    direct = encode_solutions(store.query(QUERY), media, cap, lambda: store.query(QUERY))
    through_tsv = encode_solutions(store.query(QUERY), media, cap)  # no `again`: the TSV path
    assert direct.body == through_tsv.body
    assert direct.truncated == through_tsv.truncated == (cap < 40)


# TSV is always written through the capped line counter, so it never needs `again`.
@pytest.mark.parametrize("media", [m for m in SOLUTION_FORMATS if m != "text/tab-separated-values"])
def test_past_the_direct_limit_the_solutions_are_read_again(store, media, monkeypatch):
    monkeypatch.setattr(results, "DIRECT_LIMIT", 64)  # every answer here is longer
    asked = []

    def again() -> ox.QuerySolutions:
        asked.append(1)
        return store.query(QUERY)

    answer = encode_solutions(store.query(QUERY), media, 30, again)
    assert answer.truncated and asked == [1]
    assert answer.body == encode_solutions(store.query(QUERY), media, 30).body


@pytest.mark.parametrize("media", [m for m in SOLUTION_FORMATS if m != "text/tab-separated-values"])
def test_a_long_answer_with_few_row_marks_is_not_read_back(store, media):
    # 40 solutions of ~100 bytes each: longer than cap x MIN_ROW_BYTES, yet too few `{`,
    # `<result>` or line breaks to reach the cap, so it is served as written (rows uncounted).
    cap = 300
    direct = encode_solutions(store.query(QUERY), media, cap, lambda: store.query(QUERY))
    assert len(direct.body) > cap * results.MIN_ROW_BYTES[media]
    assert direct.rows == -1 and not direct.truncated
    assert direct.body == encode_solutions(store.query(QUERY), media, cap).body


def test_an_answer_that_could_be_over_the_cap_is_counted(store):
    # JSON: 40 solutions and the 3 objects around them: under a cap of 41, counted exactly.
    media = "application/sparql-results+json"
    answer = encode_solutions(store.query(QUERY), media, 41, lambda: store.query(QUERY))
    assert answer.rows == 40 and not answer.truncated


TRICKY = [
    ox.Literal('{"type":"uri","value":"x"}'),  # what a term looks like, inside a literal
    ox.Literal("}},{ <result> \n\r\n {"),
    ox.Literal("plain"),
    ox.NamedNode("urn:x%7B%7D"),
    ox.BlankNode("b1"),
]


@pytest.mark.parametrize("media", [m for m in SOLUTION_FORMATS if m != "text/tab-separated-values"])
@pytest.mark.parametrize("rows", [0, 1, 7, 40])
def test_most_rows_is_never_fewer_than_the_solutions(media, rows):
    # Variables named like the format's own keys, unbound values, literals that mimic terms.
    data = ox.Store()
    for i in range(rows):
        data.add(ox.Quad(ox.NamedNode(f"urn:s{i}"), ox.NamedNode("urn:p"), TRICKY[i % len(TRICKY)]))
    query = (
        "SELECT ?type ?value ?head ?none WHERE { ?type <urn:p> ?value "
        "OPTIONAL { ?type <urn:q> ?none } BIND(IF(isLiteral(?value), ?value, 1) AS ?head) }"
    )
    body = data.query(query).serialize(format=SOLUTION_FORMATS[media])
    assert rows <= results.most_rows(body, media)
    # ... and the answer served at a cap of exactly `rows` is whole and never cut.
    answer = encode_solutions(data.query(query), media, max(rows, 1), lambda: data.query(query))
    assert not answer.truncated and answer.body == body
