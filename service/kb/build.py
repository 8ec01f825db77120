"""`cmpkg build`: load -> reason -> HermiT -> SHACL -> one deterministic artifact + manifest.

The artifact is N-Quads with five named graphs (ontology, asserted, inferred, shapes, rules),
lines sorted and blank nodes canonicalised (RDFC-1.0), so the same inputs give the same bytes.
Writing is atomic and fail-closed: any failure leaves the previous artifact untouched.
"""

from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from importlib import metadata
from itertools import pairwise
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import pyoxigraph as ox

from service import __version__, config
from service.kb.reasoning import (
    DERIVATION_NS,
    HERMIT_RULE,
    Rule,
    derivation_records,
    is_provenance,
    load_rules,
    peak_rss_mib,
    reason,
    rule_files,
)
from service.kb.rule_memo import RuleMemo
from service.kb.sources import (
    GRAPH_NAMES,
    GRAPHS,
    RDFSyntaxError,
    knowledge_files,
    parse_triples,
    project_root,
    stream_triples,
)
from service.vocab import PREFIXES

if TYPE_CHECKING:  # HermiT (owlready2) is imported only when a build runs it
    from service.kb.hermit import HermitResult

ARTIFACT_NAME = "cmpkg.nq"
MANIFEST_NAME = "manifest.json"
CACHE_DIR = ".cache"  # answers of unchanged inputs a rebuild reuses (HermiT on the summary)
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
    # Seconds per stage; hermit's is its own run, in a child process beside write and shacl.
    timings: dict[str, float]
    rules: dict[str, int] = field(default_factory=dict)  # new triples per rule
    hermit_subclass_links: int = 0
    shacl_findings: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # checks not run (benchmarks only)
    # Stages that ran on their whole input instead of the fast path, and why (see reasoning,
    # hermit): the answers are the same, only slower.
    full_input: dict[str, str] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # per stage, this process
    reused: list[str] = field(default_factory=list)  # stages answered from the build cache

    def to_dict(self) -> dict:
        return asdict(self)


