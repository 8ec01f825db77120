"""End-to-end: the guideline-author pages in a real headless Chromium (Debian `chromium`).

The app (pages blueprint over the fixture store, see test_views.build_app) is served by
waitress on a free loopback port; Playwright drives /usr/bin/chromium (never a downloaded
browser). Each test saves a screenshot to test-artifacts/ and runs axe-core (from npm, served
by our own origin) on the page: no serious or critical violations allowed. Every request the
browser makes must stay on our origin (no CDN, works offline).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from test_views import BUSCH, COND, build_app
from waitress.server import create_server

from service.kb.build import ensure_artifact
from service.kb.sources import parse_file
from service.store.backends import EmbeddedStore
from service.web import ServiceState
from service.web.cache import AnswerCache

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    app = build_app()
    # The prescription page answers from the real build, in a real sandboxed worker (the
    # same engine, deadline and memory cap as /api/prescribe).
    artifact = ensure_artifact()
    store = ox.Store()
    store.extend(parse_file(artifact))
    embedded = EmbeddedStore(store, "test-pages-e2e", workers=1)
    app.extensions["cmpkg"] = ServiceState(embedded, AnswerCache(0))
    app.config.update(PRESCRIBE_ARTIFACT=str(artifact), SPARQL_TIMEOUT=30.0)
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)
        embedded.close()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def map_cell(page: Page, condition: str, modality: str) -> Locator:
    """An evidence-map cell found by its headers, as a reader would: row, then column."""
    column = page.evaluate(
        """m => [...document.querySelectorAll('#evidence-map thead tr > *')]
               .findIndex(th => th.textContent.trim() === m)""",
        modality,
    )
    assert column > 0, f"no column {modality!r}"
    table = page.locator("table#evidence-map")
    row = table.locator("tbody tr", has=page.locator("th", has_text=condition))
    return row.locator("> *").nth(column)


def assert_accessible(page: Page) -> None:
    """axe-core on the current page; serious and critical violations fail the test."""
    page.add_script_tag(url="/vendor/axe.min.js")
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"""
    )
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert bad == [], bad


def run_in_editor(page: Page) -> Locator:
    # the active tab's button and results (the other tabs' are in the page, hidden)
    page.locator(".yasqe_queryButton:visible").first.click()
    rows = page.locator(".yasr:visible table tbody tr")
    expect(rows.first).to_be_visible(timeout=20_000)
    return rows


def test_query_editor_runs_a_query_and_shows_rows(page: Page):
    page.goto("/query")
    page.wait_for_function("window.cmpkgYasgui !== undefined")
    # The competency questions are ready-made tabs.
    expect(page.get_by_role("tab", name="claims-for-condition")).to_be_visible()
    # A new tab opens with the two prefixes its query needs, not the whole prefix table.
    opening = page.evaluate("() => window.cmpkgYasgui.getTab().getYasqe().getValue()")
    assert opening.count("PREFIX") == 2
    query = (
        "PREFIX cmp: <https://w3id.org/cmpkg/vocab/>\n"
        "SELECT ?claim ?estimate WHERE { ?claim cmp:estimate ?estimate } ORDER BY ?claim"
    )
    page.evaluate("q => window.cmpkgYasgui.getTab().getYasqe().setValue(q)", query)
    rows = run_in_editor(page)
    # Results read as CURIEs and plain numbers, not full IRIs and "^^xsd:decimal".
    results = page.locator(".yasr:visible table")
    expect(results).to_contain_text("claim:busch-2007-aerobic-physical-function")
    expect(results).not_to_contain_text("^^")
    expect(results).not_to_contain_text("https://w3id.org/cmpkg/claim/")
    # 8: the fixture's claims with an estimate (the unconfirmed Busch 2013 one joined them)
    assert rows.count() == 8
    screenshot(page, "query-editor")
    assert_accessible(page)


