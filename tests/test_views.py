"""Page models (service/query/evidence.py), the evidence-map table and the pages blueprint.

The app under test is a tiny Flask app built here: the pages blueprint over a pyoxigraph store
loaded (through service.kb.sources) from tests/fixtures/pages/ plus the real ontology/ files when
present, so the pages are checked against what the ontology really says; the question gallery
runs a fixture .rq file through the real service.query.named.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyoxigraph as ox
import pytest
from flask import Flask, Response, request

from service.kb.sources import PREFIXES, knowledge_files, load_store
from service.query import evidence as views
from service.query import named as queries
from service.web.evidence_map import render_table
from service.web.pages import pages

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "pages"
WEB = ROOT / "service" / "web"

CLAIM = PREFIXES["claim"]
COND = PREFIXES["cond"]
MOD = PREFIXES["mod"]
OUT = PREFIXES["out"]
BUSCH = CLAIM + "busch-2007-aerobic-physical-function"


# --- the app under test -----------------------------------------------------------------


def fixture_store() -> ox.Store:
    files: dict[str, list[Path]] = {g: [FIXTURES / f"{g}.ttl"] for g in ("asserted", "inferred")}
    files["ontology"] = [FIXTURES / "ontology.ttl", *knowledge_files(ROOT)["ontology"]]
    return load_store(files)


def make_select(store: ox.Store) -> views.Select:
    def select(sparql: str) -> list[dict[str, str | None]]:
        result = store.query(sparql, use_default_graph_as_union=True)
        names = [v.value for v in result.variables]
        return [{n: (None if sol[n] is None else sol[n].value) for n in names} for sol in result]

    return select


def make_run_query(store: ox.Store, named: dict[str, queries.NamedQuery]):
    """What the app factory wires: the real named-query runner, rows as plain dicts."""

    def run(name: str, values: dict[str, str]) -> list[dict[str, str | None]]:
        solutions = queries.run_query(store, named[name], values)
        names = [v.value for v in solutions.variables]
        return [{n: (None if s[n] is None else s[n].value) for n in names} for s in solutions]

    return run


def sparql_endpoint(store: ox.Store):
    """Just enough of the SPARQL 1.1 Protocol for YASGUI (the real one is a teammate's)."""

    def endpoint() -> Response:
        query = request.values.get("query", "")
        result = store.query(query, use_default_graph_as_union=True)
        body = result.serialize(format=ox.QueryResultsFormat.JSON)
        return Response(body, mimetype="application/sparql-results+json")

    return endpoint


def build_app() -> Flask:
    store = fixture_store()
    select = make_select(store)
    named = queries.load_queries(FIXTURES / "queries")
    queries.fill_enums(named, queries.resolver_for(store))
    app = Flask(__name__, template_folder=str(WEB / "templates"), static_folder=str(WEB / "static"))
    app.config.update(
        CMPKG_SELECT=select,
        CMPKG_MANIFEST={
            "build_id": "test-build-1",
            "created": "2026-01-01T00:00:00Z",
            "graphs": {"asserted": 120, "inferred": 14},
        },
        CMPKG_QUERIES=named,
        CMPKG_RUN_QUERY=make_run_query(store, named),
        CMPKG_NODE_MODULES=str(ROOT / "node_modules"),
    )
    app.register_blueprint(pages)
    app.add_url_rule("/sparql", "sparql", sparql_endpoint(store), methods=["GET", "POST"])
    return app


@pytest.fixture(scope="module")
def app() -> Flask:
    return build_app()


@pytest.fixture(scope="module")
def select(app: Flask) -> views.Select:
    return app.config["CMPKG_SELECT"]


@pytest.fixture()
def client(app: Flask):
    return app.test_client()


# --- pure functions ---------------------------------------------------------------------


def test_resolve_term_accepts_bare_names_curies_and_iris():
    assert views.resolve_term("fibromyalgia", "cond") == COND + "fibromyalgia"
    assert views.resolve_term("mod:aerobic-exercise", "cond") == MOD + "aerobic-exercise"
    assert views.resolve_term(OUT + "stiffness", "cond") == OUT + "stiffness"
    with pytest.raises(ValueError):
        views.resolve_term("x> } SELECT * { ?s ?p ?o", "cond")


def test_entity_href_keeps_our_iris_on_this_server():
    assert views.entity_href(BUSCH) == "/cmpkg/claim/busch-2007-aerobic-physical-function"
    assert views.entity_href("http://id.nlm.nih.gov/mesh/D005356").startswith("http://id.nlm")
    assert views.curie(COND + "fibromyalgia") == "cond:fibromyalgia"


def test_hierarchy_order_is_depth_first_and_ignores_closure_links():
    labels = {"a": "root", "b": "beta", "c": "alpha", "d": "leaf"}
    # d < b < a, c < a, plus the transitive link d < a a reasoner adds.
    parents = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "a"}}
    order = views.hierarchy_order(labels, parents)
    assert [(t.iri, t.depth) for t in order] == [("a", 0), ("c", 1), ("b", 1), ("d", 2)]


