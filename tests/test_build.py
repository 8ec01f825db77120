"""`cmpkg build` and `cmpkg explain` on the shipped knowledge graph (a copy of the repository's
ontology/, data/, shapes/ in a temporary root, built once for the module)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyoxigraph as ox
import pytest
from click.testing import CliRunner

from service.cli import main
from service.kb.build import (
    ARTIFACT_NAME,
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


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> tuple[Path, Manifest]:
    root = copy_knowledge(tmp_path_factory.mktemp("kg"))
    manifest = build(root, root / "build")
    return root, manifest


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


def test_inconsistency_leaves_last_good_artifact(own_copy):
    out = own_copy / "build"
    before = (out / ARTIFACT_NAME).read_bytes()
    # A modality where a condition belongs: ExerciseModality and Condition are disjoint.
    (own_copy / "data" / "zz-broken.ttl").write_text(
        "@prefix cmp: <https://w3id.org/cmpkg/vocab/> .\n"
        "@prefix mod: <https://w3id.org/cmpkg/modality/> .\n"
        f"<{NS}claim/zz-broken> cmp:condition mod:aerobic-exercise .\n"
    )
    result = CliRunner().invoke(
        main, ["build", "--root", str(own_copy), "--out-dir", str(out), "--no-progress"]
    )
    assert result.exit_code == 1
    assert "hermit" in result.output.lower() or "shacl" in result.output.lower()
    assert "zz-broken" in result.output or "aerobic-exercise" in result.output
    assert (out / ARTIFACT_NAME).read_bytes() == before


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
    unexplained = select(
        store,
        """
        SELECT ?s ?p ?o WHERE {
          GRAPH graph:inferred { ?s ?p ?o }
          FILTER (!STRSTARTS(STR(?s), STR(deriv:)) && !STRSTARTS(STR(?p), STR(prov:)))
          FILTER NOT EXISTS { ?s prov:wasGeneratedBy ?rule }
          FILTER NOT EXISTS { ?d rdf:subject ?s ; rdf:predicate ?p ; rdf:object ?o ;
                                 prov:wasGeneratedBy ?by }
        } LIMIT 5""",
    )
    assert not unexplained, [tuple(map(str, row)) for row in unexplained]


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
