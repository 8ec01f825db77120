"""Latency and throughput of the SPARQL endpoint, in one command: `python benchmarks/run.py`.

Starts every server itself on loopback and compares, for the competency queries
(queries/*.rq, or a representative set while there are none):
  1. cmpkg serve, embedded store, answer cache disabled (uncached)
  2. cmpkg serve, embedded store, answer cache on (cached)
  3. cmpkg serve --store, answering through an Oxigraph server (remote)
  4. the same queries sent straight to that in-memory Oxigraph server (reference)
Every loop is bounded (--requests per query, --concurrency clients for throughput).
"""

from __future__ import annotations

import argparse
import http.client
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402

from service.kb.sources import GRAPHS, sparql_prefixes  # noqa: E402

REPRESENTATIVE = {
    "claims-by-condition": """SELECT ?claim ?cond ?outcome ?estimate ?lower ?upper ?certainty
      WHERE {
        ?claim a cmp:EvidenceClaim ; cmp:condition ?cond ; cmp:outcome ?outcome .
        OPTIONAL { ?claim cmp:estimate ?estimate ; cmp:ciLower ?lower ; cmp:ciUpper ?upper }
        OPTIONAL { ?claim cmp:certainty ?certainty }
        ?cond rdfs:subClassOf* cond:chronic-musculoskeletal-pain } ORDER BY ?claim""",
    "terms-per-class": """SELECT ?class (COUNT(DISTINCT ?t) AS ?n) WHERE {
        ?t a ?class . FILTER(STRSTARTS(STR(?class), STR(cmp:))) }
      GROUP BY ?class ORDER BY ?class""",
    "condition-hierarchy": """SELECT ?c ?label WHERE {
        ?c rdfs:subClassOf* cond:chronic-pain ; rdfs:label ?label .
        FILTER(LANG(?label) = "en") } ORDER BY ?label""",
    "any-unlabelled-term": """ASK { ?t a owl:Class . FILTER(isIRI(?t))
        FILTER NOT EXISTS { ?t rdfs:label ?l } }""",
    "modality-tree": """CONSTRUCT { ?m rdfs:subClassOf ?super ; rdfs:label ?l } WHERE {
        ?m rdfs:subClassOf+ mod:exercise ; rdfs:subClassOf ?super ; rdfs:label ?l }""",
    "describe-fibromyalgia": "DESCRIBE cond:fibromyalgia",
}


# Values for required parameters that have no default in their file.
SAMPLE_VALUES = {"text": '"pain"'}
PARAMETER = re.compile(r"[?$](_{1,2}([A-Za-z][A-Za-z0-9]*)(?:_(iri|integer|decimal|boolean))?)\b")


def bind_defaults(text: str) -> str:
    """The .rq file with its grlc defaults bound as a VALUES block at the start of WHERE.

    A plain SPARQL client cannot pass SEP-0007 substitutions; inline VALUES at the top of the
    group gives the same answers (filters in the group see the bound value).
    """
    from service.query.named import parse_decorators

    defaults: dict[str, str] = {}
    for item in parse_decorators(text).get("defaults") or []:
        if isinstance(item, dict):
            defaults.update({k: str(v) for k, v in item.items()})
    bindings = []
    for var, name, kind in dict.fromkeys(PARAMETER.findall(text)):
        if name in defaults:
            value = defaults[name]
            term = f"<{value}>" if kind == "iri" else f'"{value}"'
        elif var.startswith("__") or name not in SAMPLE_VALUES:
            continue  # optional: left unbound, as the API does
        else:
            term = SAMPLE_VALUES[name]
        bindings.append(f"VALUES ?{var} {{ {term} }}")
    if not bindings:
        return text
    where = re.search(r"\bWHERE\s*\{", text, re.IGNORECASE)
    if where is None:
        return text
    return text[: where.end()] + " " + " ".join(bindings) + text[where.end() :]


def competency_queries() -> dict[str, str]:
    files = sorted((ROOT / "queries").glob("*.rq"))
    if files:
        return {p.stem: bind_defaults(p.read_text(encoding="utf-8")) for p in files}
    return {name: sparql_prefixes() + q for name, q in REPRESENTATIVE.items()}


def accept_for(query: str) -> str:
    # The first keyword after the prologue decides the result kind.
    for line in query.splitlines():
        word = line.strip().split(" ")[0].upper()
        if word and not word.startswith("#") and word not in ("PREFIX", "BASE"):
            graph = word in ("CONSTRUCT", "DESCRIBE")
            break
    else:
        graph = False
    return "application/n-triples" if graph else "application/sparql-results+json"


def artifact_path(given: Path | None) -> Path:
    if given is not None:
        return given
    from service.kb.build import ensure_artifact  # builds the KG when no current artifact exists

    return Path(ensure_artifact())


