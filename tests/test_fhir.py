"""FHIR R5: `cmpkg export --format fhir` and `/fhir` (service/fhir, service/web/fhir.py).

Two knowledge graphs are mapped: the real build (`ensure_artifact`) and the shipped ontology +
data/ with tests/fixtures/fhir/bodies.trig, bodies of evidence in the contract's shape (a
fixture: its bodies are no rating of the evidence). Every expected value is asked of the graph
with SPARQL, never written here: the round trips read the exported Bundle back (as plain
JSON, numbers as Decimal) and compare each claim's and body's figures, terms and certainty
with the graph's.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import fhir.resources
import pyoxigraph as ox
import pytest
from conftest import BIN, shipped_client
from fhir.resources import get_fhir_model_class
from fhir.resources.bundle import Bundle
from flask.testing import FlaskClient

from service.fhir.bundle import export_quads
from service.fhir.codes import (
    ATTRIBUTE_ESTIMATE_TYPE,
    CERTAINTY_RATING,
    CERTAINTY_TYPE,
    EXT_RATING_ORIGIN,
)
from service.kb.sources import knowledge_files, load_store, parse_file, sparql_prefixes

ROOT = Path(__file__).resolve().parent.parent
BODIES = ROOT / "tests" / "fixtures" / "fhir" / "bodies.trig"
HL7_RATING = CERTAINTY_RATING + "#"
HL7_TYPE = CERTAINTY_TYPE + "#"
EXTRA_PREFIXES = "PREFIX hl7: <http://terminology.hl7.org/CodeSystem/>\n"


# --- the two graphs and their Bundles ---------------------------------------------------------


def _fixture_quads() -> list[ox.Quad]:
    files = knowledge_files()
    store = load_store({"ontology": files["ontology"], "asserted": files["asserted"]})
    store.extend(parse_file(BODIES))
    return list(store)


@pytest.fixture(scope="module")
def artifact() -> Path:
    from service.kb.build import ensure_artifact

    return Path(ensure_artifact())


@pytest.fixture(scope="module")
def quads(artifact: Path) -> dict[str, list[ox.Quad]]:
    return {"shipped": parse_file(artifact), "fixture": _fixture_quads()}


@pytest.fixture(scope="module")
def stores(quads: dict[str, list[ox.Quad]]) -> dict[str, ox.Store]:
    found = {}
    for name, qs in quads.items():
        store = ox.Store()
        store.extend(qs)
        found[name] = store
    return found


@pytest.fixture(scope="module")
def exported(quads: dict[str, list[ox.Quad]]) -> dict[str, bytes]:
    return {name: export_quads(qs) for name, qs in quads.items()}


GRAPHS = ("shipped", "fixture")


def select(store: ox.Store, text: str) -> list[dict[str, Any]]:
    result = store.query(sparql_prefixes() + EXTRA_PREFIXES + text, use_default_graph_as_union=True)
    assert isinstance(result, ox.QuerySolutions)
    names = [v.value for v in result.variables]
    return [{n: (None if s[n] is None else s[n].value) for n in names} for s in result]


def read_bundle(data: bytes) -> dict[str, Any]:
    return json.loads(data, parse_float=Decimal)


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def by_reference(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
        for e in bundle["entry"]
    }


def iri_of(bundle_index: dict[str, dict[str, Any]], reference: dict[str, str]) -> str:
    """Follow a reference inside the Bundle to the resource's identifier (our IRI)."""
    target = bundle_index[reference["reference"]]
    return target["identifier"][0]["value"]


def origin(entry: dict[str, Any]) -> str | None:
    return next(
        (e["valueCode"] for e in entry.get("extension", []) if e["url"] == EXT_RATING_ORIGIN),
        None,
    )


def code(concept: dict[str, Any], system: str) -> str | None:
    return next((c["code"] for c in concept.get("coding", []) if c["system"] == system), None)


def hl7(iri: str | None, base: str) -> str | None:
    return iri[len(base) :] if iri and iri.startswith(base) else None


