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

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from test_views import BUSCH, COND, build_app
from waitress.server import create_server

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = create_server(build_app(), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)


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


def test_query_editor_runs_a_query_and_shows_rows(page: Page):
    page.goto("/query")
    page.wait_for_function("window.cmpkgYasgui !== undefined")
    # The competency questions are ready-made tabs.
    expect(page.get_by_role("tab", name="claims-for-condition")).to_be_visible()
    query = (
        "PREFIX cmp: <https://w3id.org/cmpkg/vocab/>\n"
        "SELECT ?claim ?estimate WHERE { ?claim cmp:estimate ?estimate } ORDER BY ?claim"
    )
    page.evaluate("q => window.cmpkgYasgui.getTab().getYasqe().setValue(q)", query)
    page.locator(".yasqe_queryButton").first.click()
    rows = page.locator(".yasr table tbody tr")
    expect(rows.first).to_be_visible(timeout=20_000)
    expect(page.locator(".yasr")).to_contain_text("busch-2007-aerobic-physical-function")
    assert rows.count() == 7
    screenshot(page, "query-editor")
    assert_accessible(page)


def test_question_form_gives_the_expected_answer(page: Page):
    page.goto("/questions/claims-for-condition")
    page.get_by_label("condition", exact=True).select_option(COND + "knee-osteoarthritis")
    page.get_by_role("button", name="Run question").click()
    table = page.locator("table#results")
    expect(table).to_be_visible()
    expect(table).to_contain_text("Fransen 2015: land-based exercise vs no exercise, pain")
    expect(table).not_to_contain_text("Busch 2007")
    assert table.locator("tbody tr").count() == 3
    expect(page.get_by_role("link", name="CSV")).to_have_attribute(
        "href",
        "/api/queries/claims-for-condition?condition=" + "https%3A%2F%2Fw3id.org%2Fcmpkg"
        "%2Fcondition%2Fknee-osteoarthritis&format=csv",
    )
    screenshot(page, "question-form")
    assert_accessible(page)


def test_evidence_map_cell_leads_to_the_busch_2007_claim(page: Page):
    page.goto("/evidence-map")
    page.get_by_label("Outcome").select_option("physical-function")
    page.get_by_role("button", name="Show map").click()
    expect(page.locator("h1")).to_have_text("Evidence map: physical function")
    table = page.locator("table#evidence-map")
    expect(table).to_contain_text("no evidence")  # gaps are visible
    page.set_viewport_size({"width": 1920, "height": 1000})  # the whole matrix in the picture
    screenshot(page, "evidence-map")
    assert_accessible(page)

    cell = map_cell(page, "fibromyalgia", "aerobic exercise")
    expect(cell).to_contain_text("1 claim")
    expect(cell).to_contain_text("benefit")
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
        "Effect (95% CI)",
        "Participants (studies)",
        "Certainty of the evidence (GRADE)",
        "Source",
    ]
    pain = table.locator("#sof-fransen-2015-land-based-pain-severity")
    expect(pain).to_contain_text("SMD -0.49 (95% CI -0.59 to -0.39)")
    expect(pain).to_contain_text("3,537 (44 studies)")
    expect(pain).to_contain_text("Fransen 2015")
    screenshot(page, "summary-of-findings-knee-oa")
    assert_accessible(page)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/", "home"),
        ("/questions", "questions"),
        ("/sof", "summary-of-findings-form"),
        ("/evidence-map?outcome=pain-severity", "evidence-map-pain"),
        ("/questions/claims-for-condition?run=1&condition=fibromyalgiaa", "question-error"),
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
        page.get_by_role("link", name="1 claim benefit moderate for fibromyalgia, aerobic").click()
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
