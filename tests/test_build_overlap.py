"""HermiT in a child process beside the write and SHACL (service.kb.build._HermitJob).

The write and SHACL run on the inferred graph without HermiT's answer; when HermiT adds a
subclass link they are redone on the final graph, so the build gives what the sequential
pipeline (HermiT, then the write and SHACL) gives, failures included. A tiny ontology where
HermiT does add a link (D is a subclass of B and of C, A is B and C: D is an A, which OWL RL
does not derive) and a shape that needs that link."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import owlready2
import pytest

from service.kb import build as build_module
from service.kb.build import ARTIFACT_NAME, MANIFEST_NAME, BuildFailed, build

T = "https://w3id.org/cmpkg/test/"
ONTOLOGY = f"""\
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
<{T}A> a owl:Class ;
    owl:equivalentClass [ a owl:Class ; owl:intersectionOf ( <{T}B> <{T}C> ) ] .
<{T}B> a owl:Class .
<{T}C> a owl:Class .
<{T}D> a owl:Class ; rdfs:subClassOf <{T}B>, <{T}C> .
<{T}E> a owl:Class ; owl:disjointWith <{T}B> .
"""
DATA = f"<{T}d1> a <{T}D> .\n"
# A violation on the graph without HermiT's link, none on the final graph.
SHAPE = f"""\
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
<{T}DShape> a sh:NodeShape ;
    sh:targetClass owl:Class ;
    sh:sparql [ sh:message "D is an A (HermiT says so)" ; sh:select \"\"\"
        SELECT $this WHERE {{
          FILTER ($this = <{T}D>)
          FILTER NOT EXISTS {{ $this <http://www.w3.org/2000/01/rdf-schema#subClassOf> <{T}A> }}
        }}\"\"\" ] .
"""
HERMIT_LINK = f"<{T}D> <http://www.w3.org/2000/01/rdf-schema#subClassOf> <{T}A> "


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    root = tmp_path / "kg"
    for folder, name, text in (("ontology", "mini.ttl", ONTOLOGY), ("data", "mini.ttl", DATA),
                               ("shapes", "mini.ttl", SHAPE)):  # fmt: skip
        (root / folder).mkdir(parents=True)
        (root / folder / name).write_text(text, encoding="utf-8")
    return root


def sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build as it runs where no child process can be started: HermiT first, in this
    process."""
    monkeypatch.setattr(build_module.multiprocessing, "get_all_start_methods", lambda: [])


def comparable(directory: Path) -> dict:
    """The manifest less its timings, and less the blank-node labels the parser makes up
    afresh on every load (HermiT's reason for its full input names one)."""
    text = re.sub(r"_:[0-9a-f]+", "_:b", (directory / MANIFEST_NAME).read_text())
    manifest = json.loads(text)
    return {k: v for k, v in manifest.items() if k not in ("timings", "peak_rss_mib")}


def test_a_link_from_hermit_redoes_the_write_and_shacl_on_the_final_graph(mini, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    # Without HermiT the shape fails: the speculative SHACL run did find a violation.
    with pytest.raises(BuildFailed) as failed:
        build(mini, tmp_path / "no-hermit", skip=("hermit",))
    assert failed.value.stage == "shacl" and "D is an A" in failed.value.report
    runs = []
    real_run = build_module._Checks.run

    def counted(self, staged, inferred, texts=None):  # type: ignore[no-untyped-def]
        runs.append(len(inferred))
        return real_run(self, staged, inferred, texts)

    monkeypatch.setattr(build_module._Checks, "run", counted)
    # The write never finds HermiT's answer there already (as at scale, where HermiT takes
    # longer than the write; here its JVM start alone usually does).
    monkeypatch.setattr(build_module._HermitJob, "answered", lambda self: False)
    manifest = build(mini, tmp_path / "overlapped")
    assert len(runs) == 2 and runs[1] > runs[0]  # written and checked again, with the links
    assert manifest.hermit_subclass_links >= 1 and manifest.shacl_findings["Violation"] == 0
    artifact = (tmp_path / "overlapped" / ARTIFACT_NAME).read_text()
    assert HERMIT_LINK + "<https://w3id.org/cmpkg/graph/inferred> .\n" in artifact
    assert not list((tmp_path / "overlapped").glob(".*.tmp"))  # the first staging is gone
    # The same bytes and manifest as HermiT first, then the write and SHACL once.
    monkeypatch.undo()
    monkeypatch.setattr(build_module._Checks, "run", counted)
    sequential(monkeypatch)
    runs.clear()
    build(mini, tmp_path / "sequential")
    assert len(runs) == 1
    assert (tmp_path / "sequential" / ARTIFACT_NAME).read_text() == artifact
    assert comparable(tmp_path / "sequential") == comparable(tmp_path / "overlapped")


def _served(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize("failure", ["inconsistent", "crashed JVM", "no Java", "child killed"])
def test_a_hermit_failure_during_the_overlap_fails_closed_at_hermit(mini, tmp_path, monkeypatch,
                                                                    failure):  # fmt: skip
    out = tmp_path / "out"
    build(mini, out)
    served = _served(out)
    # SHACL fails as well (d1 lacks a label the edit asks for): HermiT's failure, whose stage
    # comes first, is the one reported, as in the sequential pipeline.
    (mini / "shapes" / "labels.ttl").write_text(
        f"@prefix sh: <http://www.w3.org/ns/shacl#> .\n<{T}LabelShape> a sh:NodeShape ; "
        f"sh:targetNode <{T}d1> ; sh:property [ sh:path <{T}label> ; sh:minCount 1 ] .\n"
    )
    with pytest.raises(BuildFailed) as failed:
        build(mini, tmp_path / "no-hermit", skip=("hermit",))
    assert failed.value.stage == "shacl"
    java = owlready2.JAVA_EXE
    if failure == "inconsistent":
        (mini / "data" / "mini.ttl").write_text(DATA + f"<{T}d1> a <{T}E> .\n")
        expected = "Inconsistent"
    elif failure == "crashed JVM":
        java = _script(tmp_path / "java", 'echo "Exception in thread main: boom" >&2; exit 3')
        expected = "boom"
    elif failure == "no Java":
        java = str(tmp_path / "no-such-java")
        expected = "Java runtime"
    else:  # HermiT's own process dies without an answer (its JVM kills it)
        java = _script(tmp_path / "java", 'kill -9 "$PPID"; sleep 5')
        expected = "without an answer"
    monkeypatch.setattr(owlready2, "JAVA_EXE", java)
    # The last build's HermiT answer would be reused, and no JVM start.
    for kept in (out / ".cache").glob("hermit-*"):
        kept.unlink()
    # HermiT fails while the write and SHACL run (not before the write starts).
    monkeypatch.setattr(build_module._HermitJob, "answered", lambda self: False)
    with pytest.raises(BuildFailed) as failed:
        build(mini, out)
    assert failed.value.stage == "hermit", failed.value.report
    assert expected in failed.value.report
    assert _served(out) == served  # the served artifact and manifest as they were
    assert not list(out.glob(".*.tmp"))


def test_a_hermit_child_gone_before_its_input_fails_the_build_at_hermit(tmp_path):
    """The child starts with the build and waits for its input; if it died meanwhile, handing
    the input over must not raise: the build fails at HermiT, saying the process ended."""
    from service.kb.build import _HermitJob

    job = _HermitJob(tmp_path)
    try:
        assert job._process is not None
        job._process.kill()
        job._process.join()
        job.start([], [b"", b""])
        with pytest.raises(BuildFailed) as failed:
            job.answer()
        assert failed.value.stage == "hermit"
        assert "ended without an answer" in failed.value.report
    finally:
        job.stop()