def num(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# --- validation and determinism ---------------------------------------------------------------


def test_the_models_are_fhir_r5() -> None:
    assert fhir.resources.__fhir_version__ == "5.0.0"


@pytest.mark.parametrize("graph", GRAPHS)
def test_every_exported_resource_validates_with_r5_models(graph, exported) -> None:
    data = exported[graph]
    Bundle.model_validate_json(data)  # the whole Bundle, every nested resource with it
    bundle = read_bundle(data)
    assert bundle["type"] == "collection"
    kinds: dict[str, int] = defaultdict(int)
    for entry in json.loads(data)["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert entry["fullUrl"].endswith(f"/{resource['resourceType']}/{resource['id']}")
        assert len(resource["id"]) <= 64
        kinds[resource["resourceType"]] += 1
    assert set(kinds) == {"Citation", "EvidenceVariable", "Evidence", "StructureDefinition"}


@pytest.mark.parametrize("graph", GRAPHS)
def test_every_extension_used_is_defined_in_the_bundle(graph, exported) -> None:
    bundle = read_bundle(exported[graph])
    defined = {
        r["url"]: r["differential"]["element"][-1]["type"][0]["code"]
        for r in resources(bundle, "StructureDefinition")
    }
    used: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for ext in node.get("extension", []):
                [value] = [k for k in ext if k.startswith("value")]
                used.add((ext["url"], value.removeprefix("value")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(
        [
            r
            for r in (e["resource"] for e in bundle["entry"])
            if r["resourceType"] != "StructureDefinition"
        ]
    )
    assert used
    assert {url for url, _ in used} == set(defined)  # each definition is used somewhere
    for url, kind in used:  # and each use has the defined type (valueCode <-> code)
        assert kind.lower() == defined[url].lower(), url


@pytest.mark.parametrize("graph", GRAPHS)
def test_every_reference_resolves_inside_the_bundle(graph, exported) -> None:
    bundle = read_bundle(exported[graph])
    index = by_reference(bundle)
    references: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                references.append(node["reference"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(bundle)
    assert references
    assert [r for r in references if r not in index] == []


@pytest.mark.parametrize("graph", GRAPHS)
def test_one_resource_per_source_term_claim_and_body(graph, stores, exported) -> None:
    store, bundle = stores[graph], read_bundle(exported[graph])

    def iris(rtype: str) -> list[str]:
        return sorted(r["identifier"][0]["value"] for r in resources(bundle, rtype))

    typed = "SELECT DISTINCT ?s { ?s a/rdfs:subClassOf* cmp:Source }"
    sources = [r["s"] for r in select(store, typed)]
    evidence = [
        r["s"]
        for r in select(
            store,
            "SELECT DISTINCT ?s { { ?s a cmp:EvidenceClaim } UNION { ?s a cmp:EvidenceBody } }",
        )
    ]
    terms = [
        r["t"]
        for r in select(
            store,
            """SELECT DISTINCT ?t {
        { ?x a cmp:EvidenceClaim ; cmp:condition|cmp:intervention|cmp:comparator|cmp:outcome ?t }
        UNION { ?x a cmp:EvidenceBody ; cmp:condition|cmp:modality|cmp:outcome ?t } }""",
        )
    ]
    assert iris("Citation") == sorted(sources)
    assert iris("Evidence") == sorted(evidence)
    assert iris("EvidenceVariable") == sorted(terms)


def test_the_bundle_is_deterministic(artifact: Path, quads, exported, tmp_path: Path) -> None:
    # The CLI on the build gives the bytes the library gave in this process: two processes,
    # each with its own hash seed (the CLI's is set to differ from ours, as a second CLI run's
    # would by chance), give the same bytes.
    out = tmp_path / "bundle.json"
    ours = os.environ.get("PYTHONHASHSEED", "")  # unset or "random": a random seed here
    seed = str(int(ours) % 4294967295 + 1) if ours.isdigit() else "0"
    result = subprocess.run(
        [str(BIN / "cmpkg"), "export", "--format", "fhir", "--artifact", str(artifact),
         "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONHASHSEED": seed},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == exported["shipped"]
    # The order in which a store hands back statements does not leak into the Bundle.
    assert export_quads(list(reversed(quads["shipped"]))) == exported["shipped"]


def test_a_long_iri_gets_a_short_unique_id_and_keeps_its_iri(exported) -> None:
    bundle = read_bundle(exported["fixture"])
    iri = (
        "https://w3id.org/cmpkg/body/"
        "strengthening-and-stretching--physical-function--chronic-musculoskeletal-pain"
    )
    [found] = [r for r in resources(bundle, "Evidence") if r["url"] == iri]
    assert len(found["id"]) <= 64 and found["id"].startswith("body-strengthening")
    assert found["identifier"] == [{"system": "urn:ietf:rfc:3986", "value": iri}]


# --- round trip: claims -------------------------------------------------------------------------

CLAIM_FIGURES = """
SELECT ?claim ?estimate ?lower ?upper ?studies ?participants ?certainty ?rating ?status ?source
WHERE {
  ?claim a cmp:EvidenceClaim ; cmp:certainty ?certainty ; cmp:curationStatus ?status ;
         cmp:source ?source .
  OPTIONAL { ?claim cmp:estimate ?e } OPTIONAL { ?claim cmp:nntb ?n }
  OPTIONAL { ?claim cmp:ciLower ?l } OPTIONAL { ?claim cmp:nntbLower ?nl }
  OPTIONAL { ?claim cmp:ciUpper ?u } OPTIONAL { ?claim cmp:nntbUpper ?nu }
  OPTIONAL { ?claim cmp:numberOfStudies ?studies }
  OPTIONAL { ?claim cmp:numberOfParticipants ?participants }
  OPTIONAL { ?certainty skos:exactMatch ?rating
             FILTER(STRSTARTS(STR(?rating), STR(hl7:certainty-rating))) }
  BIND(COALESCE(?e, ?n) AS ?estimate) BIND(COALESCE(?l, ?nl) AS ?lower)
  BIND(COALESCE(?u, ?nu) AS ?upper)
}
"""
CLAIM_TERMS = """
SELECT ?claim ?role ?term WHERE {
  VALUES (?p ?role) { (cmp:condition "population") (cmp:intervention "exposure")
                      (cmp:comparator "referenceExposure") (cmp:outcome "measuredVariable") }
  ?claim a cmp:EvidenceClaim ; ?p ?term .
}
"""
CLAIM_DOWNGRADES = """
SELECT ?claim ?type WHERE {
  ?claim a cmp:EvidenceClaim ; cmp:ratedDownFor ?d . ?d skos:exactMatch ?type
  FILTER(STRSTARTS(STR(?type), STR(hl7:certainty-type)))
}
"""
IMPRECISE = "SELECT ?claim { ?claim a cmp:EvidenceClaim ; cmp:imprecisionConcern true }"


@pytest.mark.parametrize("graph", GRAPHS)
def test_round_trip_every_claim(graph, stores, exported) -> None:
    store, bundle = stores[graph], read_bundle(exported[graph])
    index = by_reference(bundle)
    evidence = {r["url"]: r for r in resources(bundle, "Evidence")}
    figures = select(store, CLAIM_FIGURES)
    assert figures, "the graph has claims"
    assert len({r["claim"] for r in figures}) == len(figures), "one row per claim"
    terms: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for row in select(store, CLAIM_TERMS):
        terms[row["claim"]].add((row["role"], row["term"]))
    downgrades: dict[str, set[str | None]] = defaultdict(set)
    for row in select(store, CLAIM_DOWNGRADES):
        downgrades[row["claim"]].add(hl7(row["type"], HL7_TYPE))
    imprecise = {r["claim"] for r in select(store, IMPRECISE)}
    levels = select(store, "SELECT ?s ?l { ?s a cmp:CertaintyLevel ; rdfs:label ?l }")
    labels = {r["s"]: r["l"] for r in levels}

    for row in figures:
        resource = evidence[row["claim"]]
        [stat] = resource.get("statistic", [{}])
        quantity = stat.get("quantity", {}).get("value")
        assert num(row["estimate"]) == (None if quantity is None else Decimal(quantity)), row
        ci = stat.get("attributeEstimate", [{}])[0]
        if row["lower"] is not None or row["upper"] is not None:
            assert ci["level"] == 95
            assert code(ci["type"], ATTRIBUTE_ESTIMATE_TYPE) == "C53324"
        bounds = ci.get("range", {})
        assert num(row["lower"]) == bounds.get("low", {}).get("value"), row
        assert num(row["upper"]) == bounds.get("high", {}).get("value"), row
        sample = stat.get("sampleSize", {})
        assert num(row["studies"]) == sample.get("numberOfStudies"), row
        assert num(row["participants"]) == sample.get("numberOfParticipants"), row
        # terms: each variable role and the IRI its EvidenceVariable identifies
        found = {
            (v["variableRole"]["coding"][0]["code"], iri_of(index, v["observed"]))
            for v in resource["variableDefinition"]
        }
        assert found == terms[row["claim"]], row["claim"]
        # certainty as the source published it, with the HL7 certainty-rating code
        [published] = [c for c in resource["certainty"] if origin(c) == "source"]
        assert code(published["type"], CERTAINTY_TYPE) == "Overall"
        assert code(published["rating"], CERTAINTY_RATING) == hl7(row["rating"], HL7_RATING)
        assert published["rating"]["text"] == labels[row["certainty"]]
        sub = {code(s["type"], CERTAINTY_TYPE) for s in published.get("subcomponent", [])}
        assert sub == downgrades[row["claim"]]
        # the project's imprecision heuristic is its own entry, never the source's
        project = [c for c in resource["certainty"] if origin(c) == "project"]
        assert bool(project) == (row["claim"] in imprecise)
        assert all(c["rater"] == "cmp-kg" for c in project)
        # source and curation status
        [source] = [a for a in resource["relatedArtifact"] if a["type"] == "derived-from"]
        assert iri_of(index, source["resourceReference"]) == row["source"]
        assert published["rater"] == index[source["resourceReference"]["reference"]]["title"]
        [status] = [e for e in resource["extension"] if e["url"].endswith("/curation-status")]
        coding = status["valueCoding"]
        assert coding["system"] + coding["code"] == row["status"]


# --- round trip: bodies of evidence -----------------------------------------------------------

BODY_FACTS = """
SELECT ?body ?conclusion ?certainty ?rating ?directness ?status WHERE {
  ?body a cmp:EvidenceBody ; cmp:conclusion ?conclusion ; cmp:certainty ?certainty ;
        cmp:evidenceDirectness ?directness ; cmp:curationStatus ?status .
  OPTIONAL { ?certainty skos:exactMatch ?rating
             FILTER(STRSTARTS(STR(?rating), STR(hl7:certainty-rating))) }
}
"""
BODY_LINKS = """
SELECT ?body ?link ?x WHERE {
  VALUES ?link { cmp:includesClaim cmp:carriedBy cmp:condition cmp:modality cmp:outcome }
  ?body a cmp:EvidenceBody ; ?link ?x .
}
"""
PROJECT_DOWNGRADES = """
SELECT ?body ?r ?type ?reason WHERE {
  ?body a cmp:EvidenceBody ; cmp:ratingDown ?r . ?r cmp:domain ?d ; cmp:reason ?reason .
  ?d skos:exactMatch ?type
  FILTER(STRSTARTS(STR(?type), STR(hl7:certainty-type)))
}
"""
CAPS = """
SELECT ?body ?rating ?sourceLabel WHERE {
  ?body a cmp:EvidenceBody ; cmp:certaintyCappedBy ?f .
  ?f cmp:certainty ?c ; cmp:source ?s . ?s rdfs:label ?sourceLabel .
  OPTIONAL { ?c skos:exactMatch ?rating
             FILTER(STRSTARTS(STR(?rating), STR(hl7:certainty-rating))) }
}
"""
LINK = {"includesClaim": "composed-of", "carriedBy": "derived-from"}


@pytest.mark.parametrize("graph", GRAPHS)
def test_round_trip_every_body_of_evidence(graph, stores, exported) -> None:
    store, bundle = stores[graph], read_bundle(exported[graph])
    index = by_reference(bundle)
    evidence = {r["url"]: r for r in resources(bundle, "Evidence")}
    facts = select(store, BODY_FACTS)
    count = select(store, "SELECT (COUNT(DISTINCT ?b) AS ?n) { ?b a cmp:EvidenceBody }")
    assert len(facts) == int(count[0]["n"] or 0), "every body has one conclusion and certainty"
    # the real build has its bodies since the bodies branch was merged; the fixture has three
    assert facts and (graph != "fixture" or len(facts) == 3)
    links: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in select(store, BODY_LINKS):
        links[(row["body"], row["link"].rsplit("/", 1)[1])].add(row["x"])
    reasons: dict[tuple[str, str, str | None], set[str]] = defaultdict(set)
    for row in select(store, PROJECT_DOWNGRADES):
        reasons[(row["body"], row["r"], hl7(row["type"], HL7_TYPE))].add(row["reason"])
    project: dict[str, set[tuple[str | None, frozenset[str]]]] = defaultdict(set)
    for (body_iri, _, kind), texts in reasons.items():
        project[body_iri].add((kind, frozenset(texts)))
    caps: dict[str, set[tuple[str | None, str]]] = defaultdict(set)
    for row in select(store, CAPS):
        caps[row["body"]].add((hl7(row["rating"], HL7_RATING), row["sourceLabel"]))

    rating_rules: dict[str, set[str]] = defaultdict(set)
    for row in select(
        store,
        """SELECT ?body ?rule { ?body a cmp:EvidenceBody .
            ?d cmp:derivedSubject ?body ; cmp:derivedProperty cmp:certainty ;
               prov:wasGeneratedBy ?rule }""",
    ):
        rating_rules[row["body"]].add(row["rule"])

    for row in facts:
        body = row["body"]
        resource = evidence[body]
        ext = {e["url"].rsplit("/", 1)[1]: e for e in resource["extension"]}
        concl = ext["conclusion"]["valueCoding"]
        assert concl["system"] + concl["code"] == row["conclusion"]
        assert ext["evidence-directness"]["valueCode"] == row["directness"]
        status = ext["curation-status"]["valueCoding"]
        assert status["system"] + status["code"] == row["status"]
        # the project's rating with the project's downgrades only
        [rated] = [c for c in resource["certainty"] if origin(c) == "project"]
        assert rated["rater"] == "cmp-kg" and code(rated["type"], CERTAINTY_TYPE) == "Overall"
        assert {e["valueUri"] for e in rated["extension"] if "valueUri" in e} == rating_rules[body]
        assert code(rated["rating"], CERTAINTY_RATING) == hl7(row["rating"], HL7_RATING)
        found = {  # one downgrade per rating-down, its reasons (one per mismatch) in words
            (code(s["type"], CERTAINTY_TYPE), frozenset(s["description"].split("\n\n")))
            for s in rated.get("subcomponent", [])
        }
        assert all(
            code(s["rating"], CERTAINTY_RATING) == "downcode1"
            for s in rated.get("subcomponent", [])
        )
        assert found == project[body]
        assert all(origin(s) == "project" for s in rated.get("subcomponent", []))
        # a source's own rating of the question stays the source's
        sources = {
            (code(c["rating"], CERTAINTY_RATING), c["rater"])
            for c in resource["certainty"]
            if origin(c) == "source"
        }
        assert sources == caps[body]
        # claims included and carrying, and the question's terms
        for link, kind in LINK.items():
            found_claims = {
                iri_of(index, a["resourceReference"])
                for a in resource.get("relatedArtifact", [])
                if a["type"] == kind
            }
            assert found_claims == links[(body, link)], (body, link)
        roles = {"population": "condition", "exposure": "modality", "measuredVariable": "outcome"}
        for v in resource["variableDefinition"]:
            role = v["variableRole"]["coding"][0]["code"]
            if role in roles:
                assert {iri_of(index, v["intended"])} == links[(body, roles[role])]


def test_project_downgrades_never_show_as_the_sources(exported) -> None:
    # The fixture's indirect body is rated down by the project; the claims it includes keep
    # only what their sources published (none of them was rated down for indirectness).
    bundle = read_bundle(exported["fixture"])
    index = by_reference(bundle)
    evidence = {r["url"]: r for r in resources(bundle, "Evidence")}
    body = evidence["https://w3id.org/cmpkg/body/exercise--pain-severity--chronic-pain"]
    [rated] = [c for c in body["certainty"] if origin(c) == "project"]
    [down] = rated["subcomponent"]
    assert code(down["type"], CERTAINTY_TYPE) == "Indirectness"
    assert "doi:10.1016/j.jclinepi.2011.04.014" in down["note"][0]["text"]
    [method] = [a for a in body["relatedArtifact"] if a["type"] == "documentation"]
    assert (
        index[method["resourceReference"]["reference"]]["citedArtifact"]["identifier"][0]["value"]
        == "10.1016/j.jclinepi.2011.04.014"
    )
    for artifact in body["relatedArtifact"]:
        if artifact["type"] == "documentation":
            continue
        claim = index[artifact["resourceReference"]["reference"]]
        for certainty in claim["certainty"]:
            if origin(certainty) == "source":
                assert all(
                    code(s["type"], CERTAINTY_TYPE) != "Indirectness"
                    for s in certainty.get("subcomponent", [])
                )


# --- /fhir through the real Flask app ---------------------------------------------------------

FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def client(stores) -> Iterator[FlaskClient]:
    yield from shipped_client(stores["fixture"])  # type: ignore[misc]


def fhir_get(client: FlaskClient, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    return json.loads(response.get_data(), parse_float=Decimal)


def test_metadata_is_a_capability_statement(client) -> None:
    body = fhir_get(client, "/fhir/metadata")
    get_fhir_model_class("CapabilityStatement").model_validate(
        json.loads(client.get("/fhir/metadata").get_data())
    )
    assert body["fhirVersion"] == "5.0.0" and FHIR_JSON in body["format"]
    [rest] = body["rest"]
    served = {r["type"]: r for r in rest["resource"]}
    assert set(served) == {"Citation", "Evidence", "EvidenceVariable", "StructureDefinition"}
    assert {p["name"] for p in served["Evidence"]["searchParam"]} == {
        "condition",
        "intervention",
        "outcome",
    }


def test_every_exported_resource_is_served_as_exported(client, exported) -> None:
    bundle = read_bundle(exported["fixture"])
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert fhir_get(client, f"/fhir/{resource['resourceType']}/{resource['id']}") == resource


SEARCH_EXPECTED = """
SELECT DISTINCT ?e WHERE {
  { ?e a cmp:EvidenceClaim ; cmp:condition cond:fibromyalgia ;
       cmp:intervention mod:aerobic-exercise }
  UNION
  { ?e a cmp:EvidenceBody ; cmp:condition cond:fibromyalgia ; cmp:modality mod:aerobic-exercise }
}
"""


@pytest.mark.parametrize(
    "query",
    [
        "condition=fibromyalgia&intervention=aerobic%20exercise",
        "condition=FMS&intervention=mod:aerobic-exercise",  # a synonym and a CURIE
        "condition=MeSH:D005356&intervention=Aerobic-Exercise",  # a code; case and hyphens
        # FHIR tokens as the EvidenceVariable codings write them
        "condition=https://www.nlm.nih.gov/mesh|D005356"
        "&intervention=urn:ietf:rfc:3986|https://w3id.org/cmpkg/modality/aerobic-exercise",
        "condition=http://purl.obolibrary.org/obo/mondo.owl|MONDO:0005546"
        "&intervention=aerobic%20exercise",
    ],
)
def test_search_resolves_terms_as_the_api_does(client, stores, query) -> None:
    body = fhir_get(client, "/fhir/Evidence?" + query)
    Bundle.model_validate(json.loads(json.dumps(body, default=str)))
    expected = sorted(r["e"] for r in select(stores["fixture"], SEARCH_EXPECTED))
    assert expected, "the fixture has aerobic-exercise evidence for fibromyalgia"
    assert body["type"] == "searchset" and body["total"] == len(expected)
    assert sorted(e["resource"]["url"] for e in body["entry"]) == expected


def test_search_by_outcome_narrows_to_that_outcome(client, stores) -> None:
    everything = fhir_get(client, "/fhir/Evidence?condition=fibromyalgia")
    pain = fhir_get(client, "/fhir/Evidence?condition=fibromyalgia&outcome=pain%20severity")
    expected = select(
        stores["fixture"],
        """SELECT DISTINCT ?e {
        ?e cmp:condition cond:fibromyalgia ; cmp:outcome out:pain-severity }""",
    )
    assert 0 < pain["total"] == len(expected) < everything["total"]


def test_a_type_without_search_parameters_lists_everything(client, exported) -> None:
    body = fhir_get(client, "/fhir/Citation")
    assert body["total"] == len(resources(read_bundle(exported["fixture"]), "Citation"))


def outcome(client: FlaskClient, url: str, status: int) -> dict[str, Any]:
    body = fhir_get(client, url, status)
    get_fhir_model_class("OperationOutcome").model_validate(body)
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def test_unknown_id_is_404(client) -> None:
    issue = outcome(client, "/fhir/Evidence/claim-no-such-claim", 404)
    assert issue["code"] == "not-found" and "claim-no-such-claim" in issue["diagnostics"]


def test_unknown_type_is_404(client) -> None:
    assert outcome(client, "/fhir/Patient/example", 404)["code"] == "not-supported"
    assert outcome(client, "/fhir/Patient", 404)["code"] == "not-supported"


def test_unknown_search_parameter_is_400(client) -> None:
    issue = outcome(client, "/fhir/Evidence?population=fibromyalgia", 400)
    assert "population" in issue["diagnostics"] and "condition" in issue["diagnostics"]
    assert outcome(client, "/fhir/Citation?condition=fibromyalgia", 400)["code"] == "not-supported"


def test_repeated_search_parameter_is_400(client) -> None:
    issue = outcome(client, "/fhir/Evidence?condition=fibromyalgia&condition=FMS", 400)
    assert "more than once" in issue["diagnostics"]


def test_unknown_term_is_404_with_a_suggestion(client) -> None:
    issue = outcome(client, "/fhir/Evidence?condition=fibromyalgi", 404)
    assert issue["code"] == "not-found" and "'fibromyalgia'" in issue["diagnostics"]
    issue = outcome(client, "/fhir/Evidence?condition=http://snomed.info/sct|203082005", 404)
    assert "code system" in issue["diagnostics"]
