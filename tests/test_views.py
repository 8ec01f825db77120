"""Page models (service/query/evidence.py), the evidence-map table and the pages blueprint.

The app under test is a tiny Flask app built here: the pages blueprint over a pyoxigraph store
loaded (through service.kb.sources) from tests/fixtures/pages/ plus the real ontology/ files when
present, so the pages are checked against what the ontology really says; the question gallery
runs a fixture .rq file through the real service.query.named.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pyoxigraph as ox
import pytest
from flask import Flask, Response, request
from querying import resolver_for, run_query

from service.kb.sources import PREFIXES, knowledge_files, load_store
from service.query import evidence as views
from service.query import named as queries
from service.query import sof
from service.query.terms import TermResolver
from service.web import page_source
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
        solutions = run_query(store, named[name], values)
        names = [v.value for v in solutions.variables]
        return [{n: (None if s[n] is None else s[n].value) for n in names} for s in solutions]

    return run


def sparql_endpoint(store: ox.Store):
    """Just enough of the SPARQL 1.1 Protocol for YASGUI (the real one: service.web.sparql)."""

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
    queries.fill_enums(named, resolver_for(store))
    app = Flask(__name__, template_folder=str(WEB / "templates"), static_folder=str(WEB / "static"))
    # The same PageSource the app factory installs, built over the fixture store.
    page_source.install(
        app,
        page_source.fixed(
            select=select,
            manifest={
                "build_id": "test-build-1",
                "created": "2026-01-01T00:00:00Z",
                "graphs": {"asserted": 120, "inferred": 14},
            },
            queries=named,
            run_query=make_run_query(store, named),
            resolver=TermResolver.from_store(store),
        ),
    )
    app.config.update(CMPKG_NODE_MODULES=str(ROOT / "node_modules"))
    app.register_blueprint(pages)
    app.add_url_rule("/sparql", "sparql", sparql_endpoint(store), methods=["GET", "POST"])
    return app


@pytest.fixture(scope="module")
def app() -> Flask:
    return build_app()


@pytest.fixture(scope="module")
def select(app: Flask) -> views.Select:
    return page_source.current_for(app).select


@pytest.fixture()
def client(app: Flask):
    return app.test_client()


# --- pure functions ---------------------------------------------------------------------


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


def test_claims_keep_the_source_downgrades_apart_from_the_project_heuristic(select):
    claims = views.fetch_claims(
        select,
        views.claims_query(claims=[CLAIM + "bidonde-2014-aquatic-multidimensional-function"]),
    )
    (claim,) = claims
    # The source rated nothing down; the 400-participant flag is the project's heuristic.
    assert claim.source_downgrades == []
    assert claim.imprecision_concern is True
    assert claim.participants_text == "367 (7 studies)"
    assert claim.effect == "SMD -0.55 (95% CI -0.83 to -0.27)"
    assert claim.doi == "10.1002/14651858.CD011336"


# --- models over the fixture store ------------------------------------------------------


def test_home_counts_come_from_the_store(select):
    home = views.home(select, {"build_id": "b1", "created": "2026-01-01"})
    # the fixture's claims (data/ is not loaded here): 8 since the unconfirmed Busch 2013 claim
    # joined the fixture for the bodies of evidence
    assert home.counts["claims"] == 8
    assert home.counts["sources"] >= 3
    assert home.counts["conditions"] >= 8
    assert (home.build_id, home.created) == ("b1", "2026-01-01")


def test_evidence_map_cells_are_the_bodies_of_evidence(select):
    # The map reads the bodies (tests/fixtures/pages/inferred.ttl); it derives nothing itself.
    model = views.evidence_map(select, OUT + "physical-function")
    cells = {(c.condition, c.modality): c for row in model.rows for c in row.cells}
    busch = cells[(COND + "fibromyalgia", MOD + "aerobic-exercise")]
    assert (busch.conclusion, busch.certainty_rank, busch.directness) == ("benefit", 3, "direct")
    assert not busch.secondary and busch.unconfirmed == 0
    assert busch.href == (
        "/evidence?condition=fibromyalgia&modality=aerobic-exercise&outcome=physical-function"
    )
    # Its only claim is about a narrower outcome: indirect, as the body says, rated low.
    aquatic = cells[(COND + "fibromyalgia", MOD + "aquatic-exercise")]
    assert (aquatic.conclusion, aquatic.certainty_rank, aquatic.directness) == (
        "benefit",
        2,
        "indirect",
    )
    # The unconfirmed Busch 2013 figure would be a benefit by its CI; its body is inconclusive
    # and the cell is marked.
    resistance = cells[(COND + "fibromyalgia", MOD + "resistance-training")]
    assert (resistance.conclusion, resistance.unconfirmed, resistance.secondary) == (
        "inconclusive",
        1,
        True,
    )
    assert "unconfirmed" in resistance.text and "benefit" not in resistance.text
    # A broader row: the osteoarthritis question answered (indirectly) by knee evidence.
    broader = cells[(COND + "osteoarthritis", MOD + "land-based-exercise")]
    assert (broader.conclusion, broader.directness) == ("benefit", "indirect")
    assert "indirect evidence" in broader.text
    gap = cells[(COND + "hip-osteoarthritis", MOD + "aerobic-exercise")]
    assert (gap.conclusion, gap.body, gap.href) == ("no evidence", None, None)
    assert model.total_bodies == 5
    assert len(cells) == len(model.rows) * len(model.modalities)
    # Modalities without any body are listed as gaps, not as columns of empty cells.
    assert MOD + "yoga" in {m.iri for m in model.empty_modalities}
    assert not {m.iri for m in model.empty_modalities} & {m.iri for m in model.modalities}


def test_evidence_map_rows_follow_the_condition_hierarchy(select):
    model = views.evidence_map(select)
    order = [row.condition.key for row in model.rows]
    assert order.index("chronic-widespread-pain") < order.index("fibromyalgia")
    assert order.index("osteoarthritis") < order.index("knee-osteoarthritis")
    depth = {row.condition.key: row.condition.depth for row in model.rows}
    assert depth["fibromyalgia"] == depth["chronic-widespread-pain"] + 1


def test_summary_of_findings_for_knee_osteoarthritis(select):
    summary = sof.summary_of_findings(select, COND + "knee-osteoarthritis")
    (group,) = summary.groups
    assert group.modality.iri == MOD + "land-based-exercise"
    assert group.comparison == "land-based exercise vs no exercise"
    rows = {r.outcome.key: r for r in group.rows}
    assert sorted(rows) == ["pain-severity", "physical-function", "quality-of-life"]
    pain = rows["pain-severity"]
    # SMD -0.49 (lower is better) and +0.28 (higher is better) are both benefits: the body says
    # so, and the row says which arm it favours.
    assert [e.text for e in pain.effects] == ["SMD -0.49 (95% CI -0.59 to -0.39)"]
    assert rows["quality-of-life"].effects[0].text == "SMD 0.28 (95% CI 0.15 to 0.40)"
    assert pain.favours == rows["quality-of-life"].favours == "favours exercise"
    assert pain.absolute == "About 12 points less pain on a 0-100 scale."
    assert rows["physical-function"].absolute == ""
    assert pain.participants == "3,537 (44 studies)"
    assert pain.sources == [{"label": "Fransen 2015", "doi": "10.1002/14651858.CD004376.pub3"}]
    # Secondary figures, no GRADE rating from the source: both footnoted, in words.
    assert (pain.certainty, pain.circles) == ("not rated", "")
    notes = {f.number: f for f in group.footnotes}
    assert {notes[n].by for n in pain.footnotes} == {"source", "status"}
    assert pain.status_words.startswith("secondary")
    assert "was reported to reduce pain severity" in pain.statement


def _body(rank: int, conclusion: str, outcome: str = "physical function") -> views.Body:
    term = views.Term.make
    return views.Body(
        iri="b", label="", condition=term(COND + "fibromyalgia", "fibromyalgia"),
        modality=term(MOD + "aerobic-exercise", "aerobic exercise"),
        outcome=term(OUT + "x", outcome), conclusion=conclusion, conclusion_label=conclusion,
        certainty="", certainty_rank=rank, directness="direct", status="confirmed",
        status_label="confirmed", carrying=[], included=[], rating_downs=[], capped_by=[],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rank", "conclusion", "outcome", "expected"),
    [
        (4, "benefit", "physical function", "Aerobic exercise improves physical function."),
        (3, "benefit", "physical function", "Aerobic exercise probably improves physical"),
        (2, "benefit", "pain severity", "Aerobic exercise may reduce pain severity."),
        (1, "benefit", "physical function", "We are uncertain whether aerobic exercise improves"),
        (3, "no-important-effect", "stiffness", "probably makes little or no difference to"),
        (2, "harm", "pain severity", "Aerobic exercise may increase pain severity."),
        (3, "inconclusive", "physical function", "The evidence is uncertain about the effect"),
        (0, "benefit", "physical function", "no GRADE certainty"),
    ],
)
def test_plain_language_statement_follows_grade_wording(rank, conclusion, outcome, expected):
    assert expected in sof.plain_language(_body(rank, conclusion, outcome))


def test_footnotes_keep_source_project_and_heuristic_apart():
    body = _body(2, "benefit")
    body.rating_downs = [
        views.RatingDown("source", "risk of bias", "", "Busch 2007", None),
        views.RatingDown("project", "indirectness", "evidence from a narrower outcome",
                         "GRADE guidelines 8: indirectness", "10.1016/j.jclinepi.2011.04.014"),
        views.RatingDown("heuristic", "imprecision", "Busch 2007: fewer than 400 participants"),
    ]  # fmt: skip
    body.capped_by = ["Geneen 2017: overall quality of evidence is low"]
    (group,) = sof.sof_model(body.condition, None, [body]).groups
    notes = {f.by: f.text for f in group.footnotes}
    assert notes["source"] == "Busch 2007 rated the evidence down for risk of bias."
    assert notes["project"].startswith("Rated down by this project for indirectness")
    assert "doi:10.1016/j.jclinepi.2011.04.014" in notes["project"]
    assert notes["heuristic"].startswith("Project heuristic, not a GRADE rating by the source")
    assert "Geneen 2017" in notes["cap"]
    assert group.rows[0].footnotes == [1, 2, 3, 4]


def test_summary_of_findings_csv_has_labels_and_iris_apart(select):
    summary = sof.summary_of_findings(select, COND + "knee-osteoarthritis")
    rows = list(csv.DictReader(io.StringIO(sof.csv_text(summary))))
    assert len(rows) == 3
    pain = next(r for r in rows if r["outcome"] == "pain severity")
    assert pain["outcome_iri"] == OUT + "pain-severity"
    assert pain["relative_effect"] == "SMD -0.49 (95% CI -0.59 to -0.39)"
    assert pain["favours"] == "favours exercise"
    assert pain["dois"] == "10.1002/14651858.CD004376.pub3"
    assert "no GRADE certainty" in pain["certainty_reasons"]


def test_evidence_table_is_accessible_markup(select):
    html = str(render_table(views.evidence_map(select)))
    assert html.startswith('<table class="evidence-map"') and "<caption>" in html
    assert '<th scope="col"' in html and '<th scope="row"' in html
    # Every cell says something in words (hidden text for screen readers): a conclusion or
    # "no evidence".
    cells = re.findall(r"<td class=\"cell-[^>]*>(.*?)</td>", html)
    assert cells and all(
        any(w in c for w in ("benefit", "inconclusive", "no evidence")) for c in cells
    )
    # Column headings keep their full labels for the reader and in a title.
    assert 'title="aerobic exercise"' in html


# --- pages through the Flask test client ------------------------------------------------


def test_home_page_and_json_twin(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "test-build-1" in html and "Not advice to patients" in html
    assert '<th scope="row">inferred</th><td>14</td>' in html
    assert '<td data-count="claims">8</td>' in html  # 8: see test_home_counts_come_from_the_store
    twin = client.get("/index.json").get_json()
    assert twin["counts"]["claims"] == 8 and twin["build_id"] == "test-build-1"
    assert client.get("/?format=json").get_json() == twin


def test_evidence_map_page_works_without_javascript(client):
    html = client.get("/evidence-map?outcome=physical-function").get_data(as_text=True)
    assert "<script" not in html
    assert 'href="/evidence?condition=fibromyalgia&amp;modality=aerobic-exercise' in html
    assert "no evidence" in html
    twin = client.get("/evidence-map.json?outcome=out:physical-function").get_json()
    assert twin["outcome"]["iri"] == OUT + "physical-function" and twin["total_bodies"] == 5


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
    # Text that cannot be a term is an unknown term now (the one resolver), no longer a
    # bespoke 400: nothing of it reaches a query either way.
    bad = "/evidence?condition=fibromyalgia%3E%20%7D&modality=aerobic-exercise"
    assert client.get(bad).status_code == 404


def test_pages_resolve_terms_with_the_api_resolver(client):
    """Issue 10: FMS is fibromyalgia's synonym; the pages once invented cond:FMS from it."""
    url = "/evidence?condition=FMS&modality=aerobic-exercise&outcome=physical-function"
    twin = client.get(url + "&format=json")
    assert twin.status_code == 200
    assert twin.get_json()["condition"]["iri"] == COND + "fibromyalgia"
    assert [c["iri"] for c in twin.get_json()["claims"]] == [BUSCH]
    # labels, CURIEs and IRIs name the same term
    for value in (
        "knee%20osteoarthritis",
        "cond:knee-osteoarthritis",
        COND + "knee-osteoarthritis",
    ):
        answer = client.get(f"/sof.json?condition={value}")
        assert answer.status_code == 200, value
        assert answer.get_json()["condition"]["iri"] == COND + "knee-osteoarthritis"


