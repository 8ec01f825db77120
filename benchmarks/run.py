"""Build and query benchmarks in one command: `make bench` (= `python benchmarks/run.py`).

For each size (synthetic claims over the real terms, as benchmarks/build_scale.py writes them;
`shipped` is the real knowledge graph) and in one run:
  1. the build, in its own process: time and peak memory per stage, then a one-claim edit and
     the rebuild it needs;
  2. single-client latency of every named query (queries/*.rq, grlc defaults bound) on
     cmpkg serve uncached and cached, and on an in-memory Oxigraph server (the `oxigraph`
     package) holding the same artifact, with the ratio to Oxigraph;
  3. throughput and p50/p99 at 1, 4, 16 and 64 concurrent clients cycling those queries
     against the same three servers.
Not a test: every loop is bounded, every server is started here on loopback and stopped.

    .venv/bin/python benchmarks/run.py                       # 10k, 100k, 1M
    .venv/bin/python benchmarks/run.py --sizes 10k --quick   # a quick run
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import re
import shutil
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

STAGES = ("load", "owl_rl", "rules", "hermit", "shacl", "write")
SAMPLE_VALUES = {"text": '"pain"'}  # required parameters without a default in their file
PARAMETER = re.compile(r"[?$](_{1,2}([A-Za-z][A-Za-z0-9]*)(?:_(iri|integer|decimal|boolean))?)\b")
SLOW_MS = 1000.0  # a query slower than this single-client is left out of the load test


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


def named_queries() -> dict[str, str]:
    return {
        p.stem: bind_defaults(p.read_text(encoding="utf-8"))
        for p in sorted((ROOT / "queries").glob("*.rq"))
    }


def accept_for(query: str) -> str:
    body = re.sub(r"(?im)^\s*(#.*|PREFIX\s+\S*\s*<[^>]*>|BASE\s*<[^>]*>)\s*$", "", query)
    graph = re.match(r"\s*(CONSTRUCT|DESCRIBE)\b", body, re.IGNORECASE) is not None
    return "application/n-triples" if graph else "application/sparql-results+json"


class Client:
    """One keep-alive connection, like a real client library."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        parts = urlsplit(endpoint)
        self.path = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def ask(self, query: str, extra: dict) -> float:
        """Milliseconds for one answer; raises on anything but 200."""
        body = urlencode({"query": query, **extra}, doseq=True)
        started = time.perf_counter()
        self.conn.request("POST", self.path, body, {
            "Content-Type": "application/x-www-form-urlencoded", "Accept": accept_for(query),
        })  # fmt: skip
        response = self.conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return elapsed


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def latency(
    setups: list[tuple[str, str, dict]], queries: dict[str, str], requests: int, timeout: float
) -> dict[str, dict[str, float | None]]:
    """Median ms per query and server (None when it failed), after warm-up (which fills a
    cache). The servers are asked in turn, request by request, so that a change in the
    machine's load (it is shared) falls on all of them alike and the ratios stay fair."""
    clients = {name: Client(endpoint, timeout) for name, endpoint, _ in setups}
    out: dict[str, dict[str, float | None]] = {name: {} for name, _, _ in setups}
    for query_name, query in queries.items():
        samples: dict[str, list[float]] = {}
        first = 1.0
        for name, endpoint, extra in setups:
            try:
                first = max(first, clients[name].ask(query, extra))
                clients[name].ask(query, extra)
                samples[name] = []
            except (RuntimeError, OSError, http.client.HTTPException) as err:
                print(f"  {name} {query_name}: failed ({err})", file=sys.stderr)
                clients[name] = Client(endpoint, timeout)
        n = max(3, min(requests, int(5000 / first)))  # ~5 s per query and server at most
        for _ in range(n):
            for name, endpoint, extra in setups:
                if name not in samples:
                    continue
                try:
                    samples[name].append(clients[name].ask(query, extra))
                except (RuntimeError, OSError, http.client.HTTPException) as err:
                    print(f"  {name} {query_name}: failed ({err})", file=sys.stderr)
                    del samples[name]
                    clients[name] = Client(endpoint, timeout)
        for name, _, _ in setups:
            out[name][query_name] = percentile(samples[name], 50) if name in samples else None
    return out


def load(endpoint: str, queries: list[str], clients: int, per_client: int, extra: dict):
    """(req/s, p50 ms, p99 ms, failed) with `clients` keep-alive clients cycling the queries."""
    times: list[float] = []
    failed = [0]
    lock = threading.Lock()

    def work(offset: int) -> None:
        client = Client(endpoint, 60)
        mine = []
        for i in range(per_client):
            try:
                mine.append(client.ask(queries[(i + offset) % len(queries)], extra))
            except (RuntimeError, OSError, http.client.HTTPException):
                with lock:
                    failed[0] += 1
                client = Client(endpoint, 60)
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return clients * per_client / elapsed, percentile(times, 50), percentile(times, 99), failed[0]


