"""`POST /api/prescribe` over the Flask app on the real build: answers, errors, size cap."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.kb.build import ensure_artifact
from service.kb.sources import parse_file
from service.prescribe.engine import DISCLAIMER
from service.store.backends import EmbeddedStore
from service.vocab import curie
from service.web import create_app

RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"

FIBROMYALGIA = {
    "conditions": ["fibromyalgia"],
    "goals": ["physical function"],
    "preferences": {"setting": "water"},
}


def cid(node: dict) -> str:
    """A node's @id read as its CURIE, so expectations stay readable: the answer gives every
    @id as a full IRI (issue 14, one convention for ids), which this checks first."""
    iri = node["@id"]
    assert iri.startswith(("https://", "http://")), iri
    return curie(iri) or iri


@pytest.fixture(scope="module")
def client() -> Iterator[FlaskClient]:
    import pyoxigraph as ox

    artifact = ensure_artifact()
    store = ox.Store()
    store.extend(parse_file(artifact))
    embedded = EmbeddedStore(store, "test-prescribe", workers=1)
    try:
        app = create_app(embedded, {"PRESCRIBE_ARTIFACT": str(artifact)})
        yield app.test_client()
    finally:
        embedded.close()


def post(client: FlaskClient, body: object, content_type: str = "application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/prescribe", data=data, content_type=content_type)


def test_answer_is_json_ld_with_disclaimer_and_ranking(client):
    response = post(client, FIBROMYALGIA)
    assert response.status_code == 200
    assert response.mimetype == "application/ld+json"
    doc = response.get_json()
    assert "@context" in doc and doc["disclaimer"] == DISCLAIMER
    assert [cid(r["exerciseModality"]) for r in doc["recommendations"]] == [
        "mod:aquatic-exercise",
        "mod:aerobic-exercise",
    ]
    for r in doc["recommendations"]:
        assert r["rulesFired"] and "certaintyReasons" in r and cid(r["certainty"])


def test_same_request_same_bytes(client):
    assert post(client, FIBROMYALGIA).data == post(client, FIBROMYALGIA).data


def test_json_ld_input_with_our_context(client):
    body = {
        "@context": "/api/prescribe/context.jsonld",
        "@type": "Presentation",
        "conditions": ["cond:fibromyalgia"],
        "goals": ["out:physical-function"],
        "preferences": {"setting": "water"},
    }
    response = post(client, body, "application/ld+json")
    assert response.status_code == 200
    plain = post(client, FIBROMYALGIA).get_json()
    assert response.get_json()["recommendations"] == plain["recommendations"]


def test_foreign_context_is_refused(client):
    body = {**FIBROMYALGIA, "@context": {"conditions": "http://example.org/x"}}
    response = post(client, body, "application/ld+json")
    assert response.status_code == 422
    assert response.get_json()["violations"][0]["field"] == "@context"


def test_context_is_served(client):
    response = client.get("/api/prescribe/context.jsonld")
    assert response.status_code == 200
    context = response.get_json()["@context"]
    assert context["conditions"]["@id"] == "cmp:presentsCondition"


def test_unknown_condition_is_422_with_suggestions(client):
    response = post(client, {"conditions": ["fibromialgia"], "goals": ["pain"]})
    assert response.status_code == 422
    doc = response.get_json()
    (violation,) = doc["violations"]
    assert violation["field"] == "conditions[0]"
    assert "fibromyalgia" in violation["suggestions"]
    assert doc["disclaimer"] == DISCLAIMER


def test_score_out_of_range_is_422_naming_field_and_shape(client):
    body = {
        "conditions": ["fibromyalgia"],
        "goals": ["pain"],
        "pathologies": [
            {"pathology": "pain catastrophizing", "score": -3, "scoreMin": 0, "scoreMax": 50}
        ],
    }
    response = post(client, body)
    assert response.status_code == 422
    fields = {(v["field"], v["rule"].split(" ")[0]) for v in response.get_json()["violations"]}
    assert ("pathologies[0].scoreMin", "shape:pathology-status-score-min") in fields
    # One error format (issue 14): the SHACL report is an extension of the problem document.
    doc = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert doc["type"].endswith("/invalid-presentation") and doc["status"] == 422


def test_other_errors_share_the_problem_shape(client):
    # Routes without their own handler (an unknown path) answer the same RFC 9457 shape.
    missing = client.get("/no-such-path")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert missing.get_json()["title"] == "Not Found" and missing.get_json()["detail"]
    wrong = client.get("/api/prescribe")
    assert wrong.status_code == 405 and wrong.mimetype == "application/problem+json"
    assert wrong.get_json()["disclaimer"] == DISCLAIMER and wrong.get_json()["violations"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"conditions": "fibromyalgia", "goals": {"pain": 1}},
        {"conditions": [3], "goals": ["pain"]},
        {"conditions": ["fibromyalgia"], "goals": ["pain"], "pathologies": "anxiety"},
        {"conditions": ["fibromyalgia"], "goals": ["pain"], "preferences": ["water"]},
        {"conditions": ["fibromyalgia"], "goals": ["pain"], "pathologies": [{"score": 3}]},
        {"conditions": ["fibromyalgia"], "goal": ["pain"]},
        [1, 2, 3],
        "fibromyalgia",
        None,
    ],
)
def test_wrong_types_are_4xx_with_a_message(client, body):
    response = post(client, body)
    assert response.status_code in (400, 422)
    doc = response.get_json()
    # Errors are RFC 9457 problem details now (issue 14, one error format): `detail`, not
    # `error`, and the disclaimer as an extension member.
    assert response.mimetype == "application/problem+json"
    assert doc["status"] == response.status_code and doc["title"] and doc["type"]
    assert doc["detail"] and doc["disclaimer"] == DISCLAIMER


@pytest.mark.parametrize("raw", [b"", b"   ", b"{not json", b"\xff\xfe"])
def test_empty_or_malformed_body_is_400(client, raw):
    response = post(client, raw)
    assert response.status_code == 400
    assert response.get_json()["disclaimer"] == DISCLAIMER


def test_one_megabyte_body_is_413(client):
    padding = "x" * (1024 * 1024)
    response = post(client, json.dumps({**FIBROMYALGIA, "pad": padding}).encode())
    assert response.status_code == 413
    # problem+json (issue 14): the message is the `detail` member.
    assert "limit" in response.get_json()["detail"]


def test_wrong_content_type_is_415(client):
    response = post(client, json.dumps(FIBROMYALGIA).encode(), "text/plain")
    assert response.status_code == 415


def test_get_is_not_allowed(client):
    response = client.get("/api/prescribe")
    assert response.status_code == 405
    assert response.get_json()["disclaimer"] == DISCLAIMER


def test_cli_prescribe(tmp_path):
    from click.testing import CliRunner

    from service.cli import main

    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(FIBROMYALGIA))
    bad.write_text(json.dumps({"conditions": ["no such condition"], "goals": ["pain"]}))
    runner = CliRunner()
    answer = runner.invoke(main, ["prescribe", str(good)])
    assert answer.exit_code == 0, answer.output
    doc = json.loads(answer.stdout)
    assert cid(doc["recommendations"][0]["exerciseModality"]) == "mod:aquatic-exercise"
    summary = runner.invoke(main, ["prescribe", "--format", "summary", str(good)])
    assert summary.stdout.startswith("For physical function in fibromyalgia: 1. aquatic exercise")
    refused = runner.invoke(main, ["prescribe", str(bad)])
    assert refused.exit_code == 2
    assert json.loads(refused.stdout)["violations"][0]["field"] == "conditions[0]"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "conditions": JSON | st.just(["fibromyalgia"]),
        "goals": JSON | st.just(["pain"]),
        "pathologies": JSON | st.just([{"pathology": "anxiety", "score": 3}]),
        "preferences": JSON | st.just({"setting": "water"}),
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=FIELDS | JSON)
def test_hostile_bodies_never_crash(client, body):
    response = post(client, body)
    assert response.status_code in (200, 400, 422)
    assert response.get_json()["disclaimer"] == DISCLAIMER


def test_answer_is_valid_json_ld_with_every_curie_expanded(client):
    from pyld import jsonld

    doc = post(client, FIBROMYALGIA).get_json()
    nquads = jsonld.to_rdf(doc, {"format": "application/n-quads"})
    assert "<https://w3id.org/cmpkg/modality/aquatic-exercise>" in nquads
    # A CURIE whose prefix the context lacks would stay as an IRI with a fake scheme.
    objects = [line.split(" ", 2)[2] for line in nquads.splitlines()]
    assert not [o for o in objects if o.startswith("<") and not o.startswith(("<http", "<_:"))]


def test_the_rules_fired_read_back_as_the_knowledge_bases_rules(client):
    """`rulesFired` holds short names ("prescribe-candidate"); as JSON-LD they must expand to
    the rules in the graph (rule:prescribe-candidate), not to IRIs relative to wherever the
    document was read (typed @id, pyld resolved them against http://example.org/base/)."""
    from pyld import jsonld

    rule_type = "https://w3id.org/cmpkg/vocab/Rule"
    rules = {
        q.subject.value
        for q in parse_file(ensure_artifact())
        if q.predicate.value == RDF_TYPE and q.object.value == rule_type
    }
    doc = post(client, FIBROMYALGIA).get_json()
    fired = {name for rec in doc["recommendations"] for name in rec["rulesFired"]}
    assert fired, "the fibromyalgia answer names the rules behind its recommendations"
    nquads = jsonld.to_rdf(doc, {"format": "application/n-quads"})
    generated = {
        line.split(" ")[2].strip("<>")
        for line in nquads.splitlines()
        if " <http://www.w3.org/ns/prov#wasGeneratedBy> " in line
    }
    assert {f"https://w3id.org/cmpkg/rule/{name}" for name in fired} <= generated
    assert generated <= rules, generated - rules


def test_a_fractional_score_in_the_answer_reads_back_as_a_valid_number(client):
    """Numbers in the answer are JSON numbers under no numeric coercion (issue 14): JSON-LD
    reads 44.5 as "4.45E1"^^xsd:double; under the input context's xsd:decimal it would be
    "4.45E1"^^xsd:decimal, which is not a decimal."""
    from pyld import jsonld

    body = {
        **FIBROMYALGIA,
        "pathologies": [
            {"pathology": "kinesiophobia", "score": 44.5, "scoreMin": 17, "scoreMax": 68}
        ],
    }
    doc = post(client, body).get_json()
    assert doc["secondaryPathologies"][0]["score"] == 44.5
    nquads = jsonld.to_rdf(doc, {"format": "application/n-quads"})
    decimals = re.findall(r'"([^"]*)"\^\^<http://www.w3.org/2001/XMLSchema#decimal>', nquads)
    assert all(re.fullmatch(r"[+-]?\d*\.?\d+", d) for d in decimals), decimals
    assert '"4.45E1"^^<http://www.w3.org/2001/XMLSchema#double>' in nquads