def test_a_question_tab_runs_with_its_defaults(page: Page, base_url: str):
    import json
    import urllib.request

    with urllib.request.urlopen(base_url + "/questions/claims-for-condition.json") as answer:
        expected = len(json.load(answer)["table"]["rows"])  # the default answer of the page
    page.goto("/query")
    page.wait_for_function("window.cmpkgYasgui !== undefined")
    page.get_by_role("tab", name="claims-for-condition").click()
    text = page.evaluate("() => window.cmpkgYasgui.getTab().getYasqe().getValue()")
    assert "<https://w3id.org/cmpkg/condition/fibromyalgia>" in text  # the default, bound
    rows = run_in_editor(page)
    assert rows.count() == expected == 5  # fibromyalgia's claims, not all 8


def test_the_share_link_restores_the_query(page: Page, browser: Browser, base_url: str):
    page.goto("/query")
    page.wait_for_function("window.cmpkgYasgui !== undefined")
    query = "PREFIX cmp: <https://w3id.org/cmpkg/vocab/>\nSELECT ?s WHERE { ?s cmp:estimate 0.66 }"
    page.evaluate("q => window.cmpkgYasgui.getTab().getYasqe().setValue(q)", query)
    link = page.evaluate("() => window.cmpkgYasgui.getTab().getShareableLink()")
    other = browser.new_context(base_url=base_url).new_page()
    try:
        other.goto(link)
        other.wait_for_function("window.cmpkgYasgui !== undefined")
        restored = other.evaluate("() => window.cmpkgYasgui.getTab().getYasqe().getValue()")
        assert restored == query
        expect(other.locator(".tabsList [role=tab][aria-selected=true]")).to_contain_text(
            "shared query"
        )
        expect(run_in_editor(other).first).to_contain_text("busch-2007-aerobic-physical-function")
    finally:
        other.context.close()


def test_question_form_gives_the_expected_answer(page: Page):
    page.goto("/questions/claims-for-condition")
    page.get_by_label("condition", exact=True).select_option(COND + "knee-osteoarthritis")
    page.get_by_role("button", name="Run question").click()
    table = page.locator("table#results")
    expect(table).to_be_visible()
    expect(table).to_contain_text("Fransen 2015: land-based exercise vs no exercise, pain")
    expect(table).not_to_contain_text("Busch 2007")
    assert table.locator("tbody tr").count() == 3
    # One column per concept, plain headings, no internal variable (the condition parameter)
    assert table.locator("thead th").all_inner_texts() == ["claim", "outcome", "source"]
    expect(table.get_by_role("link", name="Fransen 2015", exact=True).first).to_have_attribute(
        "href", "/cmpkg/source/fransen-2015"
    )
    expect(page.get_by_role("link", name="CSV")).to_have_attribute(
        "href",
        "/api/queries/claims-for-condition?condition=" + "https%3A%2F%2Fw3id.org%2Fcmpkg"
        "%2Fcondition%2Fknee-osteoarthritis&format=csv",
    )
    screenshot(page, "question-form")
    assert_accessible(page)


@pytest.mark.parametrize(
    ("path", "suggestion", "heading"),
    [
        ("/sof?condition=knee-osteoarthritiss", "knee osteoarthritis", "Summary of findings"),
        ("/evidence-map?outcome=physical-functio", "physical function", "Evidence map"),
    ],
)
def test_a_typo_is_a_404_page_whose_suggestion_leads_to_the_right_page(
    page: Page, path: str, suggestion: str, heading: str
):
    response = page.goto(path)
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Unknown term")
    expect(page.locator("main")).not_to_contain_text("No body of evidence")
    screenshot(page, "unknown-term")
    assert_accessible(page)
    page.get_by_role("link", name=suggestion, exact=True).click()
    expect(page.locator("h1")).to_have_text(f"{heading}: {suggestion}")


def test_fms_finds_the_fibromyalgia_evidence(page: Page):
    page.goto("/evidence?condition=FMS&modality=aerobic-exercise&outcome=physical-function")
    expect(page.locator("#claim-" + BUSCH.rsplit("/", 1)[-1])).to_contain_text("0.66")