@pytest.mark.parametrize(
    ("url", "parameter", "suggestion"),
    [
        ("/sof?condition=knee-osteoarthritiss", "condition", "knee osteoarthritis"),
        ("/evidence-map?outcome=physical-functio", "outcome", "physical function"),
        (
            "/evidence?condition=fibromyalgia&modality=aerobic-exercis",
            "modality",
            "aerobic exercise",
        ),
    ],
)
def test_a_mistyped_term_is_a_404_with_suggestions_never_a_gap(client, url, parameter, suggestion):
    page = client.get(url)
    assert page.status_code == 404
    html = page.get_data(as_text=True)
    assert "a gap in the evidence" not in html.replace("not a gap in the evidence", "")
    assert f">{suggestion}</a>" in html
    twin = client.get(url + "&format=json")
    assert twin.status_code == 404 and twin.mimetype == "application/problem+json"
    body = twin.get_json()
    assert body["status"] == 404 and body["parameter"] == parameter
    assert suggestion in body["suggestions"]
    assert body["type"].endswith("/unknown-term") and body["title"] == "Not Found"


def test_sof_page(client):
    html = client.get("/sof?condition=knee-osteoarthritis").get_data(as_text=True)
    assert "Participants (studies)" in html and "3,537 (44 studies)" in html
    assert "Fransen 2015" in html and "favours exercise" in html
    assert 'href="/sof.csv?condition=knee-osteoarthritis"' in html
    download = client.get("/sof.csv?condition=knee-osteoarthritis")
    assert download.mimetype == "text/csv"
    assert "attachment" in download.headers["Content-Disposition"]
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
    # 404 since issue 14 (was 400): a value naming no term is "not found", as in the API
    assert bad.status_code == 404
    assert bad.get_json()["table"] is None and "fibromyalgiaa" in bad.get_json()["error"]
    html = client.get("/questions/claims-for-condition?run=1&condition=fibromyalgiaa")
    assert 'href="/questions/claims-for-condition?run=1&amp;condition=fibromyalgia"' in (
        html.get_data(as_text=True)
    )
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


