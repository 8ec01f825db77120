"""Shared fixtures: real servers on free loopback ports (the SPARQL service on the embedded
store, an Oxigraph server, the service on that remote store) and a small build artifact.

The artifact is written here, so the endpoint tests do not depend on a build; its few
clinical figures are Busch 2007's, as the evidence notes give them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pyoxigraph as ox
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

if TYPE_CHECKING:
    from service.kb.reasoning import Rule

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
NS = "https://w3id.org/cmpkg/"
GRAPH = {
    name: f"{NS}graph/{name}" for name in ("ontology", "asserted", "inferred", "shapes", "rules")
}
DRAFT_GRAPH = "https://w3id.org/cmpkg/graph/draft-preview"
FILLER = 60  # triples in a test-only graph: five copies joined make a cartesian product of 60^5

ARTIFACT = """
@prefix cmp: <https://w3id.org/cmpkg/vocab/> .
@prefix cond: <https://w3id.org/cmpkg/condition/> .
@prefix mod: <https://w3id.org/cmpkg/modality/> .
@prefix out: <https://w3id.org/cmpkg/outcome/> .
@prefix comp: <https://w3id.org/cmpkg/comparator/> .
@prefix measure: <https://w3id.org/cmpkg/measure/> .
@prefix cert: <https://w3id.org/cmpkg/certainty/> .
@prefix status: <https://w3id.org/cmpkg/status/> .
@prefix dir: <https://w3id.org/cmpkg/direction/> .
@prefix sig: <https://w3id.org/cmpkg/significance/> .
@prefix src: <https://w3id.org/cmpkg/source/> .
@prefix claim: <https://w3id.org/cmpkg/claim/> .
@prefix rule: <https://w3id.org/cmpkg/rule/> .
@prefix graph: <https://w3id.org/cmpkg/graph/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix sh: <http://www.w3.org/ns/shacl#> .

graph:ontology {
  cmp:Condition a owl:Class ; rdfs:label "condition"@en .
  cmp:ExerciseModality a owl:Class ; rdfs:label "exercise modality"@en .
  cmp:EvidenceClaim a owl:Class ; rdfs:label "evidence claim"@en .
  cond:chronic-pain a owl:Class , cmp:Condition ; rdfs:label "chronic pain"@en .
  cond:chronic-musculoskeletal-pain a owl:Class , cmp:Condition ;
      rdfs:subClassOf cond:chronic-pain ; rdfs:label "chronic musculoskeletal pain"@en .
  cond:chronic-widespread-pain a owl:Class , cmp:Condition ;
      rdfs:subClassOf cond:chronic-musculoskeletal-pain ; rdfs:label "chronic widespread pain"@en .
  cond:fibromyalgia a owl:Class , cmp:Condition ; rdfs:subClassOf cond:chronic-widespread-pain ;
      rdfs:label "fibromyalgia"@en ; skos:altLabel "fibromyalgia syndrome"@en , "FMS"@en .
  cond:knee-osteoarthritis a owl:Class , cmp:Condition ;
      rdfs:subClassOf cond:chronic-musculoskeletal-pain ; rdfs:label "knee osteoarthritis"@en .
  mod:exercise a owl:Class , cmp:ExerciseModality ; rdfs:label "exercise"@en .
  mod:aerobic-exercise a owl:Class , cmp:ExerciseModality ; rdfs:subClassOf mod:exercise ;
      rdfs:label "aerobic exercise"@en .
  mod:resistance-training a owl:Class , cmp:ExerciseModality ; rdfs:subClassOf mod:exercise ;
      rdfs:label "resistance training"@en .
  out:physical-function a cmp:Outcome ; rdfs:label "physical function"@en .
  out:global-well-being a cmp:Outcome ; rdfs:label "global well-being"@en .
  out:pain-severity a cmp:Outcome ; rdfs:label "pain severity"@en .
  cert:moderate a cmp:CertaintyLevel ; rdfs:label "moderate certainty"@en ; cmp:rank 3 .
}