def test_hierarchy_order_lists_a_term_with_two_parents_once():
    labels = {"r": "r", "p1": "p1", "p2": "p2", "x": "x"}
    parents = {"r": set(), "p1": {"r"}, "p2": {"r"}, "x": {"p1", "p2"}}
    order = [t.iri for t in views.hierarchy_order(labels, parents)]
    assert order.count("x") == 1 and order.index("x") == order.index("p1") + 1


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # Derived values win over anything else.
        ({"direction": views.BENEFIT, "significance": views.SIGNIFICANT}, "benefit"),
        ({"direction": views.HARM, "significance": views.SIGNIFICANT}, "harm"),
        ({"direction": views.BENEFIT, "significance": views.INCONCLUSIVE}, "inconclusive"),
        # No derived values: CI against the null and the scale's polarity.
        ({"lower": "0.15", "upper": "0.40", "nullValue": "0", "higherIsBetter": "true"}, "benefit"),
        (
            {"lower": "-0.83", "upper": "-0.27", "nullValue": "0", "higherIsBetter": "false"},
            "benefit",
        ),
        ({"lower": "-0.83", "upper": "-0.27", "nullValue": "0", "higherIsBetter": "true"}, "harm"),
        (
            {"lower": "-0.09", "upper": "1.39", "nullValue": "0", "higherIsBetter": "true"},
            "inconclusive",
        ),
        (
            {"lower": "0.73", "upper": "1.77", "nullValue": "1", "higherIsBetter": "false"},
            "inconclusive",
        ),
        # Nothing to go on: never claim a benefit.
        ({"lower": "0.15", "upper": "0.40"}, "inconclusive"),
        ({}, "inconclusive"),
    ],
)
def test_claim_class_from_derived_values_or_published_ci(record, expected):
    assert views.claim_class(*views.fallback_direction(record)) == expected


def test_cell_class_makes_gaps_and_conflicts_explicit():
    assert views.cell_class([]) == "no evidence"
    assert views.cell_class(["inconclusive", "benefit"]) == "benefit"
    assert views.cell_class(["inconclusive"]) == "inconclusive"
    assert views.cell_class(["harm", "benefit"]) == "mixed"


def test_effect_text_restores_published_precision_without_rounding():
    assert views.effect_text("0.28", "0.15", "0.4", "SMD") == "SMD 0.28 (95% CI 0.15 to 0.40)"
    assert views.effect_text("-1", "-1.91", "-0.1", "SMD") == "SMD -1.00 (95% CI -1.91 to -0.10)"
    assert views.effect_text("15", "12", "18", "") == "15 (95% CI 12 to 18)"
    assert views.effect_text(None, None, None, "SMD") == ""
    points = views.effect_text("6", "3", "9", "points", PREFIXES["measure"] + "points-improvement")
    assert points == "6 points better (95% CI 3 to 9)"


def test_participants_text():
    assert views.participants_text("3537", "44") == "3,537 (44 studies)"
    assert views.participants_text(None, "1") == "(1 study)"
    assert views.participants_text(None, None) == ""


def test_result_table_links_iris_and_keeps_literals():
    rows = [{"claim": BUSCH, "estimate": "0.66"}, {"claim": None, "extra": "x"}]
    table = views.result_table(rows, {BUSCH: "Busch 2007 claim"})
    assert table.columns == ["claim", "estimate", "extra"]
    first = table.rows[0]
    assert (first[0].text, first[0].href) == (
        "Busch 2007 claim",
        "/cmpkg/claim/" + BUSCH.rsplit("/")[-1],
    )
    assert (first[1].text, first[1].href) == ("0.66", None)
    assert table.rows[1][0].text == "" and table.rows[1][2].text == "x"


def test_rows_from_sparql_json():
    results = {
        "head": {"vars": ["s", "n"]},
        "results": {"bindings": [{"s": {"type": "uri", "value": BUSCH}}]},
    }
    assert views.rows_from_sparql_json(results) == [{"s": BUSCH, "n": None}]


def test_sof_row_lists_reasons_including_derived_imprecision(select):
    claims = views.fetch_claims(
        select,
        views.claims_query(claims=[CLAIM + "bidonde-2014-aquatic-multidimensional-function"]),
    )
    (claim,) = claims
    row = views.sof_row(claim)
    assert row.reasons == [views.IMPRECISION_REASON]
    assert row.participants == "367 (7 studies)"
    assert row.effect == "SMD -0.55 (95% CI -0.83 to -0.27)"
    assert row.doi == "10.1002/14651858.CD011336"


