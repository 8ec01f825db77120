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


def test_an_answer_with_more_row_marks_than_the_cap_is_counted(store):
    # JSON: three `{` per solution, so 40 solutions under a cap of 41 must be counted exactly.
    media = "application/sparql-results+json"
    answer = encode_solutions(store.query(QUERY), media, 41, lambda: store.query(QUERY))
    assert answer.rows == 40 and not answer.truncated
