"""Where the build's SHACL stage spends its time, on a kept build (`build_scale.py --one N
--keep DIR`): the stage as the build runs it, then each part of it, with the slowest queries.

Not a test. CPU seconds are given beside wall seconds: on a shared machine they are what a quiet
one would take (the queries' CPU is summed over their threads, so with two threads the wall time
of the queries is less than their CPU).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/shacl_profile.py DIR [--threads 1] [--top 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pyoxigraph as ox

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.kb import shacl_sparql, validation  # noqa: E402
from service.kb.build import ARTIFACT_NAME, RULE_VOCABULARY, _without_records  # noqa: E402
from service.kb.reasoning import rule_files  # noqa: E402
from service.kb.sources import GRAPHS, load_triples  # noqa: E402

T = TypeVar("T")


def timed(label: str, work: Callable[[], T]) -> T:
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<34} {wall:7.2f} s wall {cpu:7.2f} s CPU")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a kept root: ROOT/build/cmpkg.nq is read")
    parser.add_argument("--threads", type=int, default=shacl_sparql.QUERY_THREADS)
    parser.add_argument("--top", type=int, default=15, help="the slowest queries shown")
    args = parser.parse_args()
    shacl_sparql.QUERY_THREADS = args.threads  # the stage below reads the module's default

    by_name = {graph: name for name, graph in GRAPHS.items()}
    graphs: dict[str, list[ox.Triple]] = {name: [] for name in GRAPHS}
    for quad in ox.parse(path=args.root / "build" / ARTIFACT_NAME, format=ox.RdfFormat.N_QUADS):
        graphs[by_name[quad.graph_name]].append(quad.triple)
    # The build's schema: the ontology and the rule vocabulary (of this checkout, as the rules).
    vocabulary = load_triples([p for p in rule_files(ROOT) if p.name == RULE_VOCABULARY])
    schema = graphs["ontology"] + vocabulary
    print({name: len(triples) for name, triples in graphs.items()}, f"load {os.getloadavg()}")

    kept = timed("records left out (build.py)", lambda: _without_records(
        graphs["asserted"], graphs["inferred"], graphs["shapes"]))  # fmt: skip
    data = graphs["asserted"] + kept
    report = timed("validate_graphs (the stage)", lambda: validation.validate_graphs(
        data=data, ontology=schema, shapes=graphs["shapes"], reasoner=False))  # fmt: skip
    print(f"  {len(report.findings)} findings, {report.count('Violation')} violations")

    validation._COMPILED.clear()
    _shapes, compiled = timed("  shapes compiled", lambda: validation._compiled_shapes(
        graphs["shapes"]))  # fmt: skip
    store = timed("  store loaded", lambda: validation._load_store([*schema, *data]))
    timed("  focus nodes recorded", lambda: shacl_sparql.record_targets(store, compiled, None))
    seconds: list[float] = []
    results = timed(f"  {len(compiled.checks)} queries, {args.threads} thread(s)", lambda:
        shacl_sparql.run_checks(store, compiled.checks, False, args.threads, seconds))  # fmt: skip
    print(f"  {len(results)} results; queries {sum(seconds):.2f} s CPU summed over threads")
    kinds: dict[str, list[float]] = {}
    for spent, check in zip(seconds, compiled.checks, strict=True):
        kinds.setdefault(check.kind, []).append(spent)
    print("  by kind: " + ", ".join(
        f"{kind} {len(s)} {sum(s):.2f} s" for kind, s in sorted(kinds.items())))  # fmt: skip
    slowest = sorted(zip(seconds, compiled.checks, strict=True), key=lambda x: -x[0])
    for spent, check in slowest[: args.top]:
        name = check.shape.rsplit("/", 1)[-1]
        print(f"    {spent:6.2f} s  {check.kind:<6} {name}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB, load {os.getloadavg()}")


if __name__ == "__main__":
    main()
