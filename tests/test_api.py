"""`/api/queries`: the named questions over HTTP, on the shipped KG (ontology + data, loaded
by the one loader; no build needed).

Expected answers below are the hand-worked ones of tests/test_competency.py, asked through the
web API with the different ways a person names a term; a parity test checks every query's API
answer against the library's; a hypothesis test throws hostile values at every parameter.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pyoxigraph as ox
import pytest
from conftest import http, shipped_client
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from querying import run_query

from service.kb import sources
from service.kb.build import ensure_artifact
from service.kb.sources import PREFIXES, load_dataset
from service.query.named import load_queries
from service.store.results import term_json

QUERIES = load_queries()
# The built artifact (asserted + inferred): since issue 12, modalities-improving-outcome and
# the body-* questions read the bodies of evidence the rules derive.
SHIPPED = load_dataset(ensure_artifact())
# The one wording (service/vocab.py): API, pages and prescriptions carried three until issue 10.
DISCLAIMER = (
    "Decision support for clinicians and guideline authors. Not advice to patients: "
    "read the certainty and the source of every figure before using it."
)


@pytest.fixture(scope="module")
def client() -> Iterator[FlaskClient]:
    yield from shipped_client(SHIPPED)


def curie(value: str) -> str:
    return sources.curie(value) or value


def cell(binding: dict | None) -> object:
    """CURIEs for IRIs, Decimals for numbers, plain text otherwise (as test_competency)."""
    if binding is None:
        return None
    if binding["type"] == "uri":
        return curie(binding["value"])
    if binding.get("datatype") in (PREFIXES["xsd"] + "decimal", PREFIXES["xsd"] + "integer"):
        return D(binding["value"])
    return binding["value"]


def rows(client: FlaskClient, url: str, columns: tuple[str, ...]) -> list[tuple]:
    response = client.get(url, headers={"Accept": "application/sparql-results+json"})
    assert response.status_code == 200, response.get_data(as_text=True)
    bindings = response.get_json()["results"]["bindings"]
    return [tuple(cell(b.get(c)) for c in columns) for b in bindings]


# -- the list ---------------------------------------------------------------------------------


def test_the_list_names_every_query_with_its_parameters(client: FlaskClient) -> None:
    body = client.get("/api/queries").get_json()
    assert body["disclaimer"] == DISCLAIMER
    listed = {q["name"]: q for q in body["queries"]}
    assert set(listed) == set(QUERIES)
    improving = listed["modalities-improving-outcome"]
    assert improving["href"] == "/api/queries/modalities-improving-outcome"
    assert improving["perPage"] == 100
    params = {p["name"]: p for p in improving["parameters"]}
    assert set(params) == {"condition", "outcome"}
    assert params["condition"]["default"] == PREFIXES["cond"] + "fibromyalgia"
    assert PREFIXES["cond"] + "knee-osteoarthritis" in params["condition"]["choices"]
    assert PREFIXES["mod"] + "aerobic-exercise" not in params["condition"]["choices"]


# -- exact answers ----------------------------------------------------------------------------

IMPROVING = [
    ("mod:aerobic-exercise", "out:physical-function",
     "claim:bidonde-2017-aerobic-physical-function",
     "measure:md", D("-10.16"), D("-15.39"), D("-4.94"), "cert:low", "src:bidonde-2017"),
    ("mod:aerobic-exercise", "out:physical-function", "claim:busch-2007-aerobic-physical-function",
     "measure:smd", D("0.66"), D("0.41"), D("0.92"), "cert:moderate", "src:busch-2007"),
    # Changed (issue 13): Bidonde 2014's FIQ total claims left this answer; multidimensional
    # function is no longer narrower than physical function.
    ("mod:aquatic-exercise", "out:physical-function",
     "claim:bidonde-2014-aquatic-physical-function-md",
     "measure:md", D("-4.35"), D("-7.77"), D("-0.94"), "cert:moderate", "src:bidonde-2014"),
    ("mod:aquatic-exercise", "out:physical-function",
     "claim:bidonde-2014-aquatic-physical-function-smd",
     "measure:smd", D("-0.44"), D("-0.76"), D("-0.11"), "cert:moderate", "src:bidonde-2014"),
]  # fmt: skip
IMPROVING_COLUMNS = ("modality", "outcome", "claim", "measure", "estimate", "ciLower", "ciUpper",
                     "certainty", "source")  # fmt: skip


@pytest.mark.parametrize(
    "condition",
    [
        "",  # the default
        "fibromyalgia",
        "FIBROMYALGIA",
        "FMS",  # a synonym
        "fibromyalgia syndrome",
        "cond:fibromyalgia",
        PREFIXES["cond"] + "fibromyalgia",
        "MeSH:D005356",  # external codes
        "DOID:631",
        "http://id.nlm.nih.gov/mesh/D005356",
    ],
)
def test_modalities_improving_physical_function_in_fibromyalgia(
    client: FlaskClient, condition: str
) -> None:
    query = f"?condition={condition}&outcome=physical%20function" if condition else ""
    url = "/api/queries/modalities-improving-outcome" + query
    assert rows(client, url, IMPROVING_COLUMNS) == IMPROVING


def test_overview_summary(client: FlaskClient) -> None:
    columns = ("finding", "numberOfReviews", "numberOfStudies", "numberOfParticipants", "subsetOf")
    assert rows(client, "/api/queries/overview-summary?overview=Geneen%202017", columns) == [
        ("finding:geneen-2017-included-evidence", 21, 381, 37143, None),
        ("finding:geneen-2017-exercise-vs-no-exercise", None, 264, 19642,
         "finding:geneen-2017-included-evidence"),
    ]  # fmt: skip


def test_unreported_outcomes(client: FlaskClient) -> None:
    columns = ("outcome", "reportingStatus", "finding")
    assert rows(client, "/api/queries/unreported-outcomes", columns) == [
        ("out:adherence", "report:not-assessable", "finding:geneen-2017-adherence"),
        ("out:healthcare-use", "report:not-reported", "finding:geneen-2017-healthcare-use"),
        ("out:quality-of-life", "report:not-reported", "finding:yamato-2015-quality-of-life"),
    ]
    geneen = rows(client, "/api/queries/unreported-outcomes?source=src:geneen-2017", columns)
    assert [r[0] for r in geneen] == ["out:adherence", "out:healthcare-use"]


def test_evidence_gaps_in_fibromyalgia(client: FlaskClient) -> None:
    got = rows(
        client, "/api/queries/evidence-gaps?condition=fibromyalgia", ("condition", "outcome")
    )
    assert got == [
        ("cond:fibromyalgia", f"out:{o}")
        for o in ("adherence", "aerobic-capacity", "death", "fatigue", "healthcare-use",
                  "menstrual-distress", "psychological-function")
    ]  # fmt: skip


def test_term_search_takes_a_literal(client: FlaskClient) -> None:
    got = rows(client, "/api/queries/term-search?text=KINESIO", ("term", "matched"))
    assert got == [("path:fear-of-movement", "kinesiophobia")]


REQUIRED = {"term-search": {"text": "pain"}}  # queries without a default for some parameter


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_query_answers_as_the_library_does(client: FlaskClient, name: str) -> None:
    query = QUERIES[name]
    values = REQUIRED.get(name, {})
    expected = run_query(SHIPPED, query, values)
    variables = [v.value for v in expected.variables]
    want = [{v: term_json(row[v]) for v in variables if row[v] is not None} for row in expected]
    response = client.get(
        f"/api/queries/{name}",
        query_string=values,  # page 1 of the file's own page size, as the library gives
        headers={"Accept": "application/sparql-results+json"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["head"]["vars"] == variables
    assert body["results"]["bindings"] == want


# -- refusals ---------------------------------------------------------------------------------


def test_unknown_values_answer_404_with_suggestions(client: FlaskClient) -> None:
    response = client.get("/api/queries/modalities-improving-outcome?condition=fibromyalgi")
    assert response.status_code == 404
    body = response.get_json()
    assert body["parameter"] == "condition"
    assert body["value"] == "fibromyalgi"
    assert body["suggestions"][0] == "fibromyalgia"
    # a modality is a known term, but not a condition
    wrong_kind = client.get("/api/queries/modalities-improving-outcome?condition=yoga")
    assert wrong_kind.status_code == 404
    assert "is not a" in wrong_kind.get_json()["detail"]
    # RFC 9457 problem details, the one error format (issue 14)
    assert response.mimetype == "application/problem+json"
    assert body["type"].endswith("/unknown-term") and body["status"] == 404 and body["title"]


def test_unknown_query_is_404(client: FlaskClient) -> None:
    response = client.get("/api/queries/no-such-question")
    assert response.status_code == 404
    assert "modalities-improving-outcome" in response.get_json()["queries"]


@pytest.mark.parametrize(
    "query",
    [
        "modalities-improving-outcome?page=0",
        "modalities-improving-outcome?page=-1",
        "modalities-improving-outcome?page=two",
        "modalities-improving-outcome?per_page=0",
        "modalities-improving-outcome?per_page=1001",
        "modalities-improving-outcome?colour=red",
        "modalities-improving-outcome?condition=FMS&condition=OA",
        "guideline-recommendations?page=2",
        "guideline-recommendations?per_page=5",
    ],
)
def test_malformed_calls_are_400(client: FlaskClient, query: str) -> None:
    response = client.get("/api/queries/" + query)
    assert response.status_code == 400
    assert response.get_json()["status"] == 400


def test_unacceptable_media_type_is_406(client: FlaskClient) -> None:
    response = client.get("/api/queries/unreported-outcomes", headers={"Accept": "image/png"})
    assert response.status_code == 406


# -- pages and formats ------------------------------------------------------------------------


def test_pages_split_the_answer_and_link_the_next(client: FlaskClient) -> None:
    # per_page 3 (was 4): the answer has four rows since issue 13 (six before), so two pages.
    base = "/api/queries/modalities-improving-outcome?format=json&per_page=3"
    first = client.get(base)
    second = client.get(base + "&page=2")
    # Links to next, previous, first and last pages, and the total (issue 14: paginated
    # answers said neither how many rows there are nor where the other pages are).
    url = "<http://localhost/api/queries/modalities-improving-outcome?format=json&per_page=3&page="
    assert first.headers["Link"] == (
        f'{url}2>; rel="next", {url}1>; rel="first", {url}2>; rel="last"'
    )
    assert second.headers["Link"] == (
        f'{url}1>; rel="prev", {url}1>; rel="first", {url}2>; rel="last"'
    )
    assert first.headers["X-Total-Count"] == second.headers["X-Total-Count"] == str(len(IMPROVING))
    claims = [
        curie(b["claim"]["value"])
        for r in (first, second)
        for b in r.get_json()["results"]["bindings"]
    ]
    assert claims == [row[2] for row in IMPROVING]
    ld = client.get("/api/queries/modalities-improving-outcome?per_page=3&page=2").get_json()
    assert ld["page"] == 2 and ld["perPage"] == 3 and ld["next"] is None
    assert len(ld["results"]) == 1 and ld["total"] == len(IMPROVING)


def test_csv_by_format_or_accept(client: FlaskClient) -> None:
    by_format = client.get("/api/queries/unreported-outcomes?format=csv")
    by_accept = client.get("/api/queries/unreported-outcomes", headers={"Accept": "text/csv"})
    assert by_format.content_type.startswith("text/csv")
    assert by_format.data == by_accept.data
    # Labels and IRIs in separate, named columns (issue 14); the query's own ?outcomeLabel
    # is the label column, and the unbound $__source_iri parameter is no column at all.
    table = list(csv.DictReader(io.StringIO(by_format.get_data(as_text=True))))
    assert [r["outcome IRI"] for r in table] == [
        PREFIXES["out"] + "adherence",
        PREFIXES["out"] + "healthcare-use",
        PREFIXES["out"] + "quality-of-life",
    ]
    assert [r["outcome"] for r in table] == ["adherence", "healthcare use", "quality of life"]
    assert not [c for c in table[0] if c.startswith("_") or c.endswith("Label")]


def test_json_ld_is_the_default_and_frames_claims(client: FlaskClient) -> None:
    response = client.get("/api/queries/modalities-improving-outcome")
    assert response.content_type == "application/ld+json"
    assert response.headers["Vary"] == "Accept"
    body = response.get_json()
    assert body["@context"] == "http://localhost/context.jsonld"
    assert body["disclaimer"] == DISCLAIMER
    # issue 14: every id is a full IRI (CURIEs cannot be the one convention: the claim,
    # finding, measure ... prefixes clash with terms and columns), parameters included
    assert body["parameters"] == {
        "condition": PREFIXES["cond"] + "fibromyalgia",
        "outcome": PREFIXES["out"] + "physical-function",
    }
    busch = body["results"][1]["claim"]
    assert busch["id"] == PREFIXES["claim"] + "busch-2007-aerobic-physical-function"
    # The built artifact (issue 12: the question reads bodies) also holds the OWL RL types
    # (SourcedStatement ...): every type the graph gives the claim, EvidenceClaim among them.
    rdf_type = ox.NamedNode(PREFIXES["rdf"] + "type")
    types = {
        q.object.value.removeprefix(PREFIXES["cmp"])
        for q in SHIPPED.quads_for_pattern(ox.NamedNode(busch["id"]), rdf_type, None)
    }
    assert "EvidenceClaim" in types and sorted(busch["type"]) == sorted(types)
    # issue 14: numbers are JSON numbers (they were exact strings); ids full IRIs
    assert busch["ci"] == {"ciLower": 0.41, "ciUpper": 0.92}
    assert busch["estimate"] == 0.66
    assert busch["certainty"]["id"] == PREFIXES["cert"] + "moderate"
    assert busch["certainty"]["rank"] == 3
    assert busch["source"]["id"] == PREFIXES["src"] + "busch-2007"
    assert busch["source"]["doi"] == "10.1002/14651858.CD003786.pub2"
    assert busch["source"]["year"] == 2007
    assert busch["intervention"]["label"] == "aerobic exercise"
    # every claim of every row carries its certainty
    assert all("certainty" in row["claim"] for row in body["results"])
    # issue 14: labels are strings (source names were {"@value": ...}), and a query's own
    # ?modalityLabel column is the modality's label, not a column of its own
    assert busch["source"]["label"] == "Busch 2007"
    first = body["results"][0]
    assert "modalityLabel" not in first and first["modality"]["label"] == "aerobic exercise"

    def labels(value: object) -> list[object]:
        if isinstance(value, dict):
            found = [v for k, v in value.items() if k == "label"]
            return found + [x for v in value.values() for x in labels(v)]
        if isinstance(value, list):
            return [x for v in value for x in labels(v)]
        return []

    assert all(isinstance(label, str) for label in labels(body["results"]))


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_claim_in_any_answer_carries_certainty(client: FlaskClient, name: str) -> None:
    body = client.get(f"/api/queries/{name}", query_string=REQUIRED.get(name, {})).get_json()
    assert body["disclaimer"] == DISCLAIMER
    for row in body["results"]:
        for value in row.values():
            if isinstance(value, dict) and value.get("type") == "EvidenceClaim":
                assert "certainty" in value and "source" in value


# -- hostile values ---------------------------------------------------------------------------

FRAGMENTS = ['"', "'", '"""', "{", "}", "} UNION {", " UNION { ?s ?p ?o }", "\n", "\r\n", "#",
             "# comment\n", ">", "<", "<http://evil.example/>", "http://evil.example/a>b",
             PREFIXES["cond"] + "fibromyalgia> . ?s ?p ?o . <x", "\\", "\\u0022", "?s", "$s",
             "?_condition_iri", ".", ";", "FILTER(true)", "} } SELECT * {", "LIMIT 1",
             "DROP ALL", "SERVICE <http://x/> {", "\x00", "^^<http://www.w3.org/2001/XMLSchema#integer>",
             "@en", "cond:", "MeSH:", "_:b0", "%3E", "\u202e", "é", "🏃"]  # fmt: skip
