"""Time each domain rule on one root's knowledge files (the shipped repository, or a root kept
by `build_scale.py --one N --keep DIR`): OWL RL, then every rule, with new triples and seconds.

Not a test. The per-rule figures show which rule to rewrite when the rules stage is slow.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rules_profile.py [ROOT]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.kb.reasoning import (  # noqa: E402
    RULE_THREADS,
    is_provenance,
    load_rule_statements,
    load_rules,
    reason,
    rule_files,
)
from service.kb.sources import knowledge_files, load_triples  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=ROOT)
    parser.add_argument(
        "--logical", type=Path, help="write the sorted non-provenance inferred triples here"
    )
    parser.add_argument(
        "--threads", type=int, default=RULE_THREADS, help="rule queries run at once (1: serial)"
    )
    args = parser.parse_args()
    files = knowledge_files(args.root)
    # Rules always come from this checkout (a kept benchmark root holds no rules of its own).
    vocabulary = [p for p in rule_files(ROOT) if p.name == "rule-vocabulary.ttl"]
    schema = load_triples(files["ontology"] + vocabulary)
    asserted = load_triples(files["asserted"])
    rules = load_rules(load_rule_statements(ROOT))
    started, cpu = time.perf_counter(), time.process_time()
    result = reason(schema, asserted, rules, threads=args.threads)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    statements = sorted(f"{t} ." for t in result.inferred if not is_provenance(t))
    logical = len(statements)
    if args.logical:  # to compare two versions of the rules: the same conclusions, line by line
        args.logical.write_text("\n".join(statements) + "\n", encoding="utf-8")
    # CPU seconds as well: on a loaded machine they are what a quiet one would take as wall.
    print(
        f"{len(asserted)} asserted triples; reason() {wall:.2f} s wall, {cpu:.2f} s CPU; "
        f"{result.rounds} rounds"
    )
    print(f"timings: { {k: round(v, 2) for k, v in result.timings.items()} }")
    print(f"inferred {len(result.inferred)} triples, {logical} of them not provenance")
    for rule in sorted(result.rule_seconds, key=result.rule_seconds.get, reverse=True):  # type: ignore[arg-type]
        seconds, new = result.rule_seconds[rule], result.per_rule[rule]
        print(f"  {rule:<28} {seconds:8.2f} s CPU  {new:>8} new")


if __name__ == "__main__":
    main()