def build_size(size: str, keep: Path) -> dict:
    """The build (and a one-claim rebuild) in a separate process, so its peak is its own."""
    if size == "shipped":
        shutil.copytree(ROOT / "ontology", keep / "ontology")
        shutil.copytree(ROOT / "shapes", keep / "shapes")
        shutil.copytree(ROOT / "data", keep / "data")
        code = (
            "import json,sys; sys.path.insert(0, sys.argv[2]); from build_scale import "
            "TreeMemory; from service.kb.build import build\n"
            "with TreeMemory() as tree: m = build(sys.argv[1], sys.argv[1] + '/build')\n"
            "print(json.dumps({'timings': m.timings, 'peaks': m.peak_rss_mib, "
            "'triples': m.triples, 'full_input': m.full_input, "
            "'tree_peak_mib': round(tree.peak_mib)}))"
        )
        cmd = [sys.executable, "-c", code, str(keep), str(ROOT / "benchmarks")]
    else:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "build_scale.py"), "--one",
               str(parse_size(size)), "--keep", str(keep), "--edit"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0 or not done.stdout.strip():
        return {"failed_at": "process", "report": done.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.setdefault("wall_s", round(wall, 2))
    return result


def parse_size(text: str) -> int:
    text = text.lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * factor)


def run_size(size: str, args: argparse.Namespace) -> dict:
    print(f"== {size}: building", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="cmpkg-bench-"))
    try:
        built = build_size(size, tmp)
        if "failed_at" in built:
            print(f"  build failed: {built.get('report', '')[:500]}", file=sys.stderr)
            return {"size": size, "build": built}
        artifact = tmp / "build" / "cmpkg.nq"
        return {"size": size, "build": built, **serve_and_measure(artifact, args)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def serve_and_measure(artifact: Path, args: argparse.Namespace) -> dict:
    queries = named_queries()
    started: list[servers.Server] = []
    flags = ["--workers", str(args.workers), "--timeout", str(args.timeout),
             "--artifact", str(artifact)]  # fmt: skip
    results: dict = {"quads": sum(1 for _ in artifact.open("rb"))}
    try:
        uncached = servers.cmpkg("cmpkg uncached", "--cache-mb", "0", *flags)
        started.append(uncached)
        cached = servers.cmpkg("cmpkg cached", *flags)
        started.append(cached)
        # Its default graph is the union of the named graphs, as cmpkg's is: both evaluate the
        # same thing with no dataset parameters (five default-graph-uri parameters instead
        # make Oxigraph build a dataset view per query, far slower on the heavy queries).
        oxigraph = servers.oxigraph("Oxigraph server", "--union-default-graph")
        started.append(oxigraph)
        subprocess.run(
            [str(servers.BIN / "cmpkg"), "push", "--to", oxigraph.base + "/store",
             "--artifact", str(artifact)],
            check=True, capture_output=True,
        )  # fmt: skip
        setups: list[tuple[servers.Server, dict]] = [(uncached, {}), (cached, {}), (oxigraph, {})]
        print("  single-client latency", file=sys.stderr)
        results["latency"] = latency(
            [(s.name, s.endpoint, extra) for s, extra in setups],  # type: ignore[attr-defined]
            queries,
            args.requests,
            args.timeout + 5,
        )
        reference = results["latency"]["Oxigraph server"]
        fast = [n for n in queries if (reference.get(n) or math.inf) < SLOW_MS]
        results["load_queries"] = fast
        results["load"] = {}
        for s, extra in setups:
            for clients in args.clients:
                print(f"  {s.name}: {clients} clients", file=sys.stderr)
                per_client = max(5, args.load_requests // clients)
                results["load"][f"{s.name}|{clients}"] = load(
                    s.endpoint, [queries[n] for n in fast], clients, per_client, extra
                )
        results["ready_s"] = {s.name: round(s.startup, 2) for s, _ in setups}
    finally:
        for server in started:
            server.stop()
    return results


# --- report ------------------------------------------------------------------------------------
def _geomean(values: list[float]) -> float:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan


def render(runs: list[dict], args: argparse.Namespace) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = _memory_gib()
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
        f"{cpus} CPUs, {memory} GiB RAM, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}; `benchmarks/run.py --sizes {' '.join(args.sizes)}`. "
        f"Load average at start: {args.load_at_start:.1f} (a shared machine: read the numbers "
        "as orders of magnitude).",
        "",
        "### Build (time in s, peak RSS of the build process in MiB, per stage)",
        "",
        "`whole tree`: the largest sum of resident memory of the build process and its "
        "children (HermiT's Python child and its JVM), sampled every 0.1 s.",
        "",
        "Rebuilds, one claim edited after the build: its estimate (which no rule reads: the "
        "rules are replayed from the build's memo), then another claim's CI widened across "
        "the null (its significance changes, so every body-of-evidence rule runs again).",
        "",
        "| triples | " + " | ".join(STAGES) + " | stages | wall | peak RSS | whole tree "
        "| inferred | rebuild: estimate edit | rebuild: CI edit |",
        "|---|" + "---:|" * (len(STAGES) + 7),
    ]
    for run in runs:
        b = run["build"]
        if "failed_at" in b:
            lines.append(f"| {run['size']} | build failed at {b['failed_at']} |")
            continue
        cells = [f"{b['timings'].get(s, 0):.1f} / {b['peaks'].get(s, 0):.0f}" for s in STAGES]
        peak = max(b["peaks"].values() or [0])
        lines.append(
            # HermiT runs beside the write and SHACL: the stages add up to more than the wall.
            f"| {run['size']} | " + " | ".join(cells) + f" | {sum(b['timings'].values()):.1f} | "
            f"{b.get('wall_s', 0):.1f} | {peak:.0f} | {b.get('tree_peak_mib', '-')} | "
            f"{b['triples']['inferred']:,} | "
            f"{b.get('rebuild_s', '-')} | {b.get('rebuild_significance_s', '-')} |"
        )
    for run in runs:
        if "latency" not in run:
            continue
        lat = run["latency"]
        names = list(lat["Oxigraph server"])
        lines += [
            "",
            f"### Named queries at {run['size']} ({run['quads']:,} quads): single client, "
            "median ms",
            "",
            "| query | cmpkg uncached | cmpkg cached | Oxigraph server | uncached / Oxigraph "
            "| cached / Oxigraph |",
            "|---|---:|---:|---:|---:|---:|",
        ]

        def cell(v: float | None) -> str:
            return "failed" if v is None else f"{v:.2f}"

        def ratio(a: float | None, b: float | None) -> str:
            return "-" if not a or not b else f"{a / b:.2f}"

        for n in names:
            u, c, o = lat["cmpkg uncached"][n], lat["cmpkg cached"][n], lat["Oxigraph server"][n]
            lines.append(f"| {n} | {cell(u)} | {cell(c)} | {cell(o)} | {ratio(u, o)} | "
                         f"{ratio(c, o)} |")  # fmt: skip
        g = {k: _geomean([v for v in lat[k].values() if v]) for k in lat}
        lines.append(
            f"| **geometric mean** | {g['cmpkg uncached']:.2f} | {g['cmpkg cached']:.2f} | "
            f"{g['Oxigraph server']:.2f} | {g['cmpkg uncached'] / g['Oxigraph server']:.2f} | "
            f"{g['cmpkg cached'] / g['Oxigraph server']:.2f} |"
        )
        over = [n for n in names if (lat["cmpkg uncached"][n] or math.inf) > 1000]
        lines.append("")
        lines.append("Over 1 s uncached: " + (", ".join(over) if over else "none") + ".")
        left_out = [n for n in names if n not in run["load_queries"]]
        lines += [
            "",
            f"### Load at {run['size']}: clients cycling {len(run['load_queries'])} named "
            "queries"
            + (f" (left out, over 1 s on Oxigraph: {', '.join(left_out)})" if left_out else ""),
            "",
            "| setup | clients | req/s | p50 ms | p99 ms | failed |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for key, (rps, p50, p99, failed) in run["load"].items():
            name, clients = key.split("|")
            lines.append(f"| {name} | {clients} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {failed} |")
    return "\n".join(lines) + "\n"


def _memory_gib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024)
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=["10k", "100k", "1m"],
        help="triples per synthetic build (10k, 100k, 1m ...) or `shipped`",
    )  # fmt: skip
    parser.add_argument("--requests", type=int, default=30, help="timed requests per query")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--load-requests", type=int, default=400,
                        help="requests per load level, shared among the clients")  # fmt: skip
    # As many evaluations at once as the 16-client level sends, as Oxigraph's server runs
    # them (a thread per request): with 2 workers a small query waits behind two heavy ones
    # and the p50 measures the queue, not the service. The workers share the store's pages.
    parser.add_argument("--workers", type=int, default=16, help="cmpkg query workers")
    parser.add_argument("--timeout", type=int, default=30, help="cmpkg query timeout (s)")
    parser.add_argument("--ports", help="loopback port range for the servers, e.g. 18500-18599")
    parser.add_argument("--quick", action="store_true", help="few requests, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.md")
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()[0]  # the report is written at the end, under our load
    if args.quick:
        args.requests, args.load_requests = 5, 80
    if args.ports:
        low, high = (int(x) for x in args.ports.split("-"))
        servers.PORT_RANGE = range(low, high + 1)
    runs = [run_size(size, args) for size in args.sizes]
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2), encoding="utf-8")
    report = render(runs, args)
    args.out.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