graph:asserted {
  src:busch-2007 a cmp:SystematicReview ; rdfs:label "Busch 2007" ;
      cmp:cochraneId "CD003786.pub2" ; cmp:pmid "17943797" ; cmp:year 2007 .
  claim:busch-2007-aerobic-physical-function a cmp:EvidenceClaim ;
      rdfs:label "Busch 2007: aerobic exercise vs control, physical function"@en ;
      cmp:intervention mod:aerobic-exercise ; cmp:comparator comp:control ;
      cmp:condition cond:fibromyalgia ; cmp:outcome out:physical-function ;
      cmp:effectMeasure measure:smd ; cmp:estimate 0.66 ; cmp:ciLower 0.41 ; cmp:ciUpper 0.92 ;
      cmp:higherIsBetter true ; cmp:certainty cert:moderate ;
      cmp:source src:busch-2007 ; cmp:curationStatus status:confirmed .
  claim:busch-2007-aerobic-global-well-being a cmp:EvidenceClaim ;
      rdfs:label "Busch 2007: aerobic exercise vs control, global well-being"@en ;
      cmp:intervention mod:aerobic-exercise ; cmp:comparator comp:control ;
      cmp:condition cond:fibromyalgia ; cmp:outcome out:global-well-being ;
      cmp:effectMeasure measure:smd ; cmp:estimate 0.49 ; cmp:ciLower 0.23 ; cmp:ciUpper 0.75 ;
      cmp:higherIsBetter true ; cmp:certainty cert:moderate ;
      cmp:source src:busch-2007 ; cmp:curationStatus status:confirmed .
  claim:busch-2007-aerobic-pain a cmp:EvidenceClaim ;
      rdfs:label "Busch 2007: aerobic exercise vs control, pain"@en ;
      cmp:intervention mod:aerobic-exercise ; cmp:comparator comp:control ;
      cmp:condition cond:fibromyalgia ; cmp:outcome out:pain-severity ;
      cmp:effectMeasure measure:smd ; cmp:estimate 0.65 ; cmp:ciLower -0.09 ; cmp:ciUpper 1.39 ;
      cmp:higherIsBetter true ; cmp:certainty cert:moderate ;
      cmp:source src:busch-2007 ; cmp:curationStatus status:confirmed .
}

graph:inferred {
  claim:busch-2007-aerobic-physical-function cmp:direction dir:benefit ;
      cmp:significance sig:significant .
  claim:busch-2007-aerobic-global-well-being cmp:direction dir:benefit ;
      cmp:significance sig:significant .
  claim:busch-2007-aerobic-pain cmp:significance sig:inconclusive .
}

graph:shapes {
  cmp:EvidenceClaimShape a sh:NodeShape ; sh:targetClass cmp:EvidenceClaim ;
      sh:property cmp:EvidenceClaimShape-source .
  cmp:EvidenceClaimShape-source sh:path cmp:source ; sh:minCount 1 ; sh:maxCount 1 .
}