def test_prescription_form_becomes_the_api_body():
    from werkzeug.datastructures import MultiDict

    from service.web import prescription_form as prescription_page

    form = MultiDict(
        [
            ("conditions", "fibromyalgia"),
            ("conditions", " "),
            ("goals", "physical-function"),
            ("p.fear-of-movement", "elevated"),
            ("p.fear-of-movement.instrument", "TSK-11"),
            ("p.fear-of-movement.score", "30"),
            ("p.fear-of-movement.min", "11"),
            ("p.fear-of-movement.max", "44.5"),
            ("p.anxiety", ""),
            ("setting", "water"),
            ("format", ""),
        ]
    )
    body = prescription_page.presentation(form, ["fear-of-movement", "anxiety"])
    assert body == {
        "conditions": ["fibromyalgia"],
        "goals": ["physical-function"],
        "pathologies": [
            {
                "pathology": "fear-of-movement",
                "elevated": True,
                "instrument": "TSK-11",
                "score": 30,
                "scoreMin": 11,
                "scoreMax": 44.5,
            }
        ],
        "preferences": {"setting": "water"},
    }
    assert prescription_page.circles(PREFIXES["cert"] + "moderate") == "⊕⊕⊕◯"
    assert prescription_page.circles(PREFIXES["cert"] + "not-reported") == ""


def test_a_rating_down_with_several_reasons_is_one_footnote():
    """Contract of issue 12, change 7: one node may give one reason per mismatch."""
    node = "https://w3id.org/cmpkg/rating-down/x--indirectness"
    rows = [
        {"body": "b", "r": node, "domain": PREFIXES["dom"] + "indirectness", "reason": reason}
        for reason in ("measured as a narrower outcome", "evidence from a broader population")
    ]
    (down,) = views._project_downs(rows, {PREFIXES["dom"] + "indirectness": "indirectness"})["b"]
    assert down.domain == "indirectness"
    assert down.reason == "evidence from a broader population; measured as a narrower outcome"