def build_dir(root: Path | None = None, out_dir: Path | None = None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    if config.value("build_dir"):
        return Path(config.value("build_dir"))
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


PIPELINE_MODULES = (
    "sources.py",
    "reasoning.py",
    "rule_memo.py",
    "rule_analysis.py",
    "hermit.py",
    "validation.py",
    "shacl_sparql.py",
    "rebuild.py",
    "build.py",
)


def code_hash() -> str:
    digest = hashlib.sha256()
    for name in PIPELINE_MODULES:
        path = Path(__file__).resolve().parent / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()


def tool_versions(java: str | None = None) -> dict[str, str]:
    """The versions of the tools a build runs; `java`: the JVM's, when already known."""
    versions = {"cmpkg": __version__, "python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["java"] = _java_version() if java is None else java
    return versions


def _java_version() -> str:
    """HermiT's runtime; `java -version` writes to stderr."""
    import subprocess

    import owlready2

    from service.kb.hermit import die_with_parent

    parent = os.getpid()
    try:
        done = subprocess.run(
            [owlready2.JAVA_EXE, "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            # Like HermiT's JVM: a killed build leaves no JVM behind (a JVM can take seconds
            # to start on a loaded machine).
            preexec_fn=(lambda: die_with_parent(parent))
            if sys.platform.startswith("linux")
            else None,
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
        self.progress, self.echo = progress, echo
        self.timings: dict[str, float] = {}
        self.peaks: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        number = STAGES.index(name) + 1
        if self.progress:
            self.echo(f"[{number}/{len(STAGES)}] {name} ...")
        started = time.perf_counter()
        peak_rss_mib()  # reset: what follows is this stage's own peak
        yield
        # A stage may run in parts (the write serialises before SHACL, which scopes itself
        # by the result, and writes after it): its parts add up.
        elapsed = time.perf_counter() - started
        self.timings[name] = round(self.timings.get(name, 0.0) + elapsed, 3)
        self.peaks[name] = max(self.peaks.get(name, 0.0), peak_rss_mib())
        if self.progress:
            self.echo(f"[{number}/{len(STAGES)}] {name} done in {self.timings[name]:.2f} s")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _FileOf(Mapping[str, str]):
    """Which data file describes each node, so validation findings point at a file.

    Worked out on the first lookup: a build whose validation finds nothing never needs it,
    and at a million triples it cost seconds."""

    def __init__(self, triples: Sequence[ox.Triple], spans: Mapping[str, range]) -> None:
        self._triples, self._spans = triples, spans
        self._where: dict[str, str] | None = None

    def _table(self) -> dict[str, str]:
        if self._where is None:
            where: dict[str, list[str]] = defaultdict(list)
            for shown, span in self._spans.items():
                for i in span:
                    subject = self._triples[i].subject
                    if isinstance(subject, ox.NamedNode):
                        files = where[subject.value]
                        if shown not in files:
                            files.append(shown)
            self._where = {node: ", ".join(paths) for node, paths in where.items()}
        return self._where

    def __bool__(self) -> bool:  # `file_of or {}` must not work the table out
        return True

    def __getitem__(self, node: str) -> str:
        return self._table()[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


@dataclass
class _Loaded:
    """Every input parsed once: each graph's triples, the rule vocabulary (the one rules
    file that is schema rather than rules), each input's hash and where each data file's
    triples lie in the asserted graph."""

    graphs: dict[str, list[ox.Triple]]
    vocabulary: list[ox.Triple]
    hashes: dict[str, str]
    file_of: _FileOf


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
    with _without_cyclic_gc():
        return _build(root, out_dir, progress, owl_rl_engine, echo, skip)


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """The build makes millions of small pyoxigraph objects, every one tracked by Python's
    cycle collector, whose full passes then walk all of them again and again: at 100k triples
    reading a triple's three terms took four times as long with it on. Triples form no
    cycles (reference counting frees them); the few cycles the libraries make (rdflib graphs,
    owlready2 worlds) are collected once the build is over, failed or not."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build(
    root: Path | None,
    out_dir: Path | None,
    progress: bool,
    owl_rl_engine: str,
    echo: Callable[[str], None],
    skip: Collection[str],
) -> Manifest:
    root = Path(root) if root else project_root()
    directory = build_dir(root, out_dir)
    stages = _Stages(progress, echo)
    with stages.stage("load"):
        loaded = _load(root)
        if not loaded.graphs["ontology"]:
            raise BuildFailed("load", f"no ontology files under {root / 'ontology'}")
        rules = load_rules(loaded.graphs["rules"])
    # HermiT's child comes up (a fresh interpreter, its imports) while the rules run.
    job = None if "hermit" in skip else _HermitJob(directory)
    try:
        return _stages(loaded, rules, directory, job, stages, owl_rl_engine, skip)
    finally:
        if job is not None:
            job.stop()


def _stages(
    loaded: _Loaded,
    rules: list[Rule],
    directory: Path,
    job: _HermitJob | None,
    stages: _Stages,
    owl_rl_engine: str,
    skip: Collection[str],
) -> Manifest:
    """Every stage after the load, HermiT's in `job` (None: skipped)."""
    graph_triples, vocabulary, hashes = loaded.graphs, loaded.vocabulary, loaded.hashes
    progress, echo = stages.progress, stages.echo

    # The rule vocabulary is schema for the nodes rules make; reasoners and shapes need it too.
    schema = graph_triples["ontology"] + vocabulary
    engine = "none" if "owl_rl" in skip else owl_rl_engine
    memo = RuleMemo(directory / CACHE_DIR)
    with _failing_as("rules"):  # a rule with bad SPARQL, or a reasoner crash: fail closed
        result = reason(schema, graph_triples["asserted"], rules, owl_rl_engine=engine, memo=memo)
    stages.timings.update({k: round(v, 3) for k, v in result.timings.items()})
    stages.peaks.update(result.peaks)
    if progress:
        echo(f"[2-3/{len(STAGES)}] OWL RL + rules done: {len(result.inferred)} inferred triples")
    inferred = list(result.inferred)

    full_input: dict[str, str] = {}
    if result.owl_rl_fallback:
        full_input["owl_rl"] = result.owl_rl_fallback
    texts: dict[str, bytes] = {}  # N-Triples of the big graphs, for the write and HermiT
    if job is not None:
        with stages.stage("write"):
            texts = {name: _ntriples(g) for name, g in
                     (("asserted", graph_triples["asserted"]), ("inferred", inferred))}  # fmt: skip
        if progress:
            echo(f"[{STAGES.index('hermit') + 1}/{len(STAGES)}] hermit ... (beside the write)")
        job.start(schema, [texts["asserted"], texts["inferred"]])
    checks = _Checks(stages, graph_triples, schema, loaded.file_of, directory, skip)
    with _Staged(directory) as staged:
        checked, answer = _checked(checks, staged, inferred, job, texts)
        reused = _rules_reused(memo, rules)
        reused += ["hermit"] if answer and answer.result.reused else []
        if answer and answer.full_because:
            full_input["hermit"] = answer.full_because
        with stages.stage("write"):
            manifest = Manifest(
                build_id=checked.build_id,
                artifact=ARTIFACT_NAME,
                triples=checked.counts,
                inputs=hashes,
                code=code_hash(),
                tools=tool_versions(answer.java if answer else None),
                timings={},
                rules=result.per_rule,
                hermit_subclass_links=len(answer.new_links) if answer else 0,
                shacl_findings=checked.findings,
                skipped=sorted(skip),
                full_input={**full_input, **checked.full_input},
                reused=reused + checked.reused,
            )
        manifest.timings = {s: stages.timings.get(s, 0.0) for s in STAGES}
        manifest.peak_rss_mib = {s: stages.peaks.get(s, 0.0) for s in STAGES}
        text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
        staged.write(MANIFEST_NAME, text.encode())
        staged.publish()
    memo.save()
    if answer is not None:
        from service.kb.hermit import save_cache_entry

        save_cache_entry(answer.result)
    for keep in checked.after_write:
        keep()
    return manifest


def _rules_reused(memo: RuleMemo, rules: Sequence[Rule]) -> list[str]:
    """ "rules" when every stratum was replayed from the last build, else "rules:<order>" for
    each one that was."""
    orders = {r.order for r in rules if r.query}
    if orders and set(memo.reused) == orders:
        return ["rules"]
    return [f"rules:{order}" for order in sorted(memo.reused)]


def _checked(
    checks: _Checks,
    staged: _Staged,
    inferred: list[ox.Triple],
    job: _HermitJob | None,
    texts: dict[str, bytes],
) -> tuple[_Checked, _HermitAnswer | None]:
    """The write and SHACL, run while HermiT (`job`) reasons, on the inferred graph without
    its answer, and redone on the final graph when it adds a subclass link (never on the
    shipped or synthetic data): the artifact is the sequential pipeline's. So are failures:
    HermiT's come first, as its stage does. An answer already there is used first.
    `texts`: the N-Triples of graphs as they are now (the write takes them, and frees them)."""
    if job is None:
        return checks.run(staged, inferred, texts), None
    if job.answered():
        answer = _hermit_answer(job, checks.stages)
        if answer.new_links:
            texts.pop("inferred")
        return checks.run(staged, answer.with_links(inferred), texts), answer
    checked = failed = None
    try:
        checked = checks.run(staged, inferred, texts)
    except BuildFailed as err:  # reported only if HermiT passes
        failed = err
    answer = _hermit_answer(job, checks.stages)
    if answer.new_links:
        staged.discard()
        checked, failed = checks.run(staged, answer.with_links(inferred)), None
    if failed is not None:
        raise failed
    assert checked is not None
    return checked, answer


def _hermit_answer(job: _HermitJob, stages: _Stages) -> _HermitAnswer:
    answer = job.answer()
    stages.timings["hermit"] = round(answer.seconds, 3)
    stages.peaks["hermit"] = answer.peak_rss_mib
    if stages.progress:
        stages.echo(f"[{STAGES.index('hermit') + 1}/{len(STAGES)}] hermit done in "
                    f"{answer.seconds:.2f} s")  # fmt: skip
    return answer


@dataclass
class _Checked:
    """What the write and SHACL made of one version of the inferred graph."""

    build_id: str
    counts: dict[str, int]
    findings: dict[str, int]
    full_input: dict[str, str]
    reused: list[str]
    after_write: list[Callable[[], None]]


@dataclass
class _Checks:
    """The write (staged, not yet published) and SHACL, run on a given inferred graph."""

    stages: _Stages
    graph_triples: dict[str, list[ox.Triple]]
    schema: list[ox.Triple]
    file_of: Mapping[str, str]
    directory: Path
    skip: Collection[str]

    def run(
        self, staged: _Staged, inferred: list[ox.Triple], texts: dict[str, bytes] | None = None
    ) -> _Checked:
        with self.stages.stage("write"), _failing_as("write"):
            lines, counts = sorted_lines({**self.graph_triples, "inferred": inferred}, texts)
            digest = hashlib.sha256()
            # Staged before SHACL, which reads it to scope a rebuild; not held in memory
            # through SHACL (at a million triples it is more than a gigabyte).
            path = staged.write(ARTIFACT_NAME, _hashed(_chunks(lines), digest))
            del lines
            build_id = digest.hexdigest()
        checked = _Checked(build_id, counts, {}, {}, [], [])
        if "shacl" not in self.skip:
            artifacts = _Artifacts(self.directory, path, build_id, counts, checked.after_write,
                                   checked.reused)  # fmt: skip
            with self.stages.stage("shacl"), _failing_as("shacl"):
                checked.findings = _validate(
                    self.graph_triples, inferred, self.schema, self.file_of,
                    checked.full_input, artifacts,
                )  # fmt: skip
        return checked


def _load(root: Path) -> _Loaded:
    """Each input read once (its bytes hashed, then parsed straight into triples)."""
    graphs: dict[str, list[ox.Triple]] = {}
    hashes: dict[str, str] = {}
    spans: dict[str, range] = {}
    vocabulary: list[ox.Triple] = []
    try:
        for graph, paths in input_files(root).items():
            triples: list[ox.Triple] = []
            for path in paths:
                data = path.read_bytes()
                shown = _shown(path, root)
                hashes[shown] = hashlib.sha256(data).hexdigest()
                start = len(triples)
                triples += parse_triples(path, data)
                if graph == "asserted":
                    spans[shown] = range(start, len(triples))
                if graph == "rules" and path.name == RULE_VOCABULARY:
                    vocabulary += triples[start:]
            graphs[graph] = triples
    except OSError as err:
        raise BuildFailed("load", f"cannot read {err.filename}: {err.strerror}") from None
    except RDFSyntaxError as err:
        raise BuildFailed("load", f"cannot parse {err}") from None
    return _Loaded(graphs, vocabulary, hashes, _FileOf(graphs["asserted"], spans))


def _shown(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


@contextmanager
def _failing_as(stage: str) -> Iterator[None]:
    """Any crash of a stage fails the build closed, named by its stage (a BuildFailed already
    says which stage and why, so it passes through)."""
    try:
        yield
    except BuildFailed:
        raise
    except Exception as err:
        raise BuildFailed(stage, f"{type(err).__name__}: {err}") from err


_RDFS_SUBCLASS = "http://www.w3.org/2000/01/rdf-schema#subClassOf"
VOCAB = PREFIXES["cmp"]
RDF_TYPE = PREFIXES["rdf"] + "type"
SH_TARGET_CLASS = PREFIXES["sh"] + "targetClass"


@dataclass
class _HermitAnswer:
    """HermiT's verdict on a consistent input, as the child process sends it back."""

    result: HermitResult
    new_links: list[tuple[str, str]]  # (sub, super) not already in the inferred graph
    full_because: str | None  # why the whole input ran, if it did
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    java: str | None = None  # `java -version`, for the manifest (a JVM start: done here)

    def with_links(self, inferred: list[ox.Triple]) -> list[ox.Triple]:
        """The inferred graph with HermiT's new links and their derivation records."""
        if not self.new_links:
            return inferred
        subclass = ox.NamedNode(_RDFS_SUBCLASS)
        links = [ox.Triple(ox.NamedNode(a), subclass, ox.NamedNode(b)) for a, b in self.new_links]
        return [*inferred, *links, *derivation_records(links, HERMIT_RULE)]


def _classify(
    schema: list[ox.Triple],
    asserted: list[ox.Triple],
    inferred: Iterable[ox.Triple],
    cache_dir: Path | None = None,
) -> _HermitAnswer:
    """HermiT consistency + classification on the ontology plus the instance types it needs:
    the subclass links it finds that the inferred graph lacks, and why the full input ran."""
    from service.kb.hermit import JavaNotFoundError, run_hermit_summarized

    # One pass: the logical statements HermiT sees, and the subclass links already inferred
    # (a set of every inferred triple cost seconds at a million).
    subclass = ox.NamedNode(_RDFS_SUBCLASS)
    logical: list[ox.Triple] = []
    known: set[tuple[str, str]] = set()
    for t in inferred:
        if not is_provenance(t):
            logical.append(t)
            if t.predicate == subclass:
                known.add((t.subject.value, t.object.value))  # type: ignore[union-attr]
    try:
        hermit, full_because = run_hermit_summarized(schema, asserted + logical, cache_dir)
    except JavaNotFoundError as err:
        raise BuildFailed("hermit", str(err)) from None
    if not hermit.consistent or hermit.unsatisfiable:
        raise BuildFailed("hermit", hermit.explanation)
    new = [pair for pair in hermit.inferred_subclass_of if tuple(pair) not in known]
    return _HermitAnswer(hermit, new, full_because)


class _HermitJob:
    """The HermiT stage (summary, cache look-up, JVM) in a child process, so that it takes
    the second core while this process writes and checks the artifact.

    The child is a fresh interpreter (spawned, not forked: a forked child's pages, shared
    copy-on-write, are copied as soon as either side writes them, and this process writes
    to every triple it reads, so at a million triples a fork cost 2.6 GB more). It starts
    with the build, so that its interpreter comes up while the rules run, then gets the
    graphs as N-Triples files and sends back only its answer. Stopped early
    (a failure here, SIGTERM, Ctrl-C) it is sent SIGTERM and unwinds: the JVM is killed and
    HermiT's temporary directory removed. A build killed by SIGKILL sends it SIGTERM too
    (the kernel does, on Linux), and it then also removes the artifact the build had staged
    in `directory`. Where no process can be started it runs in this one."""

    def __init__(self, directory: Path) -> None:
        """Start the child, which waits for its input (start) once its interpreter is up."""
        from service.kb.hermit import TEMP_PREFIX

        self._inline: _HermitAnswer | BuildFailed | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._cache = directory / CACHE_DIR
        self._inputs = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        if "spawn" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        request, self._request = context.Pipe(duplex=False)
        import owlready2

        java = owlready2.JAVA_EXE  # as configured here (a fresh interpreter has the default)
        self._process = context.Process(
            target=_hermit_child,
            args=(send, request, os.getpid(), directory, java, self._inputs),
            daemon=True,
        )
        self._process.start()
        send.close()  # only the child writes: its end closing is how a crash shows
        request.close()

    def start(self, schema: list[ox.Triple], texts: list[bytes]) -> None:
        """Hand the child the schema and the asserted and inferred graphs' N-Triples.

        As files it parses as it reads them: handed over in memory they were, at a million
        triples, 1.4 GB more in the child and 0.7 GB here."""
        inputs = [self._inputs / f"{name}.nt" for name in ("schema", "asserted", "inferred")]
        try:
            for path, text in zip(inputs, [_ntriples(schema), *texts], strict=True):
                path.write_bytes(text)
        except OSError as err:
            raise BuildFailed("hermit", f"cannot write HermiT's input: {err}") from None
        if self._process is None:
            self._inline = _answer_or_failure(inputs, self._cache)
        else:
            with suppress(OSError):  # the child is gone already: answer() says how it ended
                self._request.send((inputs, self._cache))

    def answered(self) -> bool:
        """Whether the answer is there already (always, in this process)."""
        return self._process is None or self._receive.poll()

    def answer(self) -> _HermitAnswer:
        """HermiT's answer; raises BuildFailed (stage "hermit") as the stage itself would."""
        got: _HermitAnswer | BuildFailed | None = self._inline
        if self._process is not None:
            try:
                kind, payload = self._receive.recv()
            except EOFError:
                self._process.join()
                raise BuildFailed(
                    "hermit",
                    f"HermiT's process ended without an answer (exit code "
                    f"{self._process.exitcode})",
                ) from None
            self._process.join()
            got = payload if kind == "answer" else BuildFailed(*payload)
        if isinstance(got, BuildFailed):
            raise got
        assert got is not None
        return got

    def stop(self) -> None:
        """End the child if it still runs (the build stopped before it answered)."""
        shutil.rmtree(self._inputs, ignore_errors=True)
        process = self._process
        if process is None:
            return
        self._request.close()  # a child still waiting for its input then ends by itself
        if process.is_alive():
            process.terminate()
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        self._receive.close()


def _answer_or_failure(inputs: list[Path], cache_dir: Path) -> _HermitAnswer | BuildFailed:
    """HermiT's answer on the schema, asserted and inferred graphs given as N-Triples files.

    Only the inferred graph's logical lines are parsed (see _logical_lines)."""
    started = time.perf_counter()
    peak_rss_mib()
    try:
        schema = parse_triples(inputs[0])
        asserted = parse_triples(inputs[1])
        inferred = stream_triples(inputs[2], _logical_lines(inputs[2]))
        answer = _classify(schema, asserted, inferred, cache_dir)
    except BuildFailed as err:
        return err
    except Exception as err:  # e.g. a crashed JVM: named by its stage, as _failing_as does
        return BuildFailed("hermit", f"{type(err).__name__}: {err}")
    answer.seconds = time.perf_counter() - started
    answer.peak_rss_mib = peak_rss_mib()
    answer.java = _java_version()
    return answer


def _logical_lines(path: Path) -> bytes:
    """The N-Triples file's statements that are not provenance (is_provenance, read off each
    line: a derivation record's subject, or a PROV predicate after the subject, which holds no
    space). HermiT ignores provenance, two thirds of the inferred graph at 100k; parsing it
    only to drop it was most of the child's time when HermiT's answer is reused."""
    record, prov = f"<{DERIVATION_NS}".encode(), f"<{PREFIXES['prov']}".encode()
    kept: list[bytes] = []
    with path.open("rb") as lines:
        for line in lines:
            if not line.startswith(record) and not line.startswith(prov, line.find(b" ") + 1):
                kept.append(line)
    return b"".join(kept)


def _hermit_child(
    send: Connection,
    request: Connection,
    parent: int,
    directory: Path,
    java: str,
    inputs_dir: Path,
) -> None:
    """The child's whole life: its input awaited, HermiT's answer (or failure) sent back once."""
    import signal

    import owlready2

    owlready2.JAVA_EXE = java
    from service.kb.hermit import die_with_parent, remove_running_temporaries

    def _orphaned() -> None:
        if os.getppid() != parent:  # the build was killed: nobody waits for an answer
            remove_stale_staged(directory, ending=parent)
            remove_running_temporaries()
            shutil.rmtree(inputs_dir, ignore_errors=True)
            os._exit(1)  # and HermiT's JVM dies with this process

    def _stop(signum: int, frame: object) -> None:
        _orphaned()
        raise SystemExit(128 + signum)  # unwinds: the JVM killed, temporaries removed

    signal.signal(signal.SIGTERM, _stop)
    if sys.platform.startswith("linux"):
        # SIGTERM, not SIGKILL, when the build dies: this child then cleans up after both.
        die_with_parent(parent, signal.SIGTERM)
    try:
        inputs, cache_dir = request.recv()
    except EOFError:  # the build ended (or was killed) before its HermiT stage
        _orphaned()
        return
    got = _answer_or_failure(inputs, cache_dir)
    if isinstance(got, BuildFailed):
        send.send(("failed", (got.stage, got.report)))
    else:
        send.send(("answer", got))
    send.close()


@dataclass
class _Artifacts:
    """The artifact this build is about to publish (staged), where the served one lies, what
    to do once the new one is in place and the list of stages answered from the last build."""

    directory: Path
    staged: Path
    build_id: str
    counts: dict[str, int]  # lines per graph
    after_write: list[Callable[[], None]]
    reused: list[str]


def _validate(
    graph_triples: dict[str, list[ox.Triple]],
    inferred: list[ox.Triple],
    schema: list[ox.Triple],
    file_of: Mapping[str, str],
    full_input: dict[str, str],
    artifacts: _Artifacts | None = None,
) -> dict[str, int]:
    """SHACL on asserted + inferred (the ontology and rule vocabulary as schema): the count of
    findings per severity; `full_input["shacl"]` says why part of it ran through the engine.
    With `artifacts`, only what changed since the served artifact is checked when that is
    sound (service.kb.rebuild says when; "shacl" then joins `reused`), and the whole-graph
    report is kept for the next build once the new artifact is in place."""
    from service.kb import rebuild
    from service.kb.validation import validate_graphs

    kept_inferred = _without_records(graph_triples["asserted"], inferred, graph_triples["shapes"])
    records_left_out = kept_inferred is not inferred
    key = rebuild.report_key(code_hash())
    previous = changed = None
    if artifacts is not None:
        served = artifacts.directory / ARTIFACT_NAME
        previous = rebuild.load_report(artifacts.directory / CACHE_DIR, served, key)
        if previous is not None and previous.records_left_out == records_left_out:
            data_graphs = (GRAPHS["asserted"], GRAPHS["inferred"])
            lines = sum(artifacts.counts.values())
            changed = rebuild.changed_subjects(served, artifacts.staged, lines, data_graphs)
    report = validate_graphs(
        data=graph_triples["asserted"] + kept_inferred,
        ontology=schema,
        shapes=graph_triples["shapes"],
        file_of=file_of,
        reasoner=False,
        changed=changed,
    )
    if previous is not None and report.scope is not None:
        report = report.carry_over(previous.report, file_of)
        assert artifacts is not None
        artifacts.reused.append("shacl")
    if not report.conforms:
        raise BuildFailed("shacl", report.render("text"))
    if report.engine_fallback:
        full_input["shacl"] = report.engine_fallback
    if artifacts is not None:
        cache, build_id = artifacts.directory / CACHE_DIR, artifacts.build_id
        artifacts.after_write.append(
            lambda: rebuild.save_report(cache, build_id, key, report, records_left_out)
        )
    return {s: report.count(s) for s in ("Violation", "Warning", "Info")}


def _without_records(
    asserted: list[ox.Triple], inferred: list[ox.Triple], shapes: list[ox.Triple]
) -> list[ox.Triple]:
    """The inferred triples SHACL needs: derivation records left out when they can change no
    finding, which holds when no shape names their vocabulary, no record has a type a shape
    targets, and no statement points at a record (so no path from a focus node reaches one).
    At 100k they are most of the inferred graph and no shipped shape reads them."""
    from service.kb.reasoning import DERIVATION_NS

    vocabulary = (DERIVATION_NS, VOCAB + "Derivation", VOCAB + "derivedSubject",
                  VOCAB + "derivedProperty")  # fmt: skip
    named = {n.value for t in shapes for n in (t.subject, t.predicate, t.object)
             if isinstance(n, ox.NamedNode)}  # fmt: skip
    # SPARQL-based constraints are text: any mention of the records' terms (prefixed or not)
    # or of PROV, which a query could follow from anywhere, keeps the records in.
    in_text = ("Derivation", "derivedSubject", "derivedProperty", "derivation/", "prov:",
               PREFIXES["prov"])  # fmt: skip
    if any(v in name for v in vocabulary for name in named) or any(
        isinstance(t.object, ox.Literal) and any(v in t.object.value for v in in_text)
        for t in shapes
    ):
        return inferred
    targets = {t.object for t in shapes if t.predicate.value == SH_TARGET_CLASS}
    # One pass over each graph (at 100k the inferred one is 600k triples, mostly records),
    # `record` written out: each term is read once, and rdf:type compared only for records.
    iri, rdf_type = ox.NamedNode, ox.NamedNode(RDF_TYPE)
    for t in asserted:
        o = t.object
        if type(o) is iri and o.value.startswith(DERIVATION_NS):
            return inferred
    kept: list[ox.Triple] = []
    keep = kept.append
    for t in inferred:
        o = t.object
        if type(o) is iri and o.value.startswith(DERIVATION_NS):
            return inferred
        s = t.subject
        if type(s) is not iri or not s.value.startswith(DERIVATION_NS):
            keep(t)
        elif o in targets and t.predicate == rdf_type:
            return inferred
    return kept


def serialize(by_graph: Mapping[str, Sequence[ox.Triple]]) -> tuple[bytes, dict[str, int]]:
    """Sorted N-Quads with canonical blank-node labels, and the triple count of each graph."""
    lines, counts = sorted_lines(by_graph)
    return b"".join(_chunks(lines)), counts


def _chunks(lines: list[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    """The artifact's bytes a few megabytes at a time (whole, at a million triples, they are
    most of a gigabyte more at the build's peak)."""
    for start in range(0, len(lines), size):
        yield b"\n".join(lines[start : start + size]) + b"\n"


def sorted_lines(
    by_graph: Mapping[str, Sequence[ox.Triple]], texts: dict[str, bytes] | None = None
) -> tuple[list[bytes], dict[str, int]]:
    """The artifact's lines (without their newline) and the triple count of each graph;
    `texts` has some graphs' N-Triples already (taken from it, so they are freed once used).

    pyoxigraph writes each graph as N-Triples (its statement form is the N-Quads line's, so
    the bytes are those of `f"{quad} ."`); the lines get their graph name, and are made unique
    and sorted as bytes (UTF-8 keeps the code point order): no Python term object per line."""
    lines: list[bytes] = []
    with_blanks = ox.Dataset()
    counts: dict[str, int] = {}
    for name in GRAPH_NAMES:
        graph = GRAPHS[name]
        triples = by_graph.get(name, [])
        text = texts.pop(name) if texts and name in texts else _ntriples(triples)
        blank: set[ox.Triple] = set()
        if b"_:" in text:  # a blank node, or those two characters inside a literal
            blank = {t for t in triples if _mentions_blank(t)}
            for t in blank:
                with_blanks.add(ox.Quad(t.subject, t.predicate, t.object, graph))
            plain = [t for t in triples if not _mentions_blank(t)]
            text = _ntriples(plain)
        # A statement ends in " .\n" and nowhere else (N-Triples escapes a literal's newline).
        text = text.replace(b" .\n", f" {graph} .\n".encode())  # the old text freed at once
        named = text.split(b"\n")
        del text
        named.pop()  # after the last newline
        # Sorted in the order the triples came (runs of one subject, one rule): far fewer
        # comparisons than the scrambled order of a set, and the repeats end up side by side.
        named.sort()
        unique = named[:1] + [line for before, line in pairwise(named) if line != before]
        counts[name] = len(unique) + len(blank)
        lines += unique
    # Blank nodes (OWL lists, SHACL property shapes) get fresh ids on every parse; RDFC-1.0
    # relabels them from the graph's content, which is what makes two builds byte-identical.
    # Its labels depend only on the quads that mention a blank node, so only those are
    # canonicalised (the whole dataset took most of the write stage at 100k triples).
    with_blanks.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    lines += [f"{q} .".encode() for q in with_blanks]
    # No line is a prefix of another (each ends with its graph and " ."), so sorting without
    # the newline gives the order of sorting with it. The graphs are sorted runs already:
    # this sort merges them.
    lines.sort()
    return lines, counts


def _hashed(chunks: Iterable[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _ntriples(triples: Iterable[ox.Triple]) -> bytes:
    data = ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES)
    assert data is not None  # only an output file makes pyoxigraph return None
    return data


def _mentions_blank(t: ox.Triple) -> bool:
    return isinstance(t.subject, ox.BlankNode) or isinstance(t.object, ox.BlankNode)


def _temp_prefix(name: str, pid: int | None = None) -> str:
    # The writer's pid is in the name, so a later build can tell an abandoned file from one
    # a concurrent build is still writing.
    return f".{name}.{os.getpid() if pid is None else pid}."


def remove_stale_staged(directory: Path, ending: int | None = None) -> list[Path]:
    """Staged files of builds that died before renaming them (SIGKILL, power loss), and of
    the build `ending` names (known dead: a zombie not yet reaped still looks alive)."""
    from service.kb.hermit import pid_alive

    removed = []
    for name in (ARTIFACT_NAME, MANIFEST_NAME):
        for path in directory.glob(f".{name}.*.tmp"):
            pid = path.name[len(name) + 2 :].split(".", 1)[0]
            if pid.isdigit() and (int(pid) == ending or not pid_alive(int(pid))):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


class _Staged:
    """The artifact and its manifest written beside the served ones under temporary names,
    then renamed into place together; on any failure before that (a full disk, a read-only
    directory, a later stage failing) nothing is left behind and the served build stays."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[tuple[Path, Path]] = []  # (staged, final), the artifact first

    def write(self, name: str, payload: bytes | Iterable[bytes]) -> Path:
        try:
            if not self.files:
                self.directory.mkdir(parents=True, exist_ok=True)
                remove_stale_staged(self.directory)
            fd, tmp_name = tempfile.mkstemp(
                prefix=_temp_prefix(name), suffix=".tmp", dir=self.directory
            )
            # Recorded before writing: removed on failure.
            self.files.append((Path(tmp_name), self.directory / name))
            with os.fdopen(fd, "wb") as handle:
                # Made durable by publish(): written back meanwhile.
                for chunk in [payload] if isinstance(payload, bytes) else payload:
                    handle.write(chunk)
            os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; the artifact is meant to be served
        except OSError as err:
            raise self._failed(err) from None
        return Path(tmp_name)

    def discard(self) -> None:
        """Remove what was staged so far (to stage it again)."""
        for tmp, _final in self.files:
            tmp.unlink(missing_ok=True)
        self.files.clear()

    def publish(self) -> None:
        try:
            # On disk before any is renamed: a crash then leaves the old build or the whole
            # new one. Synced here, not when written, the artifact's pages were being written
            # back while SHACL ran.
            for tmp, _final in self.files:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            # Artifact first: a reader that sees a new manifest always finds its artifact.
            for tmp, final in self.files:
                os.replace(tmp, final)
        except OSError as err:
            raise self._failed(err) from None

    def _failed(self, err: OSError) -> BuildFailed:
        where = err.filename or self.directory
        return BuildFailed(
            "write",
            f"cannot write the artifact to {self.directory}: {err.strerror or err} ({where}). "
            "Nothing was replaced; free some space or choose a writable --out-dir.",
        )

    def __enter__(self) -> _Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
