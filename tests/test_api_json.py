"""One JSON convention on every JSON route (issue 14, item 7), on the shipped build.

Walks the answer of every JSON route (the API, the pages' JSON twins, the prescription, the
OpenAPI document, the operations routes, FHIR and the entity pages' JSON-LD) and fails on:
- an id (`id`, `@id`, `iri`) that is not an absolute IRI;
- a `label` that is not a string;
- a string that is the lexical form of a number under a key that holds numbers in the graph;
- an error (4xx/5xx) whose body is not RFC 9457 problem+json.
FHIR R5 fixes its own JSON: logical ids (the canonical IRI is `url`) and OperationOutcome
errors; its numbers and labels are walked all the same.
Two answers are RDF and keep the graph's exact terms: the entity pages' JSON-LD and the
export (value objects such as `{"@value": "0.41", "@type": "xsd:decimal"}`); there a number
must be such a typed value object, never a bare string. SPARQL results JSON (`format=json`)
is the W3C format, whose values are lexical forms by definition: it is the exact reference
the checks below compare with, not a walked answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.kb.build import ensure_artifact
from service.kb.sources import PREFIXES, load_dataset
from service.query import jsonld
from service.query.named import load_queries
from service.store.backends import EmbeddedStore
from service.vocab import NUMERIC_DATATYPES
from service.web import create_app

ARTIFACT = ensure_artifact()
QUERIES = load_queries()
XSD = PREFIXES["xsd"]
# `cond:x` is syntactically an IRI too (scheme "cond"): an id must name a web or URN scheme
ABSOLUTE_IRI = re.compile(r"^(https?://[^\s/]+/|urn:)[^\s<>\"{}|\\^`]*$")
NUMBER_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
PROBLEM_JSON = "application/problem+json"
FIBROMYALGIA = {
    "conditions": ["fibromyalgia"],
    "goals": ["physical function", "pain severity"],
    "pathologies": [{"pathology": "kinesiophobia", "score": 40, "scoreMin": 17, "scoreMax": 68.5}],
    "preferences": {"setting": "water"},
}


@pytest.fixture(scope="module")
def app() -> Iterator[Flask]:
    store = EmbeddedStore(load_dataset(ARTIFACT), "test-api-json", workers=1)
    try:
        yield create_app(store, {"SPARQL_TIMEOUT": 30.0}, artifact=ARTIFACT)
    finally:
        store.close()


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- what holds numbers -----------------------------------------------------------------------


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@pytest.fixture(scope="module")
def numeric_keys(client: FlaskClient) -> set[str]:
    """Keys under which the graph has numbers: every property whose values are numeric
    literals (its context term, and the page models' snake_case name), and every column a
    named query answers with numeric literals, as the SPARQL JSON results type them."""
    found = client.get(
        "/sparql",
        query_string={
            "query": "SELECT DISTINCT ?p WHERE { ?s ?p ?o FILTER(isNumeric(?o)) }",
        },
        headers={"Accept": "application/sparql-results+json"},
    ).get_json()
    names = {row["p"]["value"].rsplit("/", 1)[-1] for row in found["results"]["bindings"]}
    for name in QUERIES:
        names |= set(numeric_columns(client, name))
    assert {"estimate", "ciLower", "year", "rank", "numberOfStudies"} <= names
    return names | {snake(n) for n in names}


def numeric_columns(client: FlaskClient, name: str) -> dict[str, set[str]]:
    """Column -> the lexical forms of its numeric values, from the SPARQL JSON answer."""
    response = client.get(f"/api/queries/{name}", query_string=defaults(name, "json"))
    assert response.status_code == 200, (name, response.get_data(as_text=True))
    columns: dict[str, set[str]] = {}
    for row in response.get_json()["results"]["bindings"]:
        for column, term in row.items():
            if term.get("datatype") in NUMERIC_DATATYPES:
                columns.setdefault(column, set()).add(term["value"])
    return columns


def defaults(name: str, fmt: str | None = None) -> dict[str, str]:
    """Values for a question's required parameters (term-search needs a text)."""
    values = {p.name: "pain" for p in QUERIES[name].parameters if p.required}
    return {**values, **({"format": fmt} if fmt else {})}


# -- the walk ---------------------------------------------------------------------------------


def violations(
    value: Any, numeric: set[str], rdf: bool = False, ids: bool = True, path: str = ""
) -> list[str]:
    """What breaks the convention in a JSON value (the path of each offence)."""
    found: list[str] = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            found += violations(item, numeric, rdf, ids, f"{path}[{i}]")
        return found
    if not isinstance(value, dict):
        return found
    for key, item in value.items():
        here = f"{path}.{key}"
        if key == "@context":
            continue  # term definitions, not data (their @id are compact by design)
        if key == "properties" and isinstance(item, dict) and ".schema" in here:
            # a JSON Schema's property names (OpenAPI): each one's schema is walked, not as data
            for name, schema in item.items():
                found += violations(schema, set(), rdf, False, f"{here}.{name}")
            continue
        found += member_violations(key, item, here, numeric, rdf, ids)
        found += violations(item, numeric, rdf, ids, here)
    return found


def member_violations(
    key: str, item: Any, here: str, numeric: set[str], rdf: bool, ids: bool
) -> list[str]:
    """One member's own offences: an id, a label, a number."""
    found = []
    is_id = ids and key in ("id", "@id", "iri") and item is not None
    if is_id and not (isinstance(item, str) and ABSOLUTE_IRI.match(item)):
        found.append(f"{here}: id {item!r} is not an absolute IRI")
    if key == "label" and not rdf and not isinstance(item, str):
        found.append(f"{here}: label {item!r} is not a string")
    if key in numeric:
        found += number_violations(item, here, rdf)
    return found


def number_violations(item: Any, here: str, rdf: bool) -> list[str]:
    items = item if isinstance(item, list) else [item]
    found = []
    for one in items:
        if isinstance(one, str) and NUMBER_TEXT.match(one):
            found.append(f"{here}: {one!r} is a number written as a string")
        if isinstance(one, dict) and "@value" in one:
            typed = rdf and jsonld.compactor().expand(one.get("@type", "")) in NUMERIC_DATATYPES
            if not typed and "@language" not in one:
                found.append(f"{here}: {one!r} is a number as a value object, not a JSON number")
    return found


def problem_violations(response: Any) -> list[str]:
    """An error must be problem+json with the RFC 9457 members, its status the response's."""
    if response.status_code < 400:
        return []
    if response.mimetype != PROBLEM_JSON:
        return [f"error {response.status_code} is {response.mimetype}, not {PROBLEM_JSON}"]
    body = response.get_json()
    missing = [k for k in ("type", "title", "status", "detail") if k not in body]
    wrong = [] if body.get("status") == response.status_code else ["status member differs"]
    return [f"problem body lacks {missing}"] * bool(missing) + wrong


def requests() -> list[tuple[str, str, dict[str, Any]]]:
    """Every JSON route, its answers and its errors: (method, path, keyword arguments)."""
    get: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/queries", {}),
        ("GET", "/index.json", {}),
        ("GET", "/query.json", {}),
        ("GET", "/questions.json", {}),
        ("GET", "/evidence-map.json", {}),
        ("GET", "/evidence-map.json?outcome=pain%20severity", {}),
        ("GET", "/evidence.json?condition=fibromyalgia&modality=aerobic%20exercise", {}),
        ("GET", "/sof.json", {}),
        ("GET", "/sof.json?condition=knee%20osteoarthritis", {}),
        ("GET", "/sof?condition=fibromyalgia&format=json", {}),
        ("GET", "/prescribe?format=json", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("GET", "/fhir/metadata", {}),
        ("GET", "/fhir/Evidence", {}),
        ("GET", "/fhir/Evidence/body-aerobic-exercise--adverse-events--fibromyalgia", {}),
        ("GET", "/cmpkg/claim/busch-2007-aerobic-physical-function?format=jsonld", {}),
        ("GET", "/cmpkg/source/busch-2007", {"headers": {"Accept": "application/json"}}),
        ("GET", "/cmpkg/condition/fibromyalgia?format=jsonld", {}),
        ("POST", "/api/prescribe", {"json": FIBROMYALGIA}),
        ("POST", "/prescribe?format=json", {"data": {"conditions": "fibromyalgia"}}),
    ]
    for name, query in sorted(QUERIES.items()):
        values = defaults(name)
        get.append(("GET", f"/api/queries/{name}", {"query_string": values}))
        get.append(("GET", f"/questions/{name}.json", {"query_string": values}))
        if query.pagination:
            get.append(("GET", f"/api/queries/{name}", {"query_string": {**values, "page": 2}}))
    errors: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/queries/no-such-question", {}),
        ("GET", "/api/queries/modality-evidence?modality=aerobik", {}),
        ("GET", "/api/queries/modality-evidence?condition=pain", {}),  # ambiguous
        ("GET", "/api/queries/modality-evidence?page=0", {}),
        ("GET", "/api/queries/modality-evidence?format=xml", {}),
        ("GET", "/api/queries/term-search", {}),
        ("GET", "/questions/no-such-question.json", {}),
        ("GET", "/evidence-map.json?outcome=physical-functio", {}),
        ("GET", "/evidence.json?condition=fibromyalgia", {}),
        ("GET", "/sof.json?condition=knee-osteoarthritiz", {}),
        ("GET", "/cmpkg/claim/no-such-claim", {"headers": {"Accept": "application/json"}}),
        ("GET", "/fhir/Evidence/no-such-evidence", {}),
        ("GET", "/api/prescribe", {}),
        ("POST", "/api/prescribe", {"data": b"{not json", "content_type": "application/json"}),
        ("POST", "/api/prescribe", {"data": b"x", "content_type": "text/plain"}),
        ("POST", "/api/prescribe", {"json": {"conditions": ["fibromyalgia"]}}),
        ("POST", "/api/prescribe", {"json": {"conditions": ["fibromyalgi"], "goals": ["pain"]}}),
    ]
    return get + errors


