"""How the build scales: synthetic evidence graphs of ~100k and ~1M triples, time per stage.

Not a test. Each size runs in its own process (so peak memory is that build's), on a temporary
root holding the shipped ontology, shapes and rules plus one synthetic data file of evidence
claims over the real condition, modality, outcome, measure and certainty terms. The figures are
random and the sources are labelled synthetic: nothing here is clinical data.

    .venv/bin/python benchmarks/build_scale.py                  # 100k and 1M triples
    .venv/bin/python benchmarks/build_scale.py --sizes 1000000 --skip owl_rl hermit shacl
    .venv/bin/python benchmarks/build_scale.py --sizes 100000 --rebuild   # + one-claim edit

Each stage is printed with its time and its peak resident memory (MiB, this process).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.kb.build import STAGES, BuildFailed, build  # noqa: E402
from service.kb.sources import PREFIXES, knowledge_files, load_triples  # noqa: E402

TRIPLES_PER_CLAIM = 16  # what synthesise() writes per claim, including its source


def terms(kind: str) -> list[str]:
    """The shipped individuals (or punned classes) typed with a schema class."""
    triples = load_triples(knowledge_files(ROOT)["ontology"])
    cls = PREFIXES["cmp"] + kind
    return sorted(
        {
            t.subject.value
            for t in triples
            if t.predicate.value == PREFIXES["rdf"] + "type"
            and t.object == ox.NamedNode(cls)
            and isinstance(t.subject, ox.NamedNode)
        }
    )


def synthesise(n_triples: int, path: Path, seed: int = 7) -> int:
    """Write about n_triples of synthetic claims as N-Triples (valid Turtle); returns claims."""
    rng = random.Random(seed)
    pools = {
        k: terms(k)
        for k in ("Condition", "ExerciseModality", "Outcome", "Comparator", "CertaintyLevel")
    }
    measures = [PREFIXES["measure"] + m for m in ("smd", "md", "points-improvement")]
    confirmed = PREFIXES["status"] + "confirmed"
    cmp, xsd = PREFIXES["cmp"], PREFIXES["xsd"]
    n_claims = max(1, n_triples // TRIPLES_PER_CLAIM)
    with path.open("w", encoding="utf-8") as out:

        def w(s: str, p: str, o: str) -> None:
            out.write(f"<{s}> <{p}> {o} .\n")

        for i in range(n_claims):
            claim = f"{PREFIXES['claim']}synthetic-{i}"
            source = f"{PREFIXES['src']}synthetic-{i}"
            est = round(rng.uniform(-1, 1), 2)
            half = round(rng.uniform(0.05, 0.6), 2)
            w(source, PREFIXES["rdf"] + "type", f"<{cmp}SystematicReview>")
            w(source, PREFIXES["rdfs"] + "label", f'"synthetic source {i}"')
            w(source, cmp + "year", f'"2020"^^<{xsd}integer>')
            w(claim, PREFIXES["rdf"] + "type", f"<{cmp}EvidenceClaim>")
            w(claim, PREFIXES["rdfs"] + "label", f'"synthetic claim {i}"@en')
            w(claim, cmp + "intervention", f"<{rng.choice(pools['ExerciseModality'])}>")
            w(claim, cmp + "comparator", f"<{rng.choice(pools['Comparator'])}>")
            w(claim, cmp + "condition", f"<{rng.choice(pools['Condition'])}>")
            w(claim, cmp + "outcome", f"<{rng.choice(pools['Outcome'])}>")
            w(claim, cmp + "effectMeasure", f"<{rng.choice(measures)}>")
            w(claim, cmp + "estimate", f'"{est}"^^<{xsd}decimal>')
            w(claim, cmp + "ciLower", f'"{round(est - half, 2)}"^^<{xsd}decimal>')
            w(claim, cmp + "ciUpper", f'"{round(est + half, 2)}"^^<{xsd}decimal>')
            w(claim, cmp + "higherIsBetter", f'"{str(rng.random() < 0.5).lower()}"^^<{xsd}boolean>')
            w(claim, cmp + "numberOfParticipants", f'"{rng.randint(20, 3000)}"^^<{xsd}integer>')
            w(claim, cmp + "certainty", f"<{rng.choice(pools['CertaintyLevel'])}>")
            w(claim, cmp + "source", f"<{source}>")
            w(claim, cmp + "curationStatus", f"<{confirmed}>")
    return n_claims


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it (Linux: each task's `children`)."""
    found, i = [pid], 0
    while i < len(found):
        for task in Path(f"/proc/{found[i]}/task").glob("*"):
            with contextlib.suppress(OSError):  # gone meanwhile
                found += [int(c) for c in (task / "children").read_text().split()]
        i += 1
    return found