class Client:
    """One keep-alive connection, like a real client library."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self.path = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def ask(self, query: str, accept: str, extra: dict) -> int:
        body = urlencode({"query": query, **extra}, doseq=True)
        self.conn.request("POST", self.path, body, {
            "Content-Type": "application/x-www-form-urlencoded", "Accept": accept,
        })  # fmt: skip
        response = self.conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status} from {self.path}")
        return response.status


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def latency(endpoint: str, queries: dict[str, str], requests: int, extra: dict):
    client = Client(endpoint)
    per_query: dict[str, list[float]] = {}
    for name, query in queries.items():
        accept = accept_for(query)
        for _ in range(3):  # warm-up (and, where enabled, fill the cache)
            client.ask(query, accept, extra)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            client.ask(query, accept, extra)
            times.append((time.perf_counter() - started) * 1000)
        per_query[name] = times
    return per_query


def throughput(
    endpoint: str, queries: dict[str, str], requests: int, clients: int, extra: dict
) -> tuple[float, int]:
    """Requests per second with `clients` concurrent keep-alive clients cycling the queries,
    and how many requests failed (e.g. 503 at the timeout); failures are counted, not hidden."""
    items = list(queries.values())
    failures: list[str] = []

    def work(offset: int) -> None:
        client = Client(endpoint)
        for i in range(requests):
            query = items[(i + offset) % len(items)]
            try:
                client.ask(query, accept_for(query), extra)
            except (RuntimeError, OSError, http.client.HTTPException) as err:
                failures.append(str(err))
                client = Client(endpoint)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return clients * requests / elapsed, len(failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="timed requests per query")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="cmpkg query workers")
    parser.add_argument("--artifact", type=Path, help="N-Quads/TriG to serve (default: the build)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.md")
    args = parser.parse_args()

    artifact = artifact_path(args.artifact)
    queries = competency_queries()
    started: list[servers.Server] = []
    try:
        workers = ["--workers", str(args.workers), "--artifact", str(artifact)]
        uncached = servers.cmpkg("cmpkg embedded, uncached", "--cache-mb", "0", *workers)
        cached = servers.cmpkg("cmpkg embedded, cached", *workers)
        started += [uncached, cached]
        with tempfile.TemporaryDirectory() as tmp:
            ox_server = servers.oxigraph("Oxigraph server (in memory), direct")
            started.append(ox_server)
            subprocess.run(
                [str(servers.BIN / "cmpkg"), "push", "--to", ox_server.base + "/store",
                 "--artifact", str(artifact)],
                check=True, capture_output=True, cwd=tmp,
            )  # fmt: skip
            remote = servers.cmpkg(
                "cmpkg --store (Oxigraph server), uncached",
                "--store", ox_server.endpoint, "--cache-mb", "0",
            )  # fmt: skip
            started.append(remote)
            # Straight to Oxigraph with the same dataset cmpkg uses: the union of our graphs.
            direct_extra = {"default-graph-uri": [g.value for g in GRAPHS.values()]}
            rows = []
            for server in (uncached, cached, remote, ox_server):
                extra = direct_extra if server is ox_server else {}
                per_query = latency(server.endpoint, queries, args.requests, extra)
                rps, failed = throughput(
                    server.endpoint, queries, args.requests, args.concurrency, extra
                )
                every = [t for times in per_query.values() for t in times]
                rows.append((server.name, server.startup, per_query, every, rps, failed))
                p50, p99 = percentile(every, 50), percentile(every, 99)
                print(f"{server.name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, {rps:.0f} req/s")
    finally:
        for server in started:
            server.stop()
    report = render(rows, queries, args, artifact)
    args.out.write_text(report, encoding="utf-8")
    print(report)


def render(rows, queries, args, artifact: Path) -> str:
    import platform

    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()} "
        f"({_cpus()} CPUs), Python {platform.python_version()}; {len(queries)} queries "
        f"({'queries/*.rq' if list((ROOT / 'queries').glob('*.rq')) else 'representative set'}), "
        f"{args.requests} timed requests each after 3 warm-up requests, one keep-alive client; "
        f"throughput with {args.concurrency} concurrent clients. Artifact: "
        f"{sum(1 for _ in artifact.open(encoding='utf-8'))} quads.",
        "",
        "| Setup | p50 (ms) | p99 (ms) | Throughput (req/s) | Failed | Ready in (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, startup, _, every, rps, failed in rows:
        lines.append(
            f"| {name} | {percentile(every, 50):.2f} | {percentile(every, 99):.2f} | "
            f"{rps:.0f} | {failed} | {startup:.2f} |"
        )
    lines += ["", "p50 per query (ms):", "",
              "| Query | " + " | ".join(r[0] for r in rows) + " |",
              "|---|" + "---:|" * len(rows)]  # fmt: skip
    for name in queries:
        cells = " | ".join(f"{percentile(r[2][name], 50):.2f}" for r in rows)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