def rule_pattern(rule: str) -> str:
    """A Flask rule as a regular expression over paths (a twin's suffix as `.json`)."""
    rule = re.sub(r"<any\([^)]*\):suffix>", "SUFFIX", rule)
    rule = re.sub(r"<[^>]+>", "VARIABLE", rule)
    return re.escape(rule).replace("SUFFIX", r"\.json").replace("VARIABLE", r"[^?]+")


def test_the_walk_covers_every_json_route(app: Flask) -> None:
    """A new JSON route fails here until it is walked: the API, `.json` twins, FHIR, ops."""
    walked = {re.sub(r"[?].*", "", path) for _, path, _ in requests()}
    rules = {r.rule for r in app.url_map.iter_rules()}
    json_rules = {r for r in rules if r.startswith(("/api/", "/fhir/")) or "'.json'" in r}
    json_rules |= {"/healthz", "/readyz", "/openapi.json", "/prescribe", "/cmpkg/<path:rest>"}
    # the published contexts are term definitions, checked by test_jsonld / test_prescribe_api
    json_rules -= {"/api/prescribe/context.jsonld"}
    leftover = {r for r in json_rules if not any(re.fullmatch(rule_pattern(r), w) for w in walked)}
    assert not leftover, f"walk these JSON routes too: {sorted(leftover)}"