# --- models over the fixture store ------------------------------------------------------


def test_home_counts_come_from_the_store(select):
    home = views.home(select, {"build_id": "b1", "created": "2026-01-01"})
    assert home.counts["claims"] == 7  # the fixture's claims (data/ is not loaded here)
    assert home.counts["sources"] >= 3
    assert home.counts["conditions"] >= 8
    assert (home.build_id, home.created) == ("b1", "2026-01-01")


def test_evidence_map_includes_narrower_outcomes_and_every_gap(select):
    model = views.evidence_map(select, OUT + "physical-function")
    cells = {(c.condition, c.modality): c for row in model.rows for c in row.cells}
    busch = cells[(COND + "fibromyalgia", MOD + "aerobic-exercise")]
    assert (busch.count, busch.direction_class, busch.best_certainty) == (1, "benefit", "moderate")
    assert busch.claims == [BUSCH]
    assert busch.href == (
        "/evidence?condition=fibromyalgia&modality=aerobic-exercise&outcome=physical-function"
    )
    # Multidimensional function is narrower than physical function: counted here.
    aquatic = cells[(COND + "fibromyalgia", MOD + "aquatic-exercise")]
    assert aquatic.claims == [CLAIM + "bidonde-2014-aquatic-multidimensional-function"]
    # Pain and stiffness claims are other outcomes: not on this map.
    assert model.total_claims == 3
    gap = cells[(COND + "hip-osteoarthritis", MOD + "aerobic-exercise")]
    assert (gap.count, gap.direction_class, gap.href) == (0, "no evidence", None)
    assert len(cells) == len(model.rows) * len(model.modalities)


def test_evidence_map_rows_follow_the_condition_hierarchy(select):
    model = views.evidence_map(select)
    order = [row.condition.key for row in model.rows]
    assert order.index("chronic-widespread-pain") < order.index("fibromyalgia")
    assert order.index("osteoarthritis") < order.index("knee-osteoarthritis")
    depth = {row.condition.key: row.condition.depth for row in model.rows}
    assert depth["fibromyalgia"] == depth["chronic-widespread-pain"] + 1


def test_summary_of_findings_for_knee_osteoarthritis(select):
    sof = views.summary_of_findings(select, COND + "knee-osteoarthritis")
    (group,) = sof.groups
    assert group.modality.iri == MOD + "land-based-exercise"
    by_outcome = {r.claim.rsplit("/", 1)[-1]: r for r in group.rows}
    pain = by_outcome["fransen-2015-land-based-pain-severity"]
    assert pain.effect == "SMD -0.49 (95% CI -0.59 to -0.39)"
    assert pain.participants == "3,537 (44 studies)"
    assert pain.source_label == "Fransen 2015"
    # Quality of life has no derived values in the fixture: its CI (0.15 to 0.40) excludes 0.
    qol = by_outcome["fransen-2015-land-based-quality-of-life"]
    assert qol.direction_class == "benefit"
    assert qol.effect == "SMD 0.28 (95% CI 0.15 to 0.40)"


def test_evidence_table_is_accessible_markup(select):
    html = str(render_table(views.evidence_map(select)))
    assert html.startswith('<table class="evidence-map"') and "<caption>" in html
    assert '<th scope="col"' in html and '<th scope="row"' in html
    # Every cell says something in words: a count or "no evidence".
    cells = re.findall(r"<td class=\"cell-[^>]*>(.*?)</td>", html)
    assert cells and all("claim" in c or "no evidence" in c for c in cells)


# --- pages through the Flask test client ------------------------------------------------


