"""Where the time of one uncached query goes, and what the sandbox costs: `python
benchmarks/hot_path.py [--artifact FILE] [--http] [--memory]`.

1. In process, per named query (queries/*.rq with their defaults), each text made distinct so
   nothing is cached: the reader (service.store.query_check), Oxigraph's evaluation, the
   serialisation (service.store.results), and the whole worker round trip
   (EmbeddedStore.execute), whose remainder is the IPC + pickling overhead.
2. --http: the same distinct queries through `cmpkg serve --cache-mb 0` and straight to an
   in-memory Oxigraph server on the same artifact: single-client p50 and 16-client throughput.
3. --memory: 2,500 distinct 1 MB queries to `cmpkg serve`; the server's RSS before and after.
Every loop is bounded. Numbers go to stdout as Markdown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyoxigraph as ox  # noqa: E402
import run as bench  # noqa: E402
import servers  # noqa: E402

from service.kb.sources import load_dataset  # noqa: E402
from service.store.backends import Dataset, EmbeddedStore, QueryJob  # noqa: E402
from service.store.query_check import has_dataset  # noqa: E402
from service.store.results import encode_result  # noqa: E402

JSON = "application/sparql-results+json"
TURTLE = "text/turtle"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def in_process(artifact: Path, rounds: int) -> None:
    store = load_dataset(artifact)
    embedded = EmbeddedStore(store, "bench", workers=1)
    print("| query | screen | evaluate | serialise | worker round trip | IPC overhead |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = [0.0] * 5
    try:
        for name, text in bench.named_queries().items():
            stages: list[list[float]] = [[], [], [], []]
            for i in range(rounds):
                query = f"{text}\n# distinct {i}"
                t0 = time.perf_counter()
                has_dataset(query)  # what the worker reads before Oxigraph parses
                t1 = time.perf_counter()
                result = store.query(query, use_default_graph_as_union=True)
                graph = isinstance(result, ox.QueryTriples)
                media = TURTLE if graph else JSON
                rows = list(result) if not isinstance(result, ox.QueryBoolean) else result
                t2 = time.perf_counter()
                encode_result(store.query(query, use_default_graph_as_union=True), media, 10**6)
                t3 = time.perf_counter()
                job = QueryJob(query, None, Dataset(), JSON, 10**6, graph_media_type=TURTLE)
                embedded.execute(job, 30)
                t4 = time.perf_counter()
                del rows
                evaluate = t2 - t1
                stages[0].append(t1 - t0)
                stages[1].append(evaluate)
                stages[2].append(max(0.0, (t3 - t2) - evaluate))  # encode re-evaluates
                stages[3].append(t4 - t3)
            reader, evaluate, serialise, trip = (median_ms(s) for s in stages)
            ipc = max(0.0, trip - reader - evaluate - serialise)
            for k, v in enumerate((reader, evaluate, serialise, trip, ipc)):
                totals[k] += v
            print(
                f"| {name} | {reader:.2f} | {evaluate:.2f} | {serialise:.2f} | {trip:.2f} "
                f"| {ipc:.2f} |"
            )
        print("| **sum** | " + " | ".join(f"**{v:.1f}**" for v in totals) + " |")
    finally:
        embedded.close()


def _get(endpoint: str, query: str) -> float:
    started = time.perf_counter()
    url = f"{endpoint}?" + urlencode({"query": query})
    request = urllib.request.Request(url, headers={"Accept": f"{JSON}, {TURTLE};q=0.9"})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far: unlike wall time, not inflated by others'
    load on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def over_http(artifact: Path, requests: int) -> None:
    queries = list(bench.named_queries().values())
    ours = servers.cmpkg("cmpkg", "--artifact", str(artifact), "--cache-mb", "0")
    reference = servers.oxigraph("oxigraph (in memory)", "--union-default-graph")
    try:
        subprocess.run(
            [str(servers.BIN / "cmpkg"), "push", "--to", reference.base + "/store",
             "--artifact", str(artifact)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        print("\n| server | single-client p50 (ms) | CPU per request (ms): server, workers "
              "| 16 clients (req/s) |")  # fmt: skip
        print("|---|---:|---:|---:|")
        # Both answer over the union of the graphs as their default graph (no parameters).
        for server in (ours, reference):
            endpoint = server.endpoint  # type: ignore[attr-defined]
            pid = server.process.pid
            before = cpu_seconds(pid), sum(cpu_seconds(c) for c in children(pid))
            singles = [
                _get(endpoint, f"{q}\n# single {i}") for i in range(requests) for q in queries
            ]
            own = (cpu_seconds(pid) - before[0]) / len(singles) * 1000
            workers = (sum(cpu_seconds(c) for c in children(pid)) - before[1]) / len(singles) * 1000
            done: list[float] = []

            def client(k: int, endpoint: str = endpoint, done: list = done) -> None:
                for i in range(requests):
                    for q in queries:
                        done.append(_get(endpoint, f"{q}\n# many {k} {i}"))

            threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rate = len(done) / (time.perf_counter() - started)
            print(
                f"| {server.name} | {median_ms(singles):.2f} | {own:.2f}, {workers:.2f} "
                f"| {rate:.0f} |"
            )
    finally:
        ours.stop()
        reference.stop()


def memory(artifact: Path, count: int) -> None:
    server = servers.cmpkg("cmpkg", "--artifact", str(artifact), "--max-body", str(2 * 1024 * 1024))
    pid = server.process.pid

    def rss() -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    filler = "#" + "x" * (1024 * 1024 - 64) + "\n"
    endpoint = server.endpoint  # type: ignore[attr-defined]
    try:
        before = rss()
        started = time.perf_counter()
        for i in range(count):
            request = urllib.request.Request(
                endpoint,
                data=f"{filler}ASK {{ }} # {i}".encode(),
                headers={"Content-Type": "application/sparql-query"},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
        print(
            f"\n{count} distinct 1 MB queries in {time.perf_counter() - started:.0f} s: "
            f"server RSS {before:.0f} MB -> {rss():.0f} MB"
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", type=Path)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--count", type=int, default=2500)
    args = parser.parse_args()
    if args.artifact is not None:
        artifact = args.artifact
    else:
        from service.kb.build import ensure_artifact

        artifact = Path(ensure_artifact())
    in_process(artifact, args.rounds)
    if args.http:
        over_http(artifact, args.requests)
    if args.memory:
        memory(artifact, args.count)


if __name__ == "__main__":
    main()