def _resident_mib(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * resource.getpagesize() / 2**20


class TreeMemory:
    """The largest sum of resident memory of this process and all its children (HermiT's
    Python child, its JVM), sampled every SAMPLE_S on a thread while a build runs.

    What the machine must hold at once: the per-stage peaks are each one process's, and the
    children's own ru_maxrss is no guide (a child forked from this process starts at this
    process's size before it execs). statm is read rather than smaps_rollup's PSS: at a
    million triples one PSS read walked 4 GiB of pages (56 ms) and slowed the build it
    measured. Summing resident sets counts shared library pages once per process (tens of
    MiB): a slight overestimate, never an underestimate beyond what falls between samples."""

    SAMPLE_S = 0.1

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            total = sum(_resident_mib(pid) for pid in _tree(me))
            self.peak_mib = max(self.peak_mib, total)
            self._stop.wait(self.SAMPLE_S)


def _cpu_seconds() -> tuple[float, float]:
    """User + system CPU time of this process and of its finished children (the JVM)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


EDITS = ("estimate", "significance")


def edit_one_claim(data: Path, kind: str) -> None:
    """`estimate`: the first claim's estimate moves by 0.001 (inside its CI). `significance`:
    the first claim whose CI lies above zero gets a lower limit of -1.5 (its estimate is still
    inside): not significant any more. Both leave a valid claim."""
    text = data.read_text(encoding="utf-8")
    if kind == "estimate":
        first = text.index("/vocab/estimate>")
    else:
        first = next(
            i
            for i in _positions(text, "/vocab/ciLower>")
            if float(text[i : text.index("\n", i)].split('"')[1]) > 0
        )
    line_end = text.index("\n", first)
    line = text[first:line_end]
    value = line.split('"')[1]
    new = f"{float(value) + 0.001:.3f}" if kind == "estimate" else "-1.5"
    data.write_text(text[:first] + line.replace(f'"{value}"', f'"{new}"') + text[line_end:],
                    encoding="utf-8")  # fmt: skip


def _positions(text: str, needle: str) -> Iterator[int]:
    at = text.find(needle)
    while at >= 0:
        yield at
        at = text.find(needle, at + 1)


def run_one(size: int, skip: list[str], keep: Path | None = None, edit: bool = False) -> dict:
    """Build `size` synthetic triples; with `keep`, the root (and its artifact) stays there;
    with `edit`, one claim's figure is then changed and the build run again (the curator's
    one-claim rebuild)."""
    with tempfile.TemporaryDirectory(prefix="cmpkg-bench-") as tmp:
        root = Path(keep) if keep else Path(tmp)
        for folder in ("ontology", "shapes"):
            shutil.copytree(ROOT / folder, root / folder, dirs_exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        started = time.perf_counter()
        claims = synthesise(size, root / "data" / "synthetic.ttl")
        generate = time.perf_counter() - started
        outcome: dict = {}
        try:
            started, cpu = time.perf_counter(), _cpu_seconds()
            with TreeMemory() as tree:
                manifest = build(root, root / "build", progress=True, skip=skip)
            outcome = {
                "timings": manifest.timings,
                "peaks": manifest.peak_rss_mib,
                "triples": manifest.triples,
                "full_input": manifest.full_input,
                "wall_s": round(time.perf_counter() - started, 2),
                "tree_peak_mib": round(tree.peak_mib),
                # CPU seconds (this process; HermiT's JVM apart) depend far less than wall
                # time on what else the machine runs: compare these across loaded runs.
                "cpu_s": [round(a - b, 2) for a, b in zip(_cpu_seconds(), cpu, strict=True)],
            }
            if edit:
                # Two curator's edits, one after the other: first one claim's estimate (read
                # by no rule: every rules stratum can be replayed), then another claim's CI
                # widened across the null (its significance, and so every body rule's input,
                # changes).
                for kind in EDITS:
                    edit_one_claim(root / "data" / "synthetic.ttl", kind)
                    started, cpu = time.perf_counter(), _cpu_seconds()
                    with TreeMemory() as tree:
                        again = build(root, root / "build", progress=False, skip=skip)
                    suffix = "" if kind == "estimate" else f"_{kind}"
                    outcome[f"rebuild{suffix}_tree_peak_mib"] = round(tree.peak_mib)
                    outcome[f"rebuild{suffix}_s"] = round(time.perf_counter() - started, 2)
                    outcome[f"rebuild{suffix}_cpu_s"] = [
                        round(a - b, 2) for a, b in zip(_cpu_seconds(), cpu, strict=True)
                    ]
                    outcome[f"rebuild{suffix}_timings"] = again.timings
                    outcome[f"rebuild{suffix}_reused"] = again.reused
        except BuildFailed as err:
            outcome = {"failed_at": err.stage, "report": err.report[:2000]}
        return {
            "size": size,
            "claims": claims,
            "generate_s": round(generate, 2),
            "skipped": skip,
            "root": str(root),
            **outcome,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--skip", nargs="*", default=[], choices=["owl_rl", "hermit", "shacl"])
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="then change one claim's figure and build again (the curator's one-claim rebuild)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--edit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.skip, args.keep, args.edit or args.rebuild)))
        return
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(size), "--skip", *args.skip]
        cmd += ["--edit"] if args.rebuild else []
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sys.stderr.write(done.stderr)
        if done.returncode != 0 or not done.stdout.strip():
            print(f"{size:>9} triples: benchmark process failed (exit {done.returncode})")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        head = f"{size:>9} triples ({r['claims']} claims)"
        if "failed_at" in r:
            print(f"{head}: build failed at {r['failed_at']}: {r['report'][:300]}")
            continue
        stages = "  ".join(
            f"{s} {r['timings'][s]:.1f}s ({r['peaks'].get(s, 0):.0f} MiB)"
            if s not in r["skipped"]
            else f"{s} skipped"
            for s in STAGES
        )
        total = sum(r["timings"].values())
        print(
            f"{head}: stages {total:.1f}s (wall {r['wall_s']:.1f}s: HermiT runs beside the "
            f"write and SHACL)  {stages}  "
            f"peak RSS {max(r['peaks'].values()):.0f} MiB (this process, largest "
            f"stage), whole process tree {r['tree_peak_mib']} MiB  "
            f"inferred {r['triples']['inferred']}  CPU {r['cpu_s'][0]:.1f}s "
            f"(+ JVM {r['cpu_s'][1]:.1f}s)"
        )
        if "rebuild_s" in r:
            again = "  ".join(f"{s} {r['rebuild_timings'][s]:.1f}s" for s in STAGES)
            reused = ", ".join(r["rebuild_reused"]) or "nothing"
            cpu = r["rebuild_cpu_s"]
            print(
                f"{'':>9} one-claim rebuild: {r['rebuild_s']:.1f}s  {again}  reused {reused}  "
                f"CPU {cpu[0]:.1f}s (+ JVM {cpu[1]:.1f}s)"
            )


if __name__ == "__main__":
    main()