KNOWN = ["fibromyalgia", "FMS", "MeSH:D005356", "cond:osteoarthritis", "physical function",
         "aquatic exercise", "kinesiophobia", "Geneen 2017", "src:busch-2007",
         PREFIXES["out"] + "pain-severity"]  # fmt: skip
hostile = st.one_of(
    st.text(max_size=30),
    st.lists(st.sampled_from(FRAGMENTS + KNOWN), min_size=1, max_size=5).map("".join),
    st.tuples(st.sampled_from(KNOWN), st.sampled_from(FRAGMENTS)).map("".join),
    st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(KNOWN)).map("".join),
)
PAIRS = [(q, p.name) for q in sorted(QUERIES) for p in QUERIES[q].parameters]
VARIABLES = {
    name: [v.value for v in SHIPPED.query(q.text).variables] for name, q in QUERIES.items()
}


def check_hostile(client: FlaskClient, name: str, values: dict[str, str], page: str) -> None:
    args = {**values, "format": "json"}
    if QUERIES[name].pagination:
        args["page"] = page
    response = client.get(f"/api/queries/{name}", query_string=args)
    # 422: a value that names several terms (ambiguous), since issue 14 tells it from unknown
    assert response.status_code in (200, 400, 404, 422), (values, response.get_data(as_text=True))
    body = response.get_json()
    if response.status_code != 200:
        # problem details (RFC 9457) since issue 14: "detail" replaced "error"
        assert body["status"] == response.status_code and body["detail"] and body["title"]
        return
    # the structure is the query's own: same columns, every parameter bound to one term
    assert body["head"]["vars"] == VARIABLES[name]
    for binding in body["results"]["bindings"]:
        assert set(binding) <= set(VARIABLES[name])


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(pair=st.sampled_from(PAIRS), value=hostile, page=st.sampled_from(["1", "2", "x", "0"]))
def test_hostile_values_one_parameter_at_a_time(
    client: FlaskClient, pair: tuple[str, str], value: str, page: str
) -> None:
    check_hostile(client, pair[0], {pair[1]: value}, page)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hostile_values_everywhere_at_once(client: FlaskClient, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(QUERIES)))
    values = {p.name: data.draw(hostile) for p in QUERIES[name].parameters}
    check_hostile(client, name, values, "1")