def test_evidence_map_cells_show_the_bodies(page: Page):
    page.goto("/evidence-map")
    page.get_by_label("Outcome").select_option("physical-function")
    page.get_by_role("button", name="Show map").click()
    expect(page.locator("h1")).to_have_text("Evidence map: physical function")
    table = page.locator("table#evidence-map")
    expect(table).to_contain_text("no evidence")  # gaps are visible (to screen readers too)
    # The whole matrix fits a 1,400 px window: no horizontal scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    assert page.evaluate(
        "(() => { const r = document.querySelector('.map-scroll');"
        " return r.scrollWidth <= r.clientWidth; })()"
    )
    screenshot(page, "evidence-map")
    assert_accessible(page)

    # The unconfirmed Busch 2013 claim: no benefit shown, and the cell carries the marks.
    unconfirmed = map_cell(page, "fibromyalgia", "resistance training")
    expect(unconfirmed).to_have_attribute("data-conclusion", "inconclusive")
    expect(unconfirmed.locator(".cell-marks")).to_have_text("† *")
    expect(unconfirmed).to_contain_text("1 unconfirmed claim(s) not counted")
    # A broader row says its evidence is indirect.
    broader = map_cell(page, "osteoarthritis", "land-based exercise")
    expect(broader).to_have_attribute("data-directness", "indirect")
    expect(broader.locator(".cell-marks")).to_contain_text("ind.")

    cell = map_cell(page, "fibromyalgia", "aerobic exercise")
    expect(cell).to_have_attribute("data-conclusion", "benefit")
    expect(cell).to_contain_text("moderate")
    cell.get_by_role("link").click()
    page.wait_for_url("**/evidence?**")
    claim = page.locator("#claim-" + BUSCH.rsplit("/", 1)[-1])
    expect(claim).to_be_visible()
    expect(claim).to_contain_text("SMD 0.66 (95% CI 0.41 to 0.92)")
    expect(claim).to_contain_text("Busch 2007")
    expect(claim.get_by_role("link", name="doi:10.1002/14651858.CD003786.pub2")).to_be_visible()
    screenshot(page, "evidence-cell-busch-2007")
    assert_accessible(page)


def test_summary_of_findings_for_knee_osteoarthritis(page: Page):
    page.goto("/sof")
    page.get_by_label("Condition").select_option("knee-osteoarthritis")
    page.get_by_role("button", name="Show summary").click()
    expect(page.locator("h1")).to_have_text("Summary of findings: knee osteoarthritis")
    table = page.locator("table.sof")
    expect(table).to_have_count(1)
    headers = table.locator("thead th").all_inner_texts()
    assert headers == [
        "Outcome",
        "Relative effect (95% CI)",
        "Absolute effect",
        "Participants (studies)",
        "Certainty of the evidence (GRADE)",
        "What happens",
        "Curation status",
        "Source",
    ]
    pain = table.locator("#sof-land-based-exercise--pain-severity--knee-osteoarthritis")
    expect(pain).to_contain_text("SMD -0.49 (95% CI -0.59 to -0.39)")
    expect(pain).to_contain_text("favours exercise")
    expect(pain).to_contain_text("About 12 points less pain on a 0-100 scale.")
    expect(pain).to_contain_text("3,537 (44 studies)")
    expect(pain).to_contain_text("secondary")
    expect(pain.get_by_role("link", name="doi:10.1002/14651858.CD004376.pub3")).to_be_visible()
    # +0.28 for quality of life (higher is better) favours exercise too.
    life = table.locator("#sof-land-based-exercise--quality-of-life--knee-osteoarthritis")
    expect(life).to_contain_text("favours exercise")
    # Numbered footnotes give each reason; following one shows it.
    pain.get_by_role("link", name="footnote 1").click()
    note = page.locator("#fn-land-based-exercise-1")
    expect(note).to_contain_text("The source gives no GRADE certainty for this result.")
    expect(page.locator("#fn-land-based-exercise-2")).to_contain_text("Curation status")
    expect(page.get_by_role("link", name="CSV")).to_have_attribute(
        "href", "/sof.csv?condition=knee-osteoarthritis"
    )
    screenshot(page, "summary-of-findings-knee-oa")
    assert_accessible(page)