def test_every_json_answer_keeps_the_convention(
    client: FlaskClient, numeric_keys: set[str]
) -> None:
    offences: list[str] = []
    for method, path, kwargs in requests():
        response = client.open(path, method=method, **kwargs)
        where = f"{method} {path} {kwargs.get('query_string', '')}"
        # FHIR R5 answers its errors with an OperationOutcome (application/fhir+json)
        if response.status_code >= 400 and not path.startswith("/fhir/"):
            offences += [f"{where}: {o}" for o in problem_violations(response)]
        assert "json" in (response.mimetype or ""), (where, response.mimetype)
        rdf = path.startswith("/cmpkg/")
        # FHIR R5 fixes its own ids (logical ids; the canonical IRI is `url`)
        ids = not path.startswith("/fhir/")
        found = violations(response.get_json(), numeric_keys, rdf, ids)
        offences += [f"{where}: {o}" for o in found[:5]]
    assert not offences, "\n".join(offences)


# -- numbers: the JSON number is the published value --------------------------------------------


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_numeric_columns_are_json_numbers_of_the_same_value(client: FlaskClient, name: str) -> None:
    """Each numeric literal of the SPARQL answer is, in the JSON-LD answer, a JSON number of
    exactly that value (the JSON text parsed as a decimal), and OpenAPI types the column."""
    exact = client.get(f"/api/queries/{name}", query_string=defaults(name, "json")).get_json()
    plain = client.get(f"/api/queries/{name}", query_string=defaults(name))
    rows = json.loads(plain.get_data(as_text=True), parse_float=Decimal)["results"]
    schema = client.get("/openapi.json").get_json()["components"]["schemas"][f"{name}.row"]
    parameters = {p.variable for p in QUERIES[name].parameters}
    assert len(rows) == len(exact["results"]["bindings"])
    for row, binding in zip(rows, exact["results"]["bindings"], strict=True):
        for column, term in binding.items():
            if term.get("datatype") not in NUMERIC_DATATYPES or column in parameters:
                continue
            key = column if column not in ("id", "type") else column + "Column"
            value = row[key]
            assert isinstance(value, int | Decimal) and not isinstance(value, bool), (key, value)
            assert Decimal(value) == Decimal(term["value"]), (key, value, term["value"])
            assert schema["properties"][key]["type"] in ("number", "integer"), key


