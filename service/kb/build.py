"""`cmpkg build`: load -> reason -> HermiT -> SHACL -> one deterministic artifact + manifest.

The artifact is N-Quads with five named graphs (ontology, asserted, inferred, shapes, rules),
lines sorted and blank nodes canonicalised (RDFC-1.0), so the same inputs give the same bytes.
Writing is atomic and fail-closed: any failure leaves the previous artifact untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import pyoxigraph as ox

from service import __version__
from service.kb.reasoning import (
    HERMIT_RULE,
    derivation_records,
    is_provenance,
    load_rules,
    reason,
    rule_files,
)
from service.kb.sources import (
    GRAPH_NAMES,
    GRAPHS,
    RDFSyntaxError,
    knowledge_files,
    parse_file,
    project_root,
)

ARTIFACT_NAME = "cmpkg.nq"
MANIFEST_NAME = "manifest.json"
RULE_VOCABULARY = "rule-vocabulary.ttl"
TOOLS = ("pyoxigraph", "rdflib", "reasonable", "owlrl", "owlready2", "pyshacl")
STAGES = ("load", "owl_rl", "rules", "hermit", "shacl", "write")


class BuildFailed(Exception):
    """The build stopped; `report` says why in words a curator can act on."""

    def __init__(self, stage: str, report: str) -> None:
        super().__init__(f"build failed at {stage}: {report}")
        self.stage = stage
        self.report = report


@dataclass
class Manifest:
    build_id: str  # sha256 of the artifact bytes
    artifact: str  # file name, relative to the manifest
    triples: dict[str, int]  # per named graph
    inputs: dict[str, str]  # relative path -> sha256
    code: str  # sha256 of the pipeline's own modules: a changed rule engine means a rebuild
    tools: dict[str, str]
    timings: dict[str, float]  # seconds per stage
    rules: dict[str, int] = field(default_factory=dict)  # new triples per rule
    hermit_subclass_links: int = 0
    shacl_findings: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # checks not run (benchmarks only)

    def to_dict(self) -> dict:
        return asdict(self)


def build_dir(root: Path | None = None, out_dir: Path | None = None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    if os.environ.get("CMPKG_BUILD_DIR"):
        return Path(os.environ["CMPKG_BUILD_DIR"])
    return (root or project_root()) / "build"


def input_files(root: Path | None = None) -> dict[str, list[Path]]:
    """Every file a build reads, by target graph."""
    root = root or project_root()
    return {**knowledge_files(root), "rules": rule_files(root)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def input_hashes(root: Path | None = None) -> dict[str, str]:
    root = root or project_root()
    return {
        p.relative_to(root).as_posix(): _sha256(p)
        for paths in input_files(root).values()
        for p in paths
    }


PIPELINE_MODULES = ("sources.py", "reasoning.py", "hermit.py", "validation.py", "build.py")


def code_hash() -> str:
    digest = hashlib.sha256()
    for name in PIPELINE_MODULES:
        path = Path(__file__).resolve().parent / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    versions = {"cmpkg": __version__, "python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["java"] = _java_version()
    return versions


def _java_version() -> str:
    """HermiT's runtime; `java -version` writes to stderr."""
    import subprocess

    import owlready2

    try:
        done = subprocess.run(
            [owlready2.JAVA_EXE, "-version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return "not found"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else "unknown"


def read_manifest(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    return json.loads(path.read_text(encoding="utf-8"))


def current_artifact(root: Path | None = None, out_dir: Path | None = None) -> Path | None:
    """The built artifact if it was built from exactly the current inputs (and is intact)."""
    directory = build_dir(root, out_dir)
    artifact, manifest = directory / ARTIFACT_NAME, directory / MANIFEST_NAME
    if not (artifact.is_file() and manifest.is_file()):
        return None
    try:
        recorded = read_manifest(manifest)
    except (OSError, ValueError):
        return None
    if (
        recorded.get("inputs") != input_hashes(root)
        or recorded.get("code") != code_hash()
        or recorded.get("build_id") != _sha256(artifact)
    ):
        return None
    return artifact


def ensure_artifact(root: Path | None = None, out_dir: Path | None = None) -> Path:
    """The current artifact, building it first when the inputs changed since the last build."""
    artifact = current_artifact(root, out_dir)
    if artifact is None:
        build(root, out_dir)
        artifact = build_dir(root, out_dir) / ARTIFACT_NAME
    return artifact


# --- pipeline ----------------------------------------------------------------------------------
class _Stages:
    """Times each stage and, on a terminal, says what is running (HermiT takes seconds)."""

    def __init__(self, progress: bool, echo: Callable[[str], None]) -> None:
        self.progress, self.echo, self.timings = progress, echo, {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        number = STAGES.index(name) + 1
        if self.progress:
            self.echo(f"[{number}/{len(STAGES)}] {name} ...")
        started = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - started, 3)
        if self.progress:
            self.echo(f"[{number}/{len(STAGES)}] {name} done in {self.timings[name]:.2f} s")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _triples(quads: list[ox.Quad]) -> list[ox.Triple]:
    return [q.triple for q in quads]


def _file_of(parsed: dict[Path, list[ox.Quad]], root: Path) -> dict[str, str]:
    """Which data file describes each node, so validation findings point at a file."""
    where: dict[str, list[str]] = defaultdict(list)
    for path, quads in parsed.items():
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        for q in quads:
            if isinstance(q.subject, ox.NamedNode) and shown not in where[q.subject.value]:
                where[q.subject.value].append(shown)
    return {node: ", ".join(paths) for node, paths in where.items()}


def build(
    root: Path | None = None,
    out_dir: Path | None = None,
    progress: bool = False,
    owl_rl_engine: str = "reasonable",
    echo: Callable[[str], None] = _stderr,
    skip: Collection[str] = (),
) -> Manifest:
    """Build the artifact; raises BuildFailed (previous artifact untouched) on any problem.

    `skip` ("owl_rl", "hermit", "shacl") exists for benchmarks on synthetic data only; a
    skipped step is recorded in the manifest."""
    root = Path(root) if root else project_root()
    directory = build_dir(root, out_dir)
    stages = _Stages(progress, echo)

    with stages.stage("load"):
        files = input_files(root)
        hashes = input_hashes(root)
        try:
            parsed = {g: {p: parse_file(p) for p in paths} for g, paths in files.items()}
        except RDFSyntaxError as err:
            raise BuildFailed("load", f"cannot parse {err}") from None
        graph_triples = {
            g: [t for quads in by_file.values() for t in _triples(quads)]
            for g, by_file in parsed.items()
        }
        vocabulary = [
            q.triple
            for p, quads in parsed["rules"].items()
            if p.name == RULE_VOCABULARY
            for q in quads
        ]
        rules = load_rules(graph_triples["rules"])
        if not graph_triples["ontology"]:
            raise BuildFailed("load", f"no ontology files under {root / 'ontology'}")

    # The rule vocabulary is schema for the nodes rules make; reasoners and shapes need it too.
    schema = graph_triples["ontology"] + vocabulary
    try:
        engine = "none" if "owl_rl" in skip else owl_rl_engine
        result = reason(schema, graph_triples["asserted"], rules, owl_rl_engine=engine)
    except Exception as err:  # a rule with bad SPARQL, or a reasoner crash: fail closed
        raise BuildFailed("rules", f"{type(err).__name__}: {err}") from err
    stages.timings.update({k: round(v, 3) for k, v in result.timings.items()})
    if progress:
        echo(f"[2-3/{len(STAGES)}] OWL RL + rules done: {len(result.inferred)} inferred triples")
    inferred = list(result.inferred)

    links: list[ox.Triple] = []
    if "hermit" not in skip:
        with stages.stage("hermit"):
            try:
                inferred, links = _classify(schema + graph_triples["asserted"], inferred)
            except BuildFailed:
                raise
            except Exception as err:  # a crashed JVM or reasoner: fail closed, say so
                raise BuildFailed("hermit", f"{type(err).__name__}: {err}") from err

    findings: dict[str, int] = {}
    if "shacl" not in skip:
        with stages.stage("shacl"):
            try:
                findings = _validate(
                    graph_triples, inferred, schema, _file_of(parsed["asserted"], root)
                )
            except BuildFailed:
                raise
            except Exception as err:
                raise BuildFailed("shacl", f"{type(err).__name__}: {err}") from err

    with stages.stage("write"):
        by_graph = {**graph_triples, "inferred": inferred}
        data, counts = serialize(by_graph)
        manifest = Manifest(
            build_id=hashlib.sha256(data).hexdigest(),
            artifact=ARTIFACT_NAME,
            triples=counts,
            inputs=hashes,
            code=code_hash(),
            tools=tool_versions(),
            timings={},
            rules=result.per_rule,
            hermit_subclass_links=len(links),
            shacl_findings=findings,
            skipped=sorted(skip),
        )
    manifest.timings = {s: stages.timings.get(s, 0.0) for s in STAGES}
    _write_atomically(directory, data, manifest)
    return manifest


_RDFS_SUBCLASS = "http://www.w3.org/2000/01/rdf-schema#subClassOf"


def _classify(
    base: list[ox.Triple], inferred: list[ox.Triple]
) -> tuple[list[ox.Triple], list[ox.Triple]]:
    """HermiT consistency + classification; new subclass links join the inferred graph."""
    from service.kb.hermit import JavaNotFoundError, run_hermit

    logical = [t for t in inferred if not is_provenance(t)]
    try:
        hermit = run_hermit(base + logical)
    except JavaNotFoundError as err:
        raise BuildFailed("hermit", str(err)) from None
    if not hermit.consistent or hermit.unsatisfiable:
        raise BuildFailed("hermit", hermit.explanation)
    known = set(inferred)
    links = [
        link
        for a, b in hermit.inferred_subclass_of
        if (link := ox.Triple(ox.NamedNode(a), ox.NamedNode(_RDFS_SUBCLASS), ox.NamedNode(b)))
        not in known
    ]
    records = derivation_records(links, HERMIT_RULE)
    return sorted(known | set(links) | set(records), key=str), links


def _validate(
    graph_triples: dict[str, list[ox.Triple]],
    inferred: list[ox.Triple],
    schema: list[ox.Triple],
    file_of: dict[str, str],
) -> dict[str, int]:
    """SHACL on asserted + inferred (the ontology and rule vocabulary as schema)."""
    from service.kb.validation import validate_graphs

    report = validate_graphs(
        data=graph_triples["asserted"] + inferred,
        ontology=schema,
        shapes=graph_triples["shapes"],
        file_of=file_of,
        reasoner=False,
    )
    if not report.conforms:
        raise BuildFailed("shacl", report.render("text"))
    return {s: report.count(s) for s in ("Violation", "Warning", "Info")}


def serialize(by_graph: dict[str, list[ox.Triple]]) -> tuple[bytes, dict[str, int]]:
    """Sorted N-Quads with canonical blank-node labels, and the triple count of each graph."""
    dataset = ox.Dataset()
    counts: dict[str, int] = {}
    for name in GRAPH_NAMES:
        graph = GRAPHS[name]
        unique = set(by_graph.get(name, []))
        counts[name] = len(unique)
        for t in unique:
            dataset.add(ox.Quad(t.subject, t.predicate, t.object, graph))
    # Blank nodes (OWL lists, SHACL property shapes) get fresh ids on every parse; RDFC-1.0
    # relabels them from the graph's content, which is what makes two builds byte-identical.
    dataset.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    lines = sorted(f"{q} .\n" for q in dataset)
    return "".join(lines).encode("utf-8"), counts


def _write_atomically(directory: Path, data: bytes, manifest: Manifest) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, payload in (
            (ARTIFACT_NAME, data),
            (
                MANIFEST_NAME,
                (json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n").encode(),
            ),
        ):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the artifact is meant to be read/served
            staged.append((Path(tmp), directory / name))
        # Artifact first: a reader that sees a new manifest always finds its artifact.
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _final in staged:
            tmp.unlink(missing_ok=True)
