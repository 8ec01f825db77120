"""HTTP conventions of the whole app on the real service (`cmpkg serve`, conftest's `server`):
security headers, conditional GET, the public base URL instead of the Host header, bounded
error bodies; and, in headless Chromium, that the pages still work under their CSP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import SERVICE_FLAGS, http, start_service, stop
from playwright.sync_api import Page, expect

FIBROMYALGIA = "/cmpkg/condition/fibromyalgia"
HTML_PAGES = ["/", "/query", "/questions", FIBROMYALGIA, "/docs"]
ASK = "/sparql?query=" + quote("ASK { ?s ?p ?o }")
PUBLIC = "https://kg.example.org"
EVIL = "evil.example"


@pytest.fixture(scope="module")
def base_url(server: str) -> str:  # the `page` fixture's server
    return server


@pytest.fixture(scope="module")
def public_server(artifact: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("logs") / "public.log"
    base, process = start_service(
        "--artifact", str(artifact), "--public-url", PUBLIC + "/", *SERVICE_FLAGS, log=log
    )
    yield base
    stop(process)


@pytest.mark.parametrize("path", HTML_PAGES)
def test_pages_carry_security_headers(server: str, path: str):
    status, headers, _ = http(server + path, headers={"Accept": "text/html"})
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "default-src 'self'" in csp and "'unsafe-eval'" not in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/api/queries", ASK, "/healthz"])
def test_data_answers_cannot_be_sniffed_or_framed(server: str, path: str):
    _, headers, _ = http(server + path)
    assert headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/api/queries", "application/json"),
        ("/api/queries/modality-evidence?modality=aerobic%20exercise", "application/ld+json"),
        (FIBROMYALGIA, "text/html"),
        (FIBROMYALGIA, "text/turtle"),
        ("/query", "text/html"),
        ("/", "text/html"),
        ("/openapi.json", "application/json"),
        (ASK, "application/sparql-results+json"),
    ],
)
def test_conditional_get_answers_304(server: str, path: str, accept: str):
    status, headers, body = http(server + path, headers={"Accept": accept})
    assert status == 200 and body
    etag = headers["etag"]
    status, again, body = http(server + path, headers={"Accept": accept, "If-None-Match": etag})
    assert status == 304 and body == b""
    assert again["etag"] == etag
    status, _, body = http(server + path, headers={"Accept": accept, "If-None-Match": '"x"'})
    assert status == 200 and body


def test_another_representation_has_another_etag(server: str):
    _, html, _ = http(server + FIBROMYALGIA, headers={"Accept": "text/html"})
    _, turtle, _ = http(server + FIBROMYALGIA, headers={"Accept": "text/turtle"})
    assert html["etag"] != turtle["etag"]


def context_of(base: str, host: str) -> str:
    path = "/api/queries/modality-evidence?modality=aerobic%20exercise"
    status, _, body = http(base + path, headers={"Host": host})
    assert status == 200, body
    return json.loads(body)["@context"]


def test_public_base_url_is_used_instead_of_the_host_header(public_server: str):
    assert context_of(public_server, EVIL) == PUBLIC + "/context.jsonld"
    status, _, body = http(
        public_server + FIBROMYALGIA,
        headers={"Host": EVIL, "Accept": "application/ld+json"},
    )
    assert status == 200 and json.loads(body)["@context"] == PUBLIC + "/context.jsonld"
    status, _, description = http(
        public_server + "/sparql", headers={"Host": EVIL, "Accept": "text/turtle"}
    )
    assert status == 200
    assert f"<{PUBLIC}/sparql>".encode() in description and EVIL.encode() not in description


def test_without_a_public_url_the_bind_address_is_used(server: str):
    assert context_of(server, EVIL) == server + "/context.jsonld"


def test_relative_iris_resolve_against_the_public_endpoint(public_server: str):
    status, _, body = http(
        public_server + "/sparql",
        data=b"CONSTRUCT { <s> <p> 1 } WHERE {}",
        headers={
            "Host": EVIL,
            "Content-Type": "application/sparql-query",
            "Accept": "application/n-triples",
        },
    )
    assert status == 200, body
    assert (
        body.strip()
        == (f'<{PUBLIC}/s> <{PUBLIC}/p> "1"^^<http://www.w3.org/2001/XMLSchema#integer> .').encode()
    )


@pytest.mark.parametrize(
    "path", [ASK, "/api/queries/modality-evidence?modality=aerobic%20exercise", FIBROMYALGIA]
)
def test_406_does_not_echo_a_huge_accept_header(server: str, path: str):
    accept = ", ".join(f"application/x-unknown-{i}" for i in range(2000))  # ~50 KB
    status, _, body = http(server + path, headers={"Accept": accept})
    assert status == 406
    assert len(body) < 1000 and b"x-unknown" not in body


def test_long_error_messages_are_clipped(server: str):
    fmt = "x" * 10_000
    status, _, body = http(server + ASK + "&format=" + fmt)
    assert status == 406 and len(body) < 1000


# --- the pages in Chromium, under their CSP ----------------------------------------------------
def csp_violations(page: Page) -> list[str]:
    found: list[str] = []
    page.on(
        "console",
        lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return found


def test_query_editor_works_under_its_csp(page: Page):
    violations = csp_violations(page)
    page.goto("/query")
    page.wait_for_function("window.cmpkgYasgui !== undefined")
    query = (
        "PREFIX cmp: <https://w3id.org/cmpkg/vocab/>\n"
        "SELECT ?claim ?estimate WHERE { ?claim cmp:estimate ?estimate } ORDER BY ?claim"
    )
    page.evaluate("q => window.cmpkgYasgui.getTab().getYasqe().setValue(q)", query)
    page.locator(".yasqe_queryButton").first.click()
    expect(page.locator(".yasr table tbody tr").first).to_be_visible(timeout=20_000)
    expect(page.locator(".yasr")).to_contain_text("busch-2007-aerobic-physical-function")
    assert violations == []


@pytest.mark.parametrize("path", ["/", "/query", FIBROMYALGIA])
def test_axe_loads_from_our_origin_under_the_csp(page: Page, path: str):
    violations = csp_violations(page)
    page.goto(path)
    page.add_script_tag(url="/vendor/axe.min.js")
    # Whether the page passes axe is test_pages_e2e's question; here: axe loads and runs.
    rules = page.evaluate("async () => (await axe.run(document)).passes.length")
    assert rules > 0
    assert violations == []
