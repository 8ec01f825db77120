"""The one-claim rebuild: SHACL checks only what changed since the served artifact, and the
result is a clean build's, byte for byte and finding for finding; anything the scoped path
cannot vouch for (a damaged or stale kept report, a schema edit) checks everything."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from test_build import copy_knowledge, copy_with_build

from service.kb.build import ARTIFACT_NAME, CACHE_DIR, BuildFailed, Manifest, build
from service.kb.rebuild import SHACL_REPORT, sorted_line_diff

CLAIM = "claim/busch-2007-aerobic-physical-function"
FIGURE, EDITED = "cmp:ciUpper 0.92", "cmp:ciUpper 0.93"


def edit_claim(root: Path, old: str = FIGURE, new: str = EDITED) -> None:
    busch = root / "data" / "busch-2007.ttl"
    text = busch.read_text()
    assert old in text
    busch.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """The shipped knowledge files with their last good build (and its kept report): the
    session's build of the same files by the same code, copied with its cache, which is the
    build these files would get (test_build_twice_gives_identical_bytes)."""
    root = copy_with_build(tmp_path_factory.mktemp("served"))
    assert (root / "build" / CACHE_DIR / SHACL_REPORT).is_file()
    return root


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, Manifest]:
    """A build of the edited inputs from nothing: what every rebuild must give."""
    root = copy_knowledge(tmp_path_factory.mktemp("clean"))
    edit_claim(root)
    return root / "build", build(root, root / "build")


@pytest.fixture
def copy(served, tmp_path) -> Path:
    root = tmp_path / "kg"
    shutil.copytree(served, root)
    return root


def kept_report(build_dir: Path) -> dict:
    return json.loads((build_dir / CACHE_DIR / SHACL_REPORT).read_text())


def assert_same_as_clean(build_dir: Path, manifest: Manifest, clean) -> None:
    clean_dir, clean_manifest = clean
    assert (build_dir / ARTIFACT_NAME).read_bytes() == (clean_dir / ARTIFACT_NAME).read_bytes()
    assert manifest.shacl_findings == clean_manifest.shacl_findings
    # The kept report is the whole graph's, the one the next rebuild carries findings from.
    assert kept_report(build_dir) == kept_report(clean_dir)


def test_one_claim_rebuild_checks_only_what_changed_and_equals_a_clean_build(copy, clean):
    out = copy / "build"
    before = kept_report(out)
    assert before["findings"], "no finding to carry over: the test would prove less"
    edit_claim(copy)
    again = build(copy, out)
    assert "shacl" in again.reused and "hermit" in again.reused
    assert clean[1].reused == []
    assert_same_as_clean(out, again, clean)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_text('{"artifact": "'),  # truncated
        lambda path: path.unlink(),
        # the report of another artifact (a build that died before saving its own)
        lambda path: path.write_text(
            json.dumps({**json.loads(path.read_text()), "artifact": "0" * 64})
        ),
    ],
    ids=["truncated", "missing", "of-another-artifact"],
)
def test_a_damaged_or_stale_kept_report_checks_everything(copy, clean, damage):
    out = copy / "build"
    damage(out / CACHE_DIR / SHACL_REPORT)
    edit_claim(copy)
    again = build(copy, out)
    assert "shacl" not in again.reused
    assert_same_as_clean(out, again, clean)


def test_a_violation_in_the_scoped_check_fails_and_keeps_the_served_build(copy):
    out = copy / "build"
    artifact, report = (out / ARTIFACT_NAME).read_bytes(), kept_report(out)
    # The estimate 0.66 then lies above its CI (0.41 to 0.50): only the edited claim breaks.
    edit_claim(copy, FIGURE, "cmp:ciUpper 0.50")
    with pytest.raises(BuildFailed) as failed:
        build(copy, out)
    assert failed.value.stage == "shacl"
    assert "busch-2007-aerobic-physical-function" in failed.value.report
    assert "estimate-inside-ci" in failed.value.report
    assert (out / ARTIFACT_NAME).read_bytes() == artifact
    assert kept_report(out) == report  # still the served artifact's report


def test_a_schema_edit_checks_everything(copy):
    out = copy / "build"
    ontology = sorted((copy / "ontology").glob("*.ttl"))[0]
    ontology.write_text(
        ontology.read_text() + "\n<https://w3id.org/cmpkg/vocab/estimate> "
        '<http://www.w3.org/2000/01/rdf-schema#comment> "an edited comment"@en .\n'
    )
    again = build(copy, out)
    assert "shacl" not in again.reused


def test_sorted_line_diff_is_the_symmetric_difference():
    rng = random.Random(15)
    for _ in range(2000):
        # Lines that are prefixes of others, runs longer than the first memcmp step.
        pool = [f"l{rng.randint(0, 80)}{'x' * rng.randint(0, 3000)}".encode() for _ in range(40)]
        old = sorted(set(rng.sample(pool, rng.randint(0, 40))))
        new = sorted(set(rng.sample(pool, rng.randint(0, 40))))
        diff = sorted_line_diff(b"".join(x + b"\n" for x in old),
                                b"".join(x + b"\n" for x in new), 10**6)  # fmt: skip
        assert diff is not None and sorted(diff) == sorted(set(old) ^ set(new))
    assert sorted_line_diff(b"a\nb\nc\n", b"x\ny\nz\n", 5) is None  # past the limit