def test_summary_of_findings_prints_on_a4(page: Page):
    page.goto("/sof?condition=fibromyalgia")
    page.emulate_media(media="print")
    expect(page.locator("form")).to_be_hidden()
    # A4 landscape less 12 mm margins is 273 mm, about 1,031 CSS pixels wide.
    page.set_viewport_size({"width": 1031, "height": 730})
    widths = page.evaluate(
        "[...document.querySelectorAll('table.sof')].map(t => t.getBoundingClientRect().right)"
    )
    assert widths and max(widths) <= 1031
    ARTIFACTS.mkdir(exist_ok=True)
    page.pdf(path=str(ARTIFACTS / "summary-of-findings.pdf"), format="A4", landscape=True)


def test_prescription_form_returns_ranked_options(page: Page):
    page.goto("/prescribe")
    # human conditions only: an animal research model is no presentation
    expect(page.locator("form.rx-form")).not_to_contain_text("animal model")
    page.get_by_label("fibromyalgia", exact=True).check()
    page.get_by_label("physical function", exact=True).check()
    page.get_by_label("fear of movement: status").select_option("elevated")
    page.get_by_label("Setting").select_option("water")
    page.get_by_role("button", name="Rank the options").click()
    answer = page.locator("#rx-answer")
    expect(answer).to_be_visible()
    first, second = page.locator("#rx-1"), page.locator("#rx-2")
    # The same ranking as POST /api/prescribe gives (tests/test_prescribe_api.py).
    expect(first.locator("h3")).to_contain_text("1. aquatic exercise")
    expect(second.locator("h3")).to_contain_text("2. aerobic exercise")
    expect(first).to_contain_text("moderate certainty")
    expect(first).to_contain_text("matches the preference for water-based exercise")
    expect(first).to_contain_text("fewer than 400 participants")  # a reason for the certainty
    expect(answer.locator(".caution").first).to_be_visible()
    expect(answer).to_contain_text("Not advice to patients")
    screenshot(page, "prescription")
    assert_accessible(page)
    page.emulate_media(media="print")
    expect(page.locator("form.rx-form")).to_be_hidden()
    expect(first).to_be_visible()


def test_an_invalid_presentation_is_explained(page: Page):
    page.goto("/prescribe")
    page.get_by_label("physical function", exact=True).check()
    page.get_by_role("button", name="Rank the options").click()
    expect(page.get_by_role("alert")).to_contain_text("needs at least one condition")
    assert_accessible(page)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/", "home"),
        ("/questions", "questions"),
        ("/sof", "summary-of-findings-form"),
        ("/sof?condition=fibromyalgia", "summary-of-findings-fibromyalgia"),
        ("/evidence-map?outcome=pain-severity", "evidence-map-pain"),
        ("/questions/claims-for-condition?run=1&condition=fibromyalgiaa", "question-error"),
        ("/prescribe", "prescription-form"),
    ],
)
def test_other_pages_are_accessible(page: Page, path: str, name: str):
    page.goto(path)
    expect(page.locator("footer")).to_contain_text("Not advice to patients")
    screenshot(page, name)
    assert_accessible(page)


def test_evidence_map_works_without_javascript_and_prints(browser: Browser, base_url: str):
    context = browser.new_context(
        base_url=base_url, java_script_enabled=False, viewport={"width": 1400, "height": 900}
    )
    try:
        page = context.new_page()
        page.goto("/evidence-map?outcome=physical-function")
        cell = map_cell(page, "fibromyalgia", "aerobic exercise")
        cell.get_by_role("link").click()
        page.wait_for_url("**/evidence?**")
        expect(page.locator("#claim-" + BUSCH.rsplit("/", 1)[-1])).to_contain_text("0.66")
        page.go_back()
        page.emulate_media(media="print")
        # In print the navigation and forms go; the whole matrix stays.
        expect(page.locator("nav")).to_be_hidden()
        expect(page.locator("table#evidence-map")).to_be_visible()
        screenshot(page, "evidence-map-print")
    finally:
        context.close()
