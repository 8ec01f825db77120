"""`cmpkg build` and `cmpkg explain` on the shipped knowledge graph (a copy of the repository's
ontology/, data/, shapes/ in a temporary root, built once for the module)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pyoxigraph as ox
import pytest
from click.testing import CliRunner

from service.cli import main
from service.kb.build import (
    ARTIFACT_NAME,
    CACHE_DIR,
    MANIFEST_NAME,
    STAGES,
    Manifest,
    build,
    current_artifact,
    ensure_artifact,
    read_manifest,
)
from service.kb.sources import GRAPHS, PREFIXES

ROOT = Path(__file__).resolve().parent.parent
NS = "https://w3id.org/cmpkg/"
# Issue 12: bodies of evidence replaced support statements (cmp:Support is gone).
BODY = "body:aerobic-exercise--physical-function--fibromyalgia"
BUSCH_CLAIM = "claim:busch-2007-aerobic-physical-function"
BUSCH_DOI = "10.1002/14651858.CD003786.pub2"
QUERY_PREFIXES = {**PREFIXES, "deriv": NS + "derivation/"}


def copy_knowledge(target: Path) -> Path:
    """The files a build reads, so a test can break them without touching the checkout."""
    for folder in ("ontology", "data", "shapes"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, target / folder)
    return target


def copy_with_build(target: Path) -> Path:
    """A copy of the knowledge files with the checkout's current build next to it.

    That build is `build()` run on the same files by the same code (ensure_artifact rebuilds
    when an input or a pipeline module changed, and a build's bytes depend only on those:
    test_build_twice_gives_identical_bytes), so it is the build the copy would get, without
    building it again per module; its HermiT answer (CACHE_DIR) comes with it, as it would.
    """
    root = copy_knowledge(target)
    built = ensure_artifact(ROOT).parent
    (root / "build").mkdir()
    for name in (ARTIFACT_NAME, MANIFEST_NAME):
        shutil.copy2(built / name, root / "build" / name)
    if (built / CACHE_DIR).is_dir():
        shutil.copytree(built / CACHE_DIR, root / "build" / CACHE_DIR)
    assert current_artifact(root, root / "build") is not None
    return root


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> tuple[Path, Manifest]:
    """The shipped knowledge built (copy_with_build: the session's build of the same files;
    test_build_twice_gives_identical_bytes builds them once more and compares)."""
    root = copy_with_build(tmp_path_factory.mktemp("kg"))
    return root, Manifest(**read_manifest(root / "build" / MANIFEST_NAME))


@pytest.fixture(scope="module")
def artifact(shipped) -> Path:
    return shipped[0] / "build" / ARTIFACT_NAME


@pytest.fixture(scope="module")
def store(artifact) -> ox.Store:
    s = ox.Store()
    s.bulk_load(path=str(artifact), format=ox.RdfFormat.N_QUADS)
    return s


def ask(store: ox.Store, query: str) -> bool:
    return bool(store.query(query, prefixes=QUERY_PREFIXES, use_default_graph_as_union=True))


def select(store: ox.Store, query: str) -> list:
    return list(store.query(query, prefixes=QUERY_PREFIXES, use_default_graph_as_union=True))


# --- the artifact and its manifest --------------------------------------------------------------
def test_manifest_describes_the_artifact(shipped, artifact):
    root, manifest = shipped
    data = artifact.read_bytes()
    assert manifest.build_id == hashlib.sha256(data).hexdigest()
    on_disk = read_manifest(root / "build" / MANIFEST_NAME)
    assert on_disk["build_id"] == manifest.build_id
    assert set(on_disk["timings"]) == set(STAGES)
    assert {"pyoxigraph", "reasonable", "owlready2", "pyshacl"} <= set(on_disk["tools"])
    # Counts per graph match the lines of the artifact, and every graph is there.
    lines = data.decode().splitlines()
    for name, graph in GRAPHS.items():
        in_graph = sum(1 for line in lines if line.endswith(f"{graph} ."))
        assert in_graph == manifest.triples[name], name
        assert in_graph > 0 or name == "asserted", name
    # Input hashes are of relative paths, and cover data and rules.
    assert "ontology/rules/body-of-evidence.ttl" in manifest.inputs
    assert all(not Path(p).is_absolute() for p in manifest.inputs)
    assert manifest.inputs == {
        p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in manifest.inputs
    }


@pytest.mark.slow
def test_build_twice_gives_identical_bytes(shipped, artifact, tmp_path):
    root, _manifest = shipped
    again = build(root, tmp_path / "again")
    assert (tmp_path / "again" / ARTIFACT_NAME).read_bytes() == artifact.read_bytes()
    assert again.build_id == _manifest.build_id


def test_blank_nodes_have_canonical_labels(artifact):
    # Ontology lists and SHACL property shapes are blank nodes; RDFC-1.0 names them c14nN.
    labels = {
        tok
        for line in artifact.read_text().splitlines()
        for tok in line.split()
        if tok.startswith("_:")
    }
    assert labels, "expected some blank nodes (OWL lists, SHACL shapes)"
    assert all(label.startswith("_:c14n") for label in labels)


def test_ensure_artifact_reuses_a_current_build(shipped, artifact):
    root, _manifest = shipped
    before = artifact.stat().st_mtime_ns
    assert current_artifact(root, root / "build") == artifact
    assert ensure_artifact(root, root / "build") == artifact
    assert artifact.stat().st_mtime_ns == before


# --- fail-closed ----------------------------------------------------------------------------------
@pytest.fixture
def own_copy(shipped, tmp_path) -> Path:
    """A private copy of the knowledge files with the last good build next to it."""
    root = copy_knowledge(tmp_path / "kg")
    shutil.copytree(shipped[0] / "build", root / "build")
    assert current_artifact(root, root / "build") is not None
    return root


def first_data_file(root: Path) -> Path:
    files = sorted((root / "data").rglob("*.ttl"))
    assert files, "no data files"
    return files[0]


def test_syntax_error_leaves_last_good_artifact(own_copy):
    out = own_copy / "build"
    before = {name: (out / name).read_bytes() for name in (ARTIFACT_NAME, MANIFEST_NAME)}
    broken = first_data_file(own_copy)
    broken.write_text(broken.read_text() + "\nthis is not turtle .\n")
    result = CliRunner().invoke(
        main, ["build", "--root", str(own_copy), "--out-dir", str(out), "--no-progress"]
    )
    assert result.exit_code == 1
    assert broken.name in result.output and "load" in result.output
    assert {name: (out / name).read_bytes() for name in before} == before
    assert current_artifact(own_copy, out) is None  # the inputs changed, the artifact did not


class FailedBuild(NamedTuple):
    root: Path
    returncode: int
    output: str  # stdout and stderr
    before: bytes  # the last good artifact, before the failed build
    tmp: Path  # the build's TMPDIR


@pytest.fixture(scope="module")
def inconsistent_build(tmp_path_factory) -> FailedBuild:
    """`cmpkg build` (the console script) on inconsistent data, run once for the two tests
    that read what it left: a failed build changes nothing, so one run shows both (each test
    used to run the same failing build, HermiT twice on the whole input each time)."""
    root = copy_with_build(tmp_path_factory.mktemp("kg-inconsistent"))
    before = (root / "build" / ARTIFACT_NAME).read_bytes()
    # A modality where a condition belongs: ExerciseModality and Condition are disjoint.
    # HermiT answers "inconsistent", which owlready2 alone leaves a temporary ontology file
    # behind for.
    (root / "data" / "zz-broken.ttl").write_text(
        "@prefix cmp: <https://w3id.org/cmpkg/vocab/> .\n"
        "@prefix mod: <https://w3id.org/cmpkg/modality/> .\n"
        f"<{NS}claim/zz-broken> cmp:condition mod:aerobic-exercise .\n"
    )
    tmp = tmp_path_factory.mktemp("tmpdir")
    done = subprocess.run(
        [CMPKG, "build", "--root", str(root), "--out-dir", str(root / "build")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    return FailedBuild(root, done.returncode, done.stdout + done.stderr, before, tmp)


def test_inconsistency_leaves_last_good_artifact(inconsistent_build: FailedBuild):
    result = inconsistent_build
    assert result.returncode == 1, result.output
    assert "hermit" in result.output.lower() or "shacl" in result.output.lower()
    assert "zz-broken" in result.output or "aerobic-exercise" in result.output
    assert (result.root / "build" / ARTIFACT_NAME).read_bytes() == result.before


# --- reasoning results in the artifact -----------------------------------------------------------
def test_knee_osteoarthritis_evidence_answers_osteoarthritis(store):
    # The claims about knee OA count as (indirect) evidence about osteoarthritis ...
    rows = select(
        store,
        """
        SELECT DISTINCT ?claim WHERE {
          ?claim cmp:condition cond:knee-osteoarthritis ;
                 cmp:indirectlyInforms cond:osteoarthritis .
        }""",
    )
    assert rows
    # ... and the body of evidence about osteoarthritis rests on them, as indirect evidence
    # (exercise and pain: only Fransen 2015's knee claims carry it) ...
    assert ask(
        store,
        """
        ASK { ?b a cmp:EvidenceBody ; cmp:condition cond:osteoarthritis ;
                 cmp:evidenceDirectness "indirect" ; cmp:carriedBy ?claim .
              ?claim cmp:condition cond:knee-osteoarthritis . }""",
    )
    # ... but evidence never flows down the hierarchy.
    assert not ask(
        store,
        """
        ASK { ?claim cmp:indirectlyInforms ?narrower . ?claim cmp:condition ?broader .
              GRAPH graph:ontology { ?narrower rdfs:subClassOf+ ?broader } }""",
    )


def test_every_inferred_statement_is_explained(store):
    # Records are one per rule and node (no longer one reified triple each): a statement is
    # explained by a record naming its subject and property and its rule; when several rules'
    # records name them, by the one record that used the statement's object.
    unexplained = select(
        store,
        """
        SELECT ?s ?p ?o WHERE {
          GRAPH graph:inferred { ?s ?p ?o }
          FILTER (!STRSTARTS(STR(?s), STR(deriv:)) && !STRSTARTS(STR(?p), STR(prov:)))
          FILTER NOT EXISTS { ?s prov:wasGeneratedBy ?rule }
          FILTER (NOT EXISTS { ?d cmp:derivedSubject ?s ; cmp:derivedProperty ?p ;
                                  prov:wasGeneratedBy ?by }
                  || (EXISTS { ?d1 cmp:derivedSubject ?s ; cmp:derivedProperty ?p .
                               ?d2 cmp:derivedSubject ?s ; cmp:derivedProperty ?p .
                               FILTER (?d1 != ?d2) }
                      && NOT EXISTS { ?d3 cmp:derivedSubject ?s ; cmp:derivedProperty ?p ;
                                          prov:used ?o .
                                      FILTER NOT EXISTS { ?d4 cmp:derivedSubject ?s ;
                                          cmp:derivedProperty ?p ; prov:used ?o .
                                          FILTER (?d4 != ?d3) } }))
        } LIMIT 5""",
    )
    assert not unexplained, [tuple(map(str, row)) for row in unexplained]
    # ... and records name what they are about (the check above is not vacuous).
    assert select(store, "SELECT ?d WHERE { ?d a cmp:Derivation ; cmp:derivedSubject ?s } LIMIT 1")


def test_rules_are_queryable_in_the_artifact(store):
    rows = select(
        store,
        """
        SELECT ?r WHERE { GRAPH graph:rules { ?r a cmp:Rule ; cmp:derives cmp:EvidenceBody } }
        ORDER BY ?r""",
    )
    assert [row["r"].value for row in rows] == [f"{NS}rule/body-of-evidence"]


# --- explain --------------------------------------------------------------------------------------
def test_explain_reaches_busch_2007_and_its_doi(artifact):
    result = CliRunner().invoke(main, ["explain", BODY, "--artifact", str(artifact)])
    assert result.exit_code == 0, result.output
    assert BUSCH_CLAIM in result.output
    assert BUSCH_DOI in result.output
    assert "rule:body-of-evidence" in result.output
    assert "rule:significance-direction" in result.output


def test_explain_json_tree_ends_in_asserted_claims(artifact):
    result = CliRunner().invoke(
        main, ["explain", BODY, "--artifact", str(artifact), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    tree = json.loads(result.output)
    assert tree["kind"] == "derived" and tree["rule"] == "rule:body-of-evidence"
    claims = {c["iri"]: c for c in tree["children"] if c["kind"] == "asserted"}
    busch = claims[f"{NS}claim/busch-2007-aerobic-physical-function"]
    assert busch["doi"] == BUSCH_DOI
    # Every claim the body includes is an asserted claim with a source.
    assert claims and all(c.get("source") for c in claims.values())


def test_explain_unknown_iri_fails_cleanly(artifact):
    result = CliRunner().invoke(
        main, ["explain", "body:no-such--thing--here", "--artifact", str(artifact)]
    )
    assert result.exit_code == 2
    assert "not described" in result.output


# --- the fast paths give the reference answers on the shipped data ------------------------------
# The build reasons and validates on reduced inputs (the schema closure plus instance types,
# HermiT on a summary, SPARQL constraints run once each); the reference implementations stay
# as oracles: owlrl's full closure (test_rules), HermiT on everything, the SHACL engine on every
# shape.
def _shipped_inputs() -> tuple[list[ox.Triple], list[ox.Triple]]:
    from service.kb.reasoning import rule_files
    from service.kb.sources import knowledge_files, load_triples

    files = knowledge_files(ROOT)
    vocabulary = [p for p in rule_files(ROOT) if p.name == "rule-vocabulary.ttl"]
    return load_triples(files["ontology"] + vocabulary), load_triples(files["asserted"])


# (The fast path's closure against owlrl's on the shipped data is in test_rules, beside the
# other OWL RL oracle: both compare with one owlrl run.)


def test_fast_owl_rl_falls_back_outside_its_subset():
    from service.kb.reasoning import owl_rl_entailments, owl_rl_fast

    schema, data = _shipped_inputs()
    sub = ox.NamedNode(PREFIXES["rdfs"] + "subPropertyOf")
    extra = ox.Triple(ox.NamedNode(NS + "vocab/condition"), sub, ox.NamedNode(NS + "vocab/about"))
    fast, fallback = owl_rl_fast([*schema, extra], data, engine="reasonable")
    assert fallback and "subPropertyOf" in fallback
    # ... and then it is the full closure, sub-property entailments included.
    assert set(fast) == set(owl_rl_entailments([*schema, extra, *data], engine="reasonable"))
    assert any(t.predicate.value == NS + "vocab/about" for t in fast)


def test_hermit_on_the_summary_agrees_with_hermit_on_everything(shipped, store):
    from service.kb.hermit import run_hermit, run_hermit_summarized
    from service.kb.reasoning import is_provenance

    schema, data = _shipped_inputs()
    inferred = [
        q.triple
        for q in store.quads_for_pattern(None, None, None, GRAPHS["inferred"])
        if not is_provenance(q.triple)
    ]
    fast, full_because = run_hermit_summarized(schema, data + inferred)
    assert full_because is None  # the summary was used
    reference = run_hermit(schema + data + inferred)
    assert fast.consistent and reference.consistent
    assert fast.inferred_subclass_of == reference.inferred_subclass_of
    assert fast.unsatisfiable == reference.unsatisfiable


def test_hermit_summary_still_catches_a_category_mistake():
    from service.kb.hermit import run_hermit_summarized

    schema, data = _shipped_inputs()
    bad = ox.Triple(
        ox.NamedNode(NS + "claim/zz-broken"),
        ox.NamedNode(PREFIXES["cmp"] + "condition"),
        ox.NamedNode(NS + "modality/aerobic-exercise"),
    )
    result, full_because = run_hermit_summarized(schema, [*data, bad])
    assert not result.consistent
    assert full_because and "summary is inconsistent" in full_because  # then named in full
    assert "zz-broken" in result.explanation or "aerobic-exercise" in result.explanation


def test_shapes_run_in_the_store_give_the_engines_report():
    """Shipped data plus every broken fixture: the shapes compiled to SPARQL and run in the
    store (service.kb.shacl_sparql) report exactly what pyshacl-turbo reports with every shape
    (turbo is itself checked against pySHACL in test_shapes; tests/test_shacl_sparql.py
    compares the compiled run with pySHACL directly)."""
    from service.kb.sources import knowledge_files, load_triples, to_rdflib_graph
    from service.kb.validation import _shacl_findings, _StoreGraph, run_shacl, validate_store

    files = knowledge_files(ROOT)
    broken = [
        p
        for p in sorted((ROOT / "tests" / "fixtures" / "broken").glob("*.ttl"))
        if p.stem not in ("syntax-error", "blank-node-claim")
    ]
    data = load_triples(files["ontology"] + files["asserted"] + broken)
    shapes = to_rdflib_graph(load_triples(files["shapes"]))
    s = ox.Store()
    s.extend(ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in data)

    def key(findings):
        # Values as the store holds them on both sides (it writes numbers canonically); a set,
        # as the engine repeats a property shape two node shapes hold (the report dedupes).
        return sorted(
            {tuple(str(x) for x in (f.severity, f.focus_node, f.path, f.value, f.message,
                                    f.shape, f.constraint))
             for f in findings}
        )  # fmt: skip

    run = validate_store(s, shapes, {})
    assert run.uncompiled == {}  # every shipped shape ran as SPARQL, none through the engine
    reference = key(_shacl_findings(run_shacl(s, shapes, "turbo"), _StoreGraph(s), {}))
    assert key(run.findings) == reference
    assert any(f[6].endswith("SPARQLConstraintComponent") for f in reference)  # some did fire
    assert any(f[6].endswith("ClassConstraintComponent") for f in reference)
    assert set(s.named_graphs()) == set()  # the working graphs are gone again


def test_one_claim_edit_rebuild_reuses_hermit_and_changes_only_that_claim(own_copy, tmp_path):
    """A curator's one-figure edit: the rebuild takes HermiT's answer from the build cache
    (the summary HermiT sees is unchanged) and the new artifact differs only where the edit
    and what follows from it are; what it reused changes nothing: its bytes are those of a
    clean build of the same inputs, with no cache."""
    out = own_copy / "build"
    if not any((out / CACHE_DIR).glob("*")):
        build(own_copy, out)  # fills the cache (the copied build normally brings it along)
    before = set((out / ARTIFACT_NAME).read_text().splitlines())
    busch = own_copy / "data" / "busch-2007.ttl"
    text = busch.read_text()
    assert "cmp:ciUpper 0.92" in text
    busch.write_text(text.replace("cmp:ciUpper 0.92", "cmp:ciUpper 0.93", 1))
    second = build(own_copy, out)
    assert "hermit" in second.reused, (second.full_input, second.timings)
    after = set((out / ARTIFACT_NAME).read_text().splitlines())
    changed = {line.split(" ")[0] for line in before ^ after}
    assert changed == {f"<{NS}claim/busch-2007-aerobic-physical-function>"}
    clean = build(own_copy, tmp_path / "clean")
    assert clean.reused == []
    assert (out / ARTIFACT_NAME).read_bytes() == (tmp_path / "clean" / ARTIFACT_NAME).read_bytes()
    assert second.build_id == clean.build_id
    assert second.triples == clean.triples and second.shacl_findings == clean.shacl_findings


# --- a failed or killed build cleans up after itself ----------------------------------------------
CMPKG = str(Path(sys.executable).parent / "cmpkg")


def build_in_own_mount(root: Path, mount_options: str, tmp_path: Path) -> tuple[int, str, str]:
    """`cmpkg build` writing to a fresh tmpfs (full or read-only), in a private mount namespace
    (unshare: no privilege needed, nothing mounted outside). Returns exit code, stderr and the
    listing of the mount after the build, less the build cache put there before it.

    The tmpfs starts with the last good build's cache (CACHE_DIR: HermiT's answer and the rules'
    strata for these inputs), then takes its options: the write that fails is the artifact's at the
    end, and what comes before it is the pipeline a rebuild runs, which then skips the JVM.
    The cache is listed as it was (nothing of the failed build left beside it)."""
    out = tmp_path / "mnt"
    out.mkdir()
    cache = root / "build" / CACHE_DIR
    assert any(cache.glob("*")), "the last good build has no cache to start from"
    script = (
        f"mount -t tmpfs none {out} && cp -r {cache} {out}/{CACHE_DIR} && "
        f"mount -o remount,{mount_options} {out} && "
        f"{CMPKG} build --root {root} --out-dir {out} --no-progress 2>{tmp_path / 'err'}; "
        f"echo $? > {tmp_path / 'rc'}; ls -A {out} > {tmp_path / 'ls'}; "
        f"diff -r {cache} {out}/{CACHE_DIR} > {tmp_path / 'cache-diff'}"
    )
    subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script],
        check=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert (tmp_path / "cache-diff").read_text() == ""  # the cache as it was put there
    listing = (tmp_path / "ls").read_text().split()
    assert CACHE_DIR in listing
    return (
        int((tmp_path / "rc").read_text()),
        (tmp_path / "err").read_text(),
        " ".join(name for name in listing if name != CACHE_DIR),
    )


def test_build_on_a_full_disk_says_so_and_leaves_no_temporary_file(own_copy, tmp_path):
    # Room for the cache (HermiT's answer and the rules' strata, in whole pages) and 64 KiB.
    cache = [p.stat().st_size for p in (own_copy / "build" / CACHE_DIR).iterdir()]
    size = sum(-(-n // 4096) * 4096 for n in cache) + 64 * 1024
    code, err, listing = build_in_own_mount(own_copy, f"size={size}", tmp_path)
    assert code == 1
    assert "No space left on device" in err and "write" in err
    assert "Traceback" not in err
    assert listing.split() == []  # no .cmpkg.nq.*.tmp left on the full disk


def test_build_into_a_read_only_directory_says_so(own_copy, tmp_path):
    code, err, listing = build_in_own_mount(own_copy, "ro", tmp_path)
    assert code == 1
    assert "Read-only file system" in err
    assert "Traceback" not in err
    assert listing.split() == []


def test_a_failed_build_leaves_nothing_in_the_temporary_directory(
    inconsistent_build: FailedBuild,
):
    result = inconsistent_build
    assert result.returncode == 1, result.output
    assert list(result.tmp.iterdir()) == []
    assert not list((result.root / "build").glob(".*.tmp"))


def descendants(pid: int) -> dict[int, tuple[str, bytes]]:
    """The processes descending from `pid`, each with its name and command line."""
    parents: dict[int, int] = {}
    named: dict[int, tuple[str, bytes]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            fields = text.rsplit(")", 1)[1].split()
            comm = text.split("(", 1)[1].rsplit(")", 1)[0]
            named[int(stat.parent.name)] = (comm, (stat.parent / "cmdline").read_bytes())
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])

    def descends(node: int) -> bool:
        while node in parents and node not in (0, 1):
            node = parents[node]
            if node == pid:
                return True
        return False

    return {p: named[p] for p in parents if descends(p)}


def java_children(pid: int) -> list[int]:
    """HermiT's JVMs among the descendants of `pid` (not the `java -version` the manifest
    runs). HermiT's stage runs in a child process of the build, beside the write: its JVM is
    the build's grandchild, and must die with the build all the same."""
    found = descendants(pid).items()
    return [p for p, (comm, cmdline) in found if comm == "java" and b"HermiT" in cmdline]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_build_stops_its_jvm_and_removes_its_temporaries(own_copy, tmp_path, sig):
    from service.kb.build import remove_stale_staged
    from service.kb.hermit import remove_stale_run_dirs

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = own_copy / "build"
    # Without the last build's cache: with it, HermiT's answer is reused and no JVM starts.
    shutil.rmtree(out / CACHE_DIR, ignore_errors=True)
    process = subprocess.Popen(
        [CMPKG, "build", "--root", str(own_copy), "--out-dir", str(out), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    deadline = time.monotonic() + 120
    jvms: list[int] = []
    while not jvms and process.poll() is None and time.monotonic() < deadline:
        jvms = java_children(process.pid)
        time.sleep(0.02)
    assert jvms, "the build never started HermiT"
    # HermiT's child cleans up after a killed build, then exits (its JVM with it); the JVM
    # can also end by finishing its work first, so what is left is judged once every
    # process the build started is gone.
    started = [*descendants(process.pid)]
    process.send_signal(sig)
    process.wait(timeout=60)
    deadline = time.monotonic() + 10
    while any(running(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(j) for j in jvms), "HermiT's JVM outlived the build"
    assert not any(running(p) for p in started), "a process of the build outlived it"
    if sig == signal.SIGTERM:  # unwinds: everything it made is gone at once
        assert not list(out.glob(".*.tmp"))
        assert list(tmp.iterdir()) == []
        assert b"Traceback" not in process.stderr.read()  # type: ignore[union-attr]
    else:
        # Nothing of the build runs after SIGKILL. HermiT's child, when still running, removes
        # what the build had staged; when HermiT had already answered (the write runs beside
        # it), the next build clears what the dead one left, as it does HermiT's temporaries.
        remove_stale_run_dirs(tmp)
        remove_stale_staged(out)
        assert list(tmp.iterdir()) == []
        assert not list(out.glob(".*.tmp"))
    process.stderr.close()  # type: ignore[union-attr]


# --- the writer and the rebuild -------------------------------------------------------------------
def _reference_serialize(by_graph: dict[str, list[ox.Triple]]) -> bytes:
    """The writer as it was before it wrote from pyoxigraph's serializer (one Python string
    per quad): the bytes the artifact must keep."""
    lines: list[str] = []
    with_blanks = ox.Dataset()
    for name, graph in GRAPHS.items():
        for t in set(by_graph.get(name, [])):
            quad = ox.Quad(t.subject, t.predicate, t.object, graph)
            if isinstance(t.subject, ox.BlankNode) or isinstance(t.object, ox.BlankNode):
                with_blanks.add(quad)
            else:
                lines.append(f"{quad} .\n")
    with_blanks.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    lines += [f"{q} .\n" for q in with_blanks]
    lines.sort()
    return "".join(lines).encode("utf-8")


def test_writer_gives_the_reference_bytes_on_the_shipped_data(shipped, store):
    from service.kb.build import _load, serialize
    from service.kb.sources import parse_file

    root, manifest = shipped
    by_graph = dict(_load(root).graphs)
    inferred = [q.triple for q in store.quads_for_pattern(None, None, None, GRAPHS["inferred"])]
    # What the shipped data lacks: a blank node in the inferred graph, a repeated statement,
    # literals holding "_:", " .", a newline, quotes, a tab, a control character, non-ASCII.
    odd = ox.Literal('a _:b .\n"q"\t\u0001 é')
    blank = ox.BlankNode()
    x, p, q = ox.NamedNode(NS + "x"), ox.NamedNode(NS + "vocab/p"), ox.NamedNode(NS + "vocab/q")
    extra = [
        ox.Triple(blank, p, odd),
        ox.Triple(x, p, blank),
        ox.Triple(x, q, ox.Literal("_:x", language="fr")),
    ]
    by_graph["inferred"] = [*inferred, *extra, *extra[:1]]
    data, counts = serialize(by_graph)
    assert data == _reference_serialize(by_graph)
    assert counts["inferred"] == len(set(inferred)) + 3
    # ... and the artifact's own graphs, as parsed (a store would normalise some literals),
    # give its own bytes back.
    quads = parse_file(root / "build" / ARTIFACT_NAME)
    in_artifact = {
        name: [q.triple for q in quads if q.graph_name == graph] for name, graph in GRAPHS.items()
    }
    again, again_counts = serialize(in_artifact)
    assert again == (root / "build" / ARTIFACT_NAME).read_bytes()
    assert again_counts == manifest.triples


def _graph(store: ox.Store, name: str) -> list[ox.Triple]:
    return [ox.Triple(q.subject, q.predicate, q.object)
            for q in store.quads_for_pattern(None, None, None, GRAPHS[name])]  # fmt: skip


def test_shacl_leaves_out_derivation_records_only_where_they_change_no_finding(store):
    """The build validates without the derivation records (most of the inferred graph at
    scale) when no shape can reach them; the report with them in is the same, and a shape
    that names their class keeps them in."""
    from service.kb.build import _without_records
    from service.kb.validation import validate_graphs

    asserted, inferred, shapes = (_graph(store, g) for g in ("asserted", "inferred", "shapes"))
    schema = _graph(store, "ontology") + _graph(store, "rules")
    kept = _without_records(asserted, inferred, shapes)
    records = [t for t in inferred if t.subject.value.startswith(PREFIXES["derivation"])]
    assert records and len(kept) == len(inferred) - len(records)

    def report(data: list[ox.Triple]) -> list:
        run = validate_graphs(data=data, ontology=schema, shapes=shapes, reasoner=False)
        return sorted(str(f.as_dict()) for f in run.findings)

    assert report(asserted + kept) == report(asserted + inferred)

    shape = ox.NamedNode(PREFIXES["cmp"] + "shape/records")
    target = ox.NamedNode(PREFIXES["sh"] + "targetClass")
    naming = [*shapes, ox.Triple(shape, target, ox.NamedNode(PREFIXES["cmp"] + "Derivation"))]
    assert _without_records(asserted, inferred, naming) == inferred
    first = asserted[0]
    pointing = [*asserted, ox.Triple(first.subject, first.predicate, records[0].subject)]
    assert _without_records(pointing, inferred, shapes) == inferred