# -- remote store mode ------------------------------------------------------------------------

REMOTE_CALLS = [
    "/api/queries/modality-evidence?modality=aerobic%20exercise&condition=FMS&format=json",
    "/api/queries/modality-evidence?modality=exercise&outcome=pain%20severity",
    "/api/queries/modality-evidence?modality=exercise&per_page=1&page=2&format=csv",
    "/api/queries/modalities-improving-outcome?condition=%22%7D%20UNION%20%7B&format=json",
    "/api/queries/modalities-improving-outcome?condition=a%3Eb%0A%23x&format=json",
    "/api/queries/term-search?text=%22)%20%7D%20UNION%20%7B%20%3Fs%20%3Fp%20%3Fo%20%7D%20%23&format=json",
    "/api/queries/term-search?text=fibro&format=csv",
    "/api/queries/term-search?text=fibro&per_page=1&page=2&format=json",
]  # fmt: skip


@pytest.mark.parametrize("path", REMOTE_CALLS)
def test_remote_store_answers_as_the_embedded_one(
    server: str, remote_server: str, path: str
) -> None:
    embedded = http(server + path)
    remote = http(remote_server + path)
    assert embedded[0] == remote[0]
    assert embedded[0] in (200, 404)
    if embedded[0] == 200 and embedded[1]["content-type"] == "application/ld+json":
        # the same document but for the server's own address in @context
        one, two = json.loads(embedded[2]), json.loads(remote[2])
        assert one.pop("@context").startswith(server)
        assert two.pop("@context").startswith(remote_server)
        assert one == two
    elif embedded[0] == 200:
        assert embedded[2] == remote[2]


def test_remote_json_ld_frames_claims(remote_server: str) -> None:
    status, _, body = http(
        remote_server + "/api/queries/modality-evidence?modality=aerobic%20exercise"
        "&condition=FMS&outcome=physical%20function"
    )
    assert status == 200
    results = json.loads(body)["results"]
    assert len(results) == 1
    claim = results[0]["claim"]
    # issue 14: numbers as JSON numbers, ids as full IRIs, whichever store answers
    assert claim["ci"] == {"ciLower": 0.41, "ciUpper": 0.92}
    assert claim["certainty"]["id"] == PREFIXES["cert"] + "moderate"
    assert ox.NamedNode(claim["id"]).value.endswith("busch-2007-aerobic-physical-function")


# -- the README section -----------------------------------------------------------------------


def test_docs_give_one_working_curl_line_per_question(client: FlaskClient) -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    calls = re.findall(r"curl -s '\$CMPKG(/api/queries/([a-z-]+)[^']*)'", text)
    assert sorted(name for _, name in calls) == sorted(QUERIES)
    for url, _ in calls:
        assert client.get(url).status_code == 200, url