graph:rules {
  rule:significance a cmp:Rule ;
      rdfs:label "significance from the confidence interval and the null value"@en .
}
"""

DRAFT = """
@prefix claim: <https://w3id.org/cmpkg/claim/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
claim:draft-preview-example rdfs:label "a draft statement a curator is previewing"@en .
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def filler_graph() -> str:
    rows = "\n".join(
        f"  <urn:test:n{i}> <urn:test:p> <urn:test:n{(i + 1) % FILLER}> ." for i in range(FILLER)
    )
    return f"<urn:test:filler> {{\n{rows}\n}}\n"


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("build") / "cmpkg.trig"
    path.write_text(ARTIFACT + filler_graph(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def draft_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("draft") / "draft.ttl"
    path.write_text(DRAFT, encoding="utf-8")
    return path


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {seconds} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_service(*args: str, log: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    handle = log.open("w")
    process = subprocess.Popen(
        [str(BIN / "cmpkg"), "serve", "--port", str(port), *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/readyz", process)
    return base, process


SERVICE_FLAGS = ("--timeout", "2", "--workers", "2", "--row-cap", "1000", "--max-body", "65536")


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the embedded server's stdout/stderr (its access log) goes."""
    return tmp_path_factory.mktemp("logs") / "embedded.log"


@pytest.fixture(scope="session")
def server(artifact: Path, draft_file: Path, server_log: Path) -> Iterator[str]:
    """The service on the embedded store, as `cmpkg serve` runs it."""
    log = server_log
    base, process = start_service(
        "--artifact", str(artifact), "--data", f"{draft_file}={DRAFT_GRAPH}", *SERVICE_FLAGS,
        log=log,
    )  # fmt: skip
    yield base
    stop(process)


@pytest.fixture(scope="session")
def oxigraph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Oxigraph server (the `oxigraph` package) on loopback, persisted in a temp dir."""
    binary = BIN / "oxigraph"
    if not binary.exists():
        binary = Path(shutil.which("oxigraph") or "oxigraph")
    port = free_port()
    location = tmp_path_factory.mktemp("oxigraph")
    process = subprocess.Popen(
        [str(binary), "serve", "--location", str(location), "--bind", f"127.0.0.1:{port}",
         "--timeout-s", "5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/query?query=ASK%7B%7D", process)
    yield base
    stop(process)


@pytest.fixture(scope="session")
def pushed(oxigraph_server: str, artifact: Path) -> str:
    """The artifact loaded into the Oxigraph server by `cmpkg push`."""
    result = subprocess.run(
        [
            str(BIN / "cmpkg"),
            "push",
            "--to",
            f"{oxigraph_server}/store",
            "--artifact",
            str(artifact),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return oxigraph_server


@pytest.fixture(scope="session")
def remote_server(pushed: str, tmp_path_factory) -> Iterator[str]:
    """The service answering through SPARQLWrapper against the Oxigraph server."""
    log = tmp_path_factory.mktemp("logs") / "remote.log"
    base, process = start_service("--store", f"{pushed}/query", *SERVICE_FLAGS, log=log)
    yield base
    stop(process)


class HitCounter:
    """A local HTTP server that counts every request it receives."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                counter.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/turtle")
                self.end_headers()
                self.wfile.write(b"<urn:x> <urn:y> <urn:z> .\n")

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hit_counter() -> Iterator[HitCounter]:
    counter = HitCounter()
    yield counter
    counter.close()


def http(
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request; returns status, headers (lower-case names) and body."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def readyz(base: str) -> dict:
    return json.loads(http(base + "/readyz")[2])


def shipped_client(store: object) -> Iterator[object]:
    """A Flask test client of the real app over an in-memory store, for module fixtures."""
    from service.store.backends import EmbeddedStore
    from service.web import create_app

    served = EmbeddedStore(store, "test-shipped", workers=1)  # type: ignore[arg-type]
    try:
        yield create_app(served, {"SPARQL_TIMEOUT": 30.0}).test_client()
    finally:
        served.close()


@contextlib.contextmanager
def one_triple_store(name: str, workers: int, memory_mb: int) -> Iterator[object]:
    """A sandboxed embedded store holding one triple (urn:a urn:b urn:c): for tests of the
    worker pool itself, where the data is beside the point."""
    from service.store.backends import EmbeddedStore
    from service.store.pool import Limits

    data = ox.Store()
    data.add(ox.Quad(ox.NamedNode("urn:a"), ox.NamedNode("urn:b"), ox.NamedNode("urn:c")))
    embedded = EmbeddedStore(data, name, workers=workers, limits=Limits(memory_mb * 1024 * 1024))
    try:
        yield embedded
    finally:
        embedded.close()


@functools.cache
def shipped_store() -> ox.Store:
    """The shipped ontology, data and shapes (no reasoning), loaded once per test process.

    Shared read-only by every module that reads the knowledge as curated; a test that needs
    to change a store makes its own.
    """
    from service.kb.sources import knowledge_files, load_store

    return load_store(knowledge_files())


@pytest.fixture(scope="session")
def shipped_app_client() -> Iterator[object]:
    """The real app over `shipped_store()`, one per test process (its query worker too)."""
    yield from shipped_client(shipped_store())


@contextlib.contextmanager
def sparql_parsed_once() -> Iterator[None]:
    """Within the block, rdflib parses and translates each query text once, not per call.

    pySHACL runs a SPARQL constraint once per focus node with the same text (only $this
    differs, and that is an initial binding), and rdflib parses the text anew each time: on
    the shipped KB four fifths of the reference engine's run went to the parser. Here each
    (text, base, prefixes) is translated once and then evaluated with each call's bindings,
    which is how rdflib's own prepared queries (prepareQuery) run: the same algebra, the same
    evaluation, the same answers, so an oracle run inside the block is the same oracle.
    A text that fails to parse is not kept and fails again on the next call.
    """
    from rdflib.plugins.sparql import processor

    original = processor.SPARQLProcessor.query
    translated: dict[tuple, object] = {}

    def query(self, text, initBindings=None, initNs=None, base=None, DEBUG=False):
        if isinstance(text, str):
            key = (text, base, tuple(sorted((initNs or {}).items())))
            if key not in translated:
                parsed = processor.parseQuery(text)
                translated[key] = processor.translateQuery(parsed, base, initNs)
            text = translated[key]
        return original(self, text, initBindings, initNs, base, DEBUG)

    processor.SPARQLProcessor.query = query  # type: ignore[method-assign]
    try:
        yield
    finally:
        processor.SPARQLProcessor.query = original  # type: ignore[method-assign]


# The longest modules (seconds of one worker's time, measured with --junitxml on this machine),
# longest first. Under `--dist loadfile --no-loadscope-reorder` each worker takes the next
# module in collection order when it is nearly done, so a long module picked up last would
# leave the other worker idle for most of its length: longest first evens out the two.
LONGEST_FIRST = (
    "test_pages_e2e", "test_build", "test_attack_sparql", "test_validate", "test_pages_live",
    "test_rebuild_scoped", "test_soak", "test_build_overlap", "test_prescribe_seeded",
    "test_rules", "test_shacl_sparql", "test_openapi", "test_lifecycle", "test_api",
    "test_rule_memo", "test_headers", "test_attack_prescribe", "test_api_json", "test_fhir",
    "test_virtuoso", "test_http_server", "test_shapes",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: order within


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist, build the artifact once before the workers start.

    Several modules need the current build (`ensure_artifact`); without this each worker
    would find it stale and run the same HermiT build at the same time.
    """
    distributed = getattr(session.config.option, "numprocesses", None)
    if not distributed or hasattr(session.config, "workerinput"):
        return
    from service.kb.build import ensure_artifact

    # A failing build is reported by the build's own tests and by each module that needs it.
    with contextlib.suppress(Exception):
        ensure_artifact()


# --- headless Chromium (Debian's, installed by scripts/bootstrap.sh; never a downloaded one) ---
# A module using `page` defines a `base_url` fixture: the server under test.

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    foreign: list[str] = []
    origin = urlsplit(base_url).netloc

    def check(request) -> None:
        url = urlsplit(request.url)
        if url.scheme in ("http", "https") and url.netloc != origin:
            foreign.append(request.url)

    page.on("request", check)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert foreign == [], f"requests left our origin: {foreign}"
    assert errors == [], f"JavaScript errors: {errors}"


# --- rules run on small stores (test_rule_engine, test_rule_reruns) ----------------------------
RULE_PREMISES = ox.NamedNode("urn:test:premises")
RULE_TARGET = ox.NamedNode("urn:test:derived")


def make_rule(name: str, query: str, order: int = 10) -> Rule:
    from service.kb.reasoning import Rule

    return Rule(iri=NS + "rule/" + name, label=name, order=order, query=query)


def rule_store(turtle: str) -> ox.Store:
    """A store holding `turtle` (every project prefix declared) in RULE_PREMISES."""
    from service.kb.sources import PREFIXES

    store = ox.Store()
    prologue = "".join(f"@prefix {k}: <{v}> .\n" for k, v in PREFIXES.items())
    store.load((prologue + turtle).encode(), format=ox.RdfFormat.TURTLE, to_graph=RULE_PREMISES)
    return store


def graph_triples(store: ox.Store, name: ox.NamedNode | ox.DefaultGraph = RULE_TARGET) -> set[str]:
    return {str(q.triple) for q in store.quads_for_pattern(None, None, None, name)}


@pytest.fixture(scope="module")
def shipped_rule_input() -> tuple[list[ox.Triple], list[Rule]]:
    """The shipped schema, data and OWL RL entailments the rules read, and the shipped rules."""
    from service.kb.reasoning import load_rule_statements, load_rules, owl_rl_fast
    from service.kb.sources import knowledge_files, load_triples

    files = knowledge_files(ROOT)
    vocabulary = [ROOT / "ontology" / "rules" / "rule-vocabulary.ttl"]
    schema = load_triples(files["ontology"] + vocabulary)
    data = load_triples(files["asserted"])
    entailed, _ = owl_rl_fast(schema, data)
    return [*schema, *data, *entailed], load_rules(load_rule_statements(ROOT))