def test_a_json_number_carries_the_published_value() -> None:
    """Python writes a float as the shortest text that reads back as the same double, so the
    JSON text has the published digits; trailing zeros go (same value, and the store keeps
    decimals canonical, without them)."""
    for lexical, text in [
        ("0.10", "0.1"),
        ("1.50", "1.5"),
        ("-0.495", "-0.495"),
        ("0.66", "0.66"),
        ("-10.16", "-10.16"),
        ("37", "37"),
        ("37.0", "37"),
        ("1E+2", "100"),
        ("0.1234567890123", "0.1234567890123"),
    ]:
        assert json.dumps(jsonld.json_number(lexical)) == text
    assert jsonld.json_number("INF") is None and jsonld.json_number("NaN") is None
    assert jsonld.json_number("not a number") is None


def test_every_figure_of_the_build_survives_as_a_json_number() -> None:
    """No numeric literal of the build loses digits on its way to a JSON number."""
    dataset = load_dataset(ARTIFACT)
    lost = []
    seen = 0
    for quad in dataset:
        obj = quad.object
        if getattr(obj, "datatype", None) is not None and obj.datatype.value in NUMERIC_DATATYPES:
            seen += 1
            number = jsonld.json_number(obj.value)
            if number is None or Decimal(json.dumps(number)) != Decimal(obj.value):
                lost.append(obj.value)
    assert seen > 100 and not lost, lost


def test_the_walk_sees_each_kind_of_offence() -> None:
    """The checker itself: a CURIE id, a value-object label and a numeric string are found."""
    bad = {
        "results": [
            {
                "claim": {"id": "claim:x", "label": {"@value": "X"}, "estimate": "0.66"},
                "source": {"id": PREFIXES["src"] + "x", "label": "X", "pmid": "123"},
            }
        ]
    }
    found = violations(bad, {"estimate"})
    assert len(found) == 3, found
    assert violations({"ci": {"ciLower": {"@value": "0.41", "@type": "xsd:decimal"}}}, {"ciLower"})
    assert not violations(
        {"ci": {"ciLower": {"@value": "0.41", "@type": "xsd:decimal"}}}, {"ciLower"}, rdf=True
    )
