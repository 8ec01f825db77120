"""End-to-end over the real service: `cmpkg serve` on the shipped build, in headless Chromium.

test_pages_e2e.py proves the pages on a small fixture app; this module proves the wiring of
the real application (pages over the query workers, named questions bound by the engine) on
the shipped knowledge graph, with the answers worked out by hand from data/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import start_service, stop
from playwright.sync_api import Page, expect
from test_pages_e2e import assert_accessible, map_cell, screenshot

from service.kb.build import ensure_artifact

COND = "https://w3id.org/cmpkg/condition/"
OUT = "https://w3id.org/cmpkg/outcome/"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("live-pages") / "serve.log"
    base, process = start_service("--artifact", str(Path(ensure_artifact())), log=log)
    try:
        yield base
    finally:
        stop(process)


def test_evidence_map_cell_reaches_busch_2007_on_the_shipped_graph(page: Page) -> None:
    page.goto("/evidence-map?outcome=physical-function")
    cell = map_cell(page, "fibromyalgia", "aerobic exercise")
    # Busch 2007 (SMD 0.66, moderate) and Bidonde 2017 (MD -10.16, low): both significant
    # benefits, so the cell shows the better certainty of the two.
    expect(cell).to_contain_text("2 claims")
    expect(cell).to_contain_text("benefit")
    expect(cell).to_contain_text("moderate")
    cell.get_by_role("link").click()
    page.wait_for_url("**/evidence?**")
    claim = page.locator("#claim-busch-2007-aerobic-physical-function")
    expect(claim).to_contain_text("SMD 0.66 (95% CI 0.41 to 0.92)")
    expect(claim.get_by_role("link", name="doi:10.1002/14651858.CD003786.pub2")).to_be_visible()
    screenshot(page, "live-evidence-cell-busch-2007")
    assert_accessible(page)


def test_question_form_answers_from_the_shipped_graph(page: Page) -> None:
    page.goto("/questions/modalities-improving-outcome")
    page.get_by_label("condition", exact=True).select_option(COND + "fibromyalgia")
    page.get_by_label("outcome", exact=True).select_option(OUT + "physical-function")
    page.get_by_role("button", name="Run question").click()
    table = page.locator("table#results")
    expect(table).to_be_visible()
    # Worked out from data/: Busch 2007 and Bidonde 2017 (aerobic), Bidonde 2014 (aquatic,
    # FIQ and physical function, each as MD and SMD); nothing with a CI crossing the null.
    assert table.locator("tbody tr").count() == 6
    expect(table).to_contain_text("Busch 2007")
    expect(table).to_contain_text("Bidonde 2014")
    screenshot(page, "live-question-form")
    assert_accessible(page)


def test_entity_page_of_a_claim_dereferences(page: Page) -> None:
    page.goto("/cmpkg/claim/busch-2007-aerobic-physical-function")
    expect(page.locator("h1")).to_contain_text("Busch 2007: aerobic training vs control")
    expect(page.locator("body")).to_contain_text("0.66")
    source = page.get_by_role("link", name="Busch 2007", exact=True).first
    expect(source).to_have_attribute("href", "/cmpkg/source/busch-2007")
    # links in: the support statement the rules derived from this claim
    expect(page.locator("body")).to_contain_text(
        "aerobic exercise is supported for physical function in fibromyalgia"
    )
    screenshot(page, "live-entity-claim")
    assert_accessible(page)
