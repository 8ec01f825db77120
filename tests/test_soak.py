"""A short soak (about 20 s): mixed normal load, runaways and one worker killed mid-run.

Asserts what an operator needs: no normal query ever gets a 5xx, every runaway is stopped with
a 503, and neither the server nor its workers grow past their bounds. Loopback only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from conftest import http, start_service, stop
from test_attack_sparql import children, rss_mb

# A longer soak: CMPKG_SOAK_SECONDS=600 pytest tests/test_soak.py
LOAD_SECONDS = float(os.environ.get("CMPKG_SOAK_SECONDS", "14"))
WORKER_MEMORY_MB = 256
P = "PREFIX cmp: <https://w3id.org/cmpkg/vocab/> PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>"
NORMAL = [
    (f"{P} SELECT ?c ?e WHERE {{ ?c a cmp:EvidenceClaim ; cmp:estimate ?e }} ORDER BY ?c", "*/*"),
    (f"{P} ASK {{ ?c cmp:ciLower ?l FILTER(?l < 0) }}", "application/sparql-results+xml"),
    (f"{P} CONSTRUCT {{ ?s rdfs:label ?l }} WHERE {{ ?s rdfs:label ?l }}", "text/turtle"),
    ("DESCRIBE <https://w3id.org/cmpkg/source/busch-2007>", "application/n-triples"),
    (f"{P} SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}", "text/csv"),
]
RUNAWAYS = [
    # time: a cartesian product far past the 2 s deadline
    "SELECT (COUNT(*) AS ?n) WHERE { GRAPH <urn:test:filler> "
    "{ ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o } }",
    # memory: sorting 60^4 rows needs far more than the worker's cap
    "SELECT ?a ?f WHERE { GRAPH <urn:test:filler> "
    "{ ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l } } ORDER BY ?f ?a LIMIT 1",
]


class Soak:
    """The clients and the sampler of one soak run against one server."""

    def __init__(self, base: str, pid: int) -> None:
        self.base, self.pid = base, pid
        self.normal: list[int] = []
        self.runaway: list[int] = []
        self.main_rss: list[float] = []
        self.worker_rss: list[float] = []
        self.killed: list[int] = []
        self.stop_at = time.monotonic() + LOAD_SECONDS

    def client(self, k: int) -> None:
        i = 0
        while time.monotonic() < self.stop_at:
            query, accept = NORMAL[(i + k) % len(NORMAL)]
            url = f"{self.base}/sparql?" + urlencode({"query": f"{query} # {k}-{i}"})
            self.normal.append(http(url, headers={"Accept": accept})[0])
            i += 1

    def runaway_client(self, query: str) -> None:
        i = 0
        while time.monotonic() < self.stop_at:
            url = f"{self.base}/sparql?" + urlencode({"query": f"{query} # {i}"})
            self.runaway.append(http(url)[0])
            i += 1

    def sample(self) -> None:
        """Memory every half second; halfway through, one worker is killed from outside."""
        while time.monotonic() < self.stop_at:
            self.main_rss.append(rss_mb(self.pid))
            for pid in children(self.pid):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    self.worker_rss.append(rss_mb(pid))  # unless replaced meanwhile
            if not self.killed and time.monotonic() > self.stop_at - LOAD_SECONDS / 2:
                victim = max(children(self.pid), key=rss_mb)  # a live one
                os.kill(victim, signal.SIGKILL)
                self.killed.append(victim)
            time.sleep(0.5)

    def run(self) -> None:
        threads = [threading.Thread(target=self.client, args=(k,)) for k in range(3)]
        threads += [threading.Thread(target=self.runaway_client, args=(q,)) for q in RUNAWAYS]
        threads.append(threading.Thread(target=self.sample))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=LOAD_SECONDS + 30)


def test_soak_mixed_load_runaways_and_a_killed_worker(artifact: Path, tmp_path: Path):
    base, process = start_service(
        "--artifact", str(artifact), "--timeout", "2", "--workers", "3", "--row-cap", "1000",
        "--worker-memory-mb", str(WORKER_MEMORY_MB), log=tmp_path / "soak.log",
    )  # fmt: skip
    try:
        soak = Soak(base, process.pid)
        soak.run()
        assert len(soak.killed) == 1
        assert len(soak.normal) > 100, len(soak.normal)
        assert [s for s in soak.normal if s >= 500] == [], sorted(set(soak.normal))
        assert set(soak.normal) == {200}
        assert soak.runaway and set(soak.runaway) == {503}, sorted(set(soak.runaway))
        growth = max(soak.main_rss) - soak.main_rss[0]
        assert growth < 100, (soak.main_rss[0], max(soak.main_rss))
        assert max(soak.worker_rss) < WORKER_MEMORY_MB + 300, max(soak.worker_rss)
        assert process.poll() is None and http(base + "/healthz")[0] == 200
        assert soak.killed[0] not in children(process.pid)
        assert len([p for p in children(process.pid) if rss_mb(p) > 0]) == 3
    finally:
        stop(process)
