"""The rules memo: a rebuild that replays the strata whose input is unchanged derives exactly
what a run of every rule does, and replays what it says it replays."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyoxigraph as ox
import pytest
from conftest import make_rule
from test_build import copy_knowledge, copy_with_build

from service.kb.build import CACHE_DIR, MANIFEST_NAME, build, read_manifest
from service.kb.reasoning import RULE_PREFIXES, load_rule_statements, load_rules, reason
from service.kb.rule_memo import PREFIX, RuleMemo
from service.kb.sources import knowledge_files, load_triples


def inputs(root: Path) -> tuple[list[ox.Triple], list[ox.Triple], list]:
    """Schema, asserted data and rules as the build reads them (parsed afresh: new blank
    node labels every time, as in a new build process)."""
    files = knowledge_files(root)
    vocabulary = [root / "ontology" / "rules" / "rule-vocabulary.ttl"]
    schema = load_triples(files["ontology"] + vocabulary)
    return schema, load_triples(files["asserted"]), load_rules(load_rule_statements(root))


def run(root: Path, memo_dir: Path | None) -> tuple[list[str], dict[str, int], RuleMemo | None]:
    """The sorted inferred statements and each rule's count; with `memo_dir`, the memo used
    (saved afterwards, as a build does once its artifact is in place)."""
    schema, asserted, rules = inputs(root)
    memo = RuleMemo(memo_dir) if memo_dir else None
    result = reason(schema, asserted, rules, memo=memo)
    if memo is not None:
        memo.save()
    return sorted(map(str, result.inferred)), result.per_rule, memo


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


ORDERS = {10, 15, 20, 21, 22, 23, 30, 40, 41}  # the shipped rules' strata

# Each edit, the strata the rebuild must replay and those it must run.
EDITS: dict[str, tuple[Callable[[Path], None], set[int], set[int]]] = {
    # No rule reads an estimate: every stratum's input is unchanged.
    "estimate": (
        lambda r: replace_in(r / "data/busch-2007.ttl", "cmp:estimate 0.66", "cmp:estimate 0.67"),
        ORDERS,
        set(),
    ),
    # A confidence limit the significance rule reads (and whose conclusion then changes):
    # every stratum that reads what it derives runs again.
    "significance": (
        lambda r: replace_in(r / "data/busch-2007.ttl", "cmp:ciLower 0.23", "cmp:ciLower -0.23"),
        set(),
        {10, 15, 20, 21, 22, 23},
    ),
    "source-removed": (lambda r: (r / "data/busch-2007.ttl").unlink(), set(), {10, 15, 23}),
    # A rule's text is part of its stratum's key; the strata before it read nothing it makes.
    "rule-text": (
        lambda r: replace_in(
            r / "ontology/rules/body-curation-status.ttl", "WHERE {", "WHERE { # edited\n"
        ),
        {10, 15, 20, 21, 22},
        {23},
    ),
}


@pytest.fixture(scope="module")
def cold(tmp_path_factory) -> tuple[Path, list[str]]:
    """A root whose memo holds every stratum of a first run on the shipped knowledge."""
    root = copy_knowledge(tmp_path_factory.mktemp("cold"))
    lines, _counts, memo = run(root, root / "memo")
    assert memo is not None and memo.reused == []  # nothing to replay the first time
    assert {p.name for p in (root / "memo").iterdir()} == {f"{PREFIX}{o}.memo" for o in ORDERS}
    return root, lines


@pytest.fixture
def copy(cold, tmp_path) -> Path:
    import shutil

    root = tmp_path / "kg"
    shutil.copytree(cold[0], root)
    return root


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_rebuild_with_the_memo_derives_what_every_rule_does(copy, cold, edit):
    change, replayed, ran = EDITS[edit]
    change(copy)
    lines, counts, memo = run(copy, copy / "memo")
    clean_lines, clean_counts, _ = run(copy, None)
    assert lines == clean_lines
    assert counts == clean_counts
    assert memo is not None
    assert replayed <= set(memo.reused), memo.reused
    assert not ran & set(memo.reused), memo.reused
    if edit == "significance":
        assert lines != cold[1]  # the edit did change a conclusion: the test proves something


def test_unchanged_input_replays_every_stratum_and_the_next_run_still_matches(copy, cold):
    _lines, _counts, memo = run(copy, copy / "memo")
    assert memo is not None and set(memo.reused) == ORDERS
    lines, _counts, again = run(copy, copy / "memo")  # entries written by no run are kept
    assert again is not None and set(again.reused) == ORDERS
    assert lines == cold[1]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:-5] + b"XXXXX",  # a payload byte changed
        lambda data: b"not a memo entry",
        lambda data: b"",
    ],
    ids=["truncated", "payload-changed", "garbage", "empty"],
)
def test_a_damaged_entry_is_not_used(copy, cold, damage):
    entry = copy / "memo" / f"{PREFIX}15.memo"
    entry.write_bytes(damage(entry.read_bytes()))
    lines, _counts, memo = run(copy, copy / "memo")
    assert memo is not None and 15 not in memo.reused
    assert lines == cold[1]
    assert (copy / "memo" / f"{PREFIX}15.memo").read_bytes() != b""  # rewritten whole


def test_an_entry_of_another_stratum_is_not_used(copy, cold):
    memo_dir = copy / "memo"
    (memo_dir / f"{PREFIX}15.memo").write_bytes((memo_dir / f"{PREFIX}20.memo").read_bytes())
    lines, _counts, memo = run(copy, memo_dir)
    assert memo is not None and 15 not in memo.reused
    assert lines == run(copy, None)[0]


def test_a_stratum_whose_written_lines_were_held_reruns_when_they_no_longer_are(tmp_path):
    """The rule's input (what it reads, ex:r) is unchanged, but the line it derives was held
    by the input (so its run added nothing) and no longer is: replaying the run would lose it."""
    rule = make_rule("w", "CONSTRUCT { ?x <urn:x:p> <urn:x:o> } WHERE { ?x <urn:x:r> ?y }")
    a, p, o, r = (ox.NamedNode(f"urn:x:{n}") for n in "apor")
    reads = ox.Triple(a, r, ox.Literal("1"))
    held = ox.Triple(a, p, o)

    def derived(asserted: list[ox.Triple]) -> tuple[set[str], list[int]]:
        memo = RuleMemo(tmp_path / "memo")
        result = reason([], asserted, [rule], owl_rl_engine="none", memo=memo)
        memo.save()
        logical = {str(t) for t in result.inferred if "derivation" not in str(t)}
        return logical, memo.reused

    assert derived([reads, held]) == (set(), [])  # the line is asserted: nothing new
    assert derived([reads]) == ({str(held)}, [])  # no longer asserted: derived, not replayed
    assert derived([reads]) == ({str(held)}, [10])  # and now the entry is this input's


def test_a_build_reports_the_strata_it_replayed_and_keeps_only_good_builds_entries(tmp_path):
    root = copy_with_build(tmp_path / "kg")  # the checkout's build, its cache beside it
    first = read_manifest(root / "build" / MANIFEST_NAME)
    kept = {p.name for p in (root / "build" / CACHE_DIR).glob(f"{PREFIX}*")}
    assert kept == {f"{PREFIX}{o}.memo" for o in ORDERS}
    replace_in(root / "data/busch-2007.ttl", "cmp:estimate 0.66", "cmp:estimate 0.67")
    second = build(root, root / "build")
    assert "rules" in second.reused
    assert second.rules == first["rules"]
    entries = {p.name: p.read_bytes() for p in (root / "build" / CACHE_DIR).glob(f"{PREFIX}*")}
    assert set(entries) == kept
    # A failing build (an estimate outside its CI fails SHACL) keeps the last good entries.
    replace_in(root / "data/busch-2007.ttl", "cmp:ciUpper 0.92", "cmp:ciUpper 0.50")
    with pytest.raises(Exception, match="estimate-inside-ci"):
        build(root, root / "build")
    after = {p.name: p.read_bytes() for p in (root / "build" / CACHE_DIR).glob(f"{PREFIX}*")}
    assert after == entries


def test_blank_nodes_named_afresh_by_each_parse_do_not_change_a_stratum_key(tmp_path, monkeypatch):
    """A rule reading every typing statement (a variable class) reads the blank nodes' too:
    their labels differ between parses, their canonical form does not."""
    rule = make_rule(
        "t", "CONSTRUCT { ?x <urn:x:typed> <urn:x:yes> } WHERE { ?x a ?c FILTER (isIRI(?x)) }"
    )
    rdf_type = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")

    def replayed() -> list[int]:
        memo = RuleMemo(tmp_path / "memo")
        asserted = [
            ox.Triple(ox.NamedNode("urn:x:a"), rdf_type, ox.NamedNode("urn:x:C")),
            ox.Triple(ox.BlankNode(), rdf_type, ox.NamedNode("urn:x:D")),  # a fresh label
        ]
        reason([], asserted, [rule], owl_rl_engine="none", memo=memo)
        memo.save()
        return memo.reused

    assert replayed() == []
    assert replayed() == [10]
    # Past the limit of blank lines the memo is off: every stratum runs, none is kept.
    monkeypatch.setattr("service.kb.rule_memo.BLANK_LIMIT", 0)
    memo = RuleMemo(tmp_path / "off")
    reason([], [ox.Triple(ox.BlankNode(), rdf_type, ox.NamedNode("urn:x:D"))], [rule],
           owl_rl_engine="none", memo=memo)  # fmt: skip
    memo.save()
    assert memo.off is not None and memo.reused == [] and not (tmp_path / "off").exists()


def test_the_prefixes_the_rules_are_read_with_are_part_of_a_stratum_key(tmp_path, monkeypatch):
    # A rule may mint IRIs with a prefix no input line mentions (deriv:, rule:): a changed
    # namespace changes what it derives without changing anything it reads.
    rule = make_rule("q", "CONSTRUCT { ?x <urn:x:p> <urn:x:o> } WHERE { ?x <urn:x:r> ?y }")
    asserted = [ox.Triple(ox.NamedNode("urn:x:a"), ox.NamedNode("urn:x:r"), ox.Literal("1"))]

    def replayed() -> list[int]:
        memo = RuleMemo(tmp_path / "memo")
        reason([], asserted, [rule], owl_rl_engine="none", memo=memo)
        memo.save()
        return memo.reused

    assert replayed() == []
    assert replayed() == [10]
    changed = {**RULE_PREFIXES, "deriv": "urn:another-derivation-namespace/"}
    monkeypatch.setattr("service.kb.reasoning.RULE_PREFIXES", changed)
    assert replayed() == []