def test_home_page_and_json_twin(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "test-build-1" in html and "Not advice to patients" in html
    assert '<th scope="row">inferred</th><td>14</td>' in html
    assert '<td data-count="claims">7</td>' in html
    twin = client.get("/index.json").get_json()
    assert twin["counts"]["claims"] == 7 and twin["build_id"] == "test-build-1"
    assert client.get("/?format=json").get_json() == twin


def test_evidence_map_page_works_without_javascript(client):
    html = client.get("/evidence-map?outcome=physical-function").get_data(as_text=True)
    assert "<script" not in html
    assert 'href="/evidence?condition=fibromyalgia&amp;modality=aerobic-exercise' in html
    assert "no evidence" in html
    twin = client.get("/evidence-map.json?outcome=out:physical-function").get_json()
    assert twin["outcome"]["iri"] == OUT + "physical-function" and twin["total_claims"] == 3


def test_evidence_page_lists_the_busch_claim_with_its_source(client):
    url = "/evidence?condition=fibromyalgia&modality=aerobic-exercise&outcome=physical-function"
    html = client.get(url).get_data(as_text=True)
    assert 'id="claim-busch-2007-aerobic-physical-function"' in html
    assert "SMD 0.66 (95% CI 0.41 to 0.92)" in html
    assert 'href="https://doi.org/10.1002/14651858.CD003786.pub2"' in html
    twin = client.get(url + "&format=json").get_json()
    assert [c["iri"] for c in twin["claims"]] == [BUSCH]


def test_evidence_page_needs_its_parameters(client):
    assert client.get("/evidence?condition=fibromyalgia").status_code == 400
    bad = "/evidence?condition=fibromyalgia%3E%20%7D&modality=aerobic-exercise"
    assert client.get(bad).status_code == 400


def test_sof_page(client):
    html = client.get("/sof?condition=knee-osteoarthritis").get_data(as_text=True)
    assert "Participants (studies)" in html and "3,537 (44 studies)" in html
    assert "Fransen 2015" in html
    empty = client.get("/sof").get_data(as_text=True)
    assert '<select id="condition" name="condition" required>' in empty
    twin = client.get("/sof.json?condition=knee-osteoarthritis&modality=aerobic-exercise")
    assert twin.get_json()["groups"] == []


def test_question_form_runs_and_reports_unknown_values(client):
    html = client.get("/questions/claims-for-condition").get_data(as_text=True)
    assert '<select id="param-condition" name="condition"' in html
    assert f'<option value="{COND}knee-osteoarthritis">' in html  # enumerated choices
    assert f'<option value="{COND}fibromyalgia" selected>' in html  # the default
    # No required parameter: the default answer shows at once.
    assert "busch-2007-aerobic-physical-function" in html
    answer = client.get(
        "/questions/claims-for-condition?run=1&condition=" + COND + "knee-osteoarthritis"
    ).get_data(as_text=True)
    assert "fransen-2015-land-based-pain-severity" in answer and "busch-2007" not in answer
    assert "/api/queries/claims-for-condition?condition=" in answer
    bad = client.get("/questions/claims-for-condition.json?run=1&condition=fibromyalgiaa")
    assert bad.status_code == 400
    assert bad.get_json()["table"] is None and "fibromyalgiaa" in bad.get_json()["error"]
    assert client.get("/questions/nope").status_code == 404


def test_question_gallery_lists_questions(client):
    twin = client.get("/questions.json").get_json()
    assert [q["name"] for q in twin["questions"]] == ["claims-for-condition"]
    (parameter,) = twin["questions"][0]["parameters"]
    assert parameter["default"] == COND + "fibromyalgia" and not parameter["required"]
    assert COND + "knee-osteoarthritis" in parameter["enum"]


def test_query_editor_page_is_configured_for_our_endpoint(client):
    twin = client.get("/query.json").get_json()
    assert twin["endpoint"] == "/sparql"
    assert twin["prefixes"]["cmp"] == PREFIXES["cmp"]
    assert [t["name"] for t in twin["tabs"]] == ["claims-for-condition"]
    html = client.get("/query").get_data(as_text=True)
    assert 'src="/vendor/yasgui.min.js"' in html and "https://cdn" not in html


def test_vendor_assets_come_from_node_modules_and_nothing_else(client):
    assert client.get("/vendor/yasgui.min.js").status_code == 200
    assert client.get("/vendor/axe.min.js").status_code == 200
    assert client.get("/vendor/package.json").status_code == 404
    assert client.get("/vendor/..%2fpackage.json").status_code == 404


def test_a_cell_shows_the_certainty_of_the_claims_that_carry_its_direction():
    """A moderate-certainty null result must not lend its grade to a low-certainty benefit."""
    cond, mod, out = (
        views.Term.make(COND + "chronic-low-back-pain", "chronic low back pain"),
        views.Term.make(MOD + "pilates", "Pilates"),
        views.Term.make(OUT + "disability", "disability"),
    )

    def claim(name: str, certainty: str, rank: int, direction_class: str) -> views.Claim:
        return views.Claim(
            iri=name, label=name, condition=cond, modality=mod, outcome=out, comparator="",
            measure="MD", estimate=None, ci_lower=None, ci_upper=None, effect="",
            studies=None, participants=None, participants_text="", certainty=certainty,
            certainty_rank=rank, reasons=[], direction="", significance="",
            direction_class=direction_class, derived=True, source=None, source_label="",
            doi=None, curation_status="", scale=None, timepoint=None, reported_result=None,
        )  # fmt: skip

    claims = [claim("a", "moderate", 3, "inconclusive"), claim("b", "low", 2, "benefit")]
    model = views.evidence_map_model(out, [out], [cond], [mod], claims)
    cell = model.rows[0].cells[0]
    assert (cell.count, cell.direction_class, cell.best_certainty) == (2, "benefit", "low")
