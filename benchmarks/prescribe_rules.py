"""CPU per prescription's rule run on the shipped build: every rule (the reference) against
only the rules the presentation can affect (derive's seeding, kb.at_fixpoint), median of N.

Not a test. Process CPU (time.process_time: the rule queries run on two threads), per
derive() on a fresh store and per whole prescribe(); the store copy is outside derive.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/prescribe_rules.py [--runs 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.prescribe.engine import derive, knowledge_base, prescribe  # noqa: E402
from service.prescribe.presentation import build_presentation  # noqa: E402

PRESENTATIONS: list[dict[str, Any]] = [
    {
        "conditions": ["fibromyalgia"],
        "goals": ["physical function"],
        "pathologies": [{"pathology": "kinesiophobia", "elevated": True}],
        "preferences": {"setting": "water", "supervision": "supervised"},
    },
    {"conditions": ["knee osteoarthritis"], "goals": ["function"]},
    {"conditions": ["rheumatoid arthritis"], "goals": ["fatigue", "pain"]},
    {
        "conditions": ["knee osteoarthritis", "fibromyalgia", "chronic low back pain"],
        "goals": ["pain", "function"],
        "pathologies": ["fear of movement", {"pathology": "catastrophizing", "elevated": True}],
        "preferences": {"setting": ["water", "land"], "modality": "yoga", "format": "group"},
    },
]


def derive_ms(pres: Any, kb: Any, runs: int) -> float:
    """Median CPU of derive() alone (each on a fresh store, made outside the timing)."""
    times = []
    for _ in range(runs):
        store = kb.store()
        started = time.process_time()
        derive(pres, kb, store)
        times.append(time.process_time() - started)
    return statistics.median(times) * 1000


def prescribe_ms(body: dict[str, Any], kb: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.process_time()
        prescribe(body, kb)
        times.append(time.process_time() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    seeded = knowledge_base()
    full = dataclasses.replace(seeded, at_fixpoint=False)
    print(f"premises at the rules' fixpoint: {seeded.at_fixpoint}; median of {args.runs}")
    print("| presentation | derive, all rules | seeded | prescribe, all rules | seeded |")
    print("|---|---|---|---|---|")
    for body in PRESENTATIONS:
        pres = build_presentation(body, seeded.resolver)
        cells = [derive_ms(pres, kb, args.runs) for kb in (full, seeded)]
        cells += [prescribe_ms(body, kb, args.runs) for kb in (full, seeded)]
        name = " + ".join(body["conditions"]) + " / " + " + ".join(body["goals"])
        print(f"| {name} | " + " | ".join(f"{c:.0f} ms" for c in cells) + " |")


if __name__ == "__main__":
    main()
