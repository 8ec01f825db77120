"""What a rebuild takes from the last good build: its SHACL report, scoped to what changed.

Why skipping is sound. The artifact holds every graph SHACL reads, in one canonical form
(sorted N-Quads, blank nodes canonicalised): the data (asserted + inferred), the schema
(ontology + the rule vocabulary in the rules graph) and the shapes. SHACL's input in a build
is a function of those graphs alone (plus the code, the engine and its versions, which are the
report's key), so the lines in which the new artifact differs from the last one are exactly
the statements added to or removed from SHACL's input, and their subjects are the `changed`
nodes `validate_graphs(changed=...)` needs for its guarantee (its findings on the scope are
the whole run's, and the last report supplies the rest; tested against the whole run).
Whenever that argument does not hold the build checks everything instead:

- a differing line outside the asserted and inferred graphs (a schema or shapes edit: every
  focus node may change), or one with a blank node (its canonical label says nothing about
  which node it was, so its subject cannot be named);
- a kept report whose key (code, engine, tool versions) or artifact hash does not match the
  artifact being served, or that cannot be read (missing, truncated, not JSON);
- a kept report with a finding on a blank node (its label is not stable between parses);
- a different decision on leaving the derivation records out of SHACL's input (they would
  join or leave the input without their own lines changing);
- too many differing lines for a scoped run to pay (speed only).

The report is written only after the new artifact is in place (a failed build leaves the
last good one's report, which still matches the served artifact), so by induction every kept
report is the whole-graph report of the artifact it names.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pyoxigraph as ox
import rdflib
from rdflib.util import from_n3

from service.kb.validation import Finding, ValidationReport, shacl_engine

SHACL_REPORT = "shacl-report.json"
MAX_CHANGED_SHARE = 0.05  # more differing lines than this: the whole run is as quick


@dataclass
class KeptReport:
    report: ValidationReport
    artifact: Path  # the served artifact it is the report of (hash checked)
    records_left_out: bool


def report_key(code: str) -> str:
    """What else decides SHACL's findings besides the artifact's graphs."""
    versions = {}
    for name in ("pyoxigraph", "rdflib", "pyshacl", "pyshacl-turbo"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return json.dumps({"code": code, "engine": shacl_engine(), "versions": versions})


def save_report(
    cache_dir: Path, build_id: str, key: str, report: ValidationReport, records_left_out: bool
) -> None:
    """Keep the whole-graph report of the artifact just written (best effort: a report that
    cannot be written only costs the next rebuild its scoped SHACL run)."""
    payload = {
        "artifact": build_id,
        "key": key,
        "records_left_out": records_left_out,
        "findings": [
            {**f.as_dict(), "value_term": None if f.value_term is None else f.value_term.n3()}
            for f in report.findings
        ],
    }
    path = cache_dir / SHACL_REPORT
    tmp = path.with_suffix(".tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)


def load_report(cache_dir: Path, artifact: Path, key: str) -> KeptReport | None:
    """The kept report if it is the whole-graph report of `artifact` under `key`, else None."""
    try:
        saved = json.loads((cache_dir / SHACL_REPORT).read_text(encoding="utf-8"))
        if saved["key"] != key or saved["artifact"] != _sha256(artifact):
            return None
        findings = [_finding(item) for item in saved["findings"]]
        records_left_out = bool(saved["records_left_out"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(f.focus_node.startswith("_:") for f in findings):
        return None
    return KeptReport(ValidationReport(findings=findings), artifact, records_left_out)


def _finding(item: Mapping) -> Finding:
    term = item.get("value_term")
    value_term = from_n3(term) if isinstance(term, str) else None
    if value_term is not None and not isinstance(value_term, rdflib.term.Node):
        raise ValueError(f"not an RDF term: {term!r}")
    return Finding(**{**item, "value_term": value_term})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def changed_subjects(
    old_artifact: Path, new_artifact: Path, new_lines: int, data_graphs: Collection[ox.NamedNode]
) -> set[ox.NamedNode] | None:
    """The subjects of the lines in which two artifacts (sorted N-Quads) differ, or None when
    a scoped check would not be sound or not pay (see the module docstring). Both are read
    through the page cache: at a million triples an artifact is more than a gigabyte."""
    suffixes = tuple(f" {g} .".encode() for g in data_graphs)
    with _mapped(old_artifact) as old, _mapped(new_artifact) as new:
        lines = sorted_line_diff(old, new, int(MAX_CHANGED_SHARE * new_lines) + 1)
    if lines is None:
        return None
    subjects: set[ox.NamedNode] = set()
    for line in lines:
        if not line.endswith(suffixes) or b"_:" in line or not line.startswith(b"<"):
            return None
        subjects.add(ox.NamedNode(line[1 : line.index(b"> ")].decode("utf-8")))
    return subjects


@contextmanager
def _mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    with path.open("rb") as handle:
        if path.stat().st_size == 0:  # mmap cannot map an empty file
            yield b""
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


Text = bytes | mmap.mmap


def sorted_line_diff(old: Text, new: Text, limit: int) -> list[bytes] | None:
    """The lines in only one of two sorted texts of unique newline-ended lines, or None past
    `limit` of them. The runs both share are skipped by comparing ever longer slices (then
    ever shorter ones up to the first difference), so a one-claim edit of a million-line
    artifact costs a few hundred comparisons of memory."""
    i = j = 0
    differing: list[bytes] = []
    while True:
        shared = _shared_prefix(old, i, new, j)
        if shared:
            cut = old.rfind(b"\n", i, i + shared)  # back to the start of a line
            if cut >= 0:
                step = cut + 1 - i
                i, j = i + step, j + step
        old_end = old.find(b"\n", i) if i < len(old) else -1
        new_end = new.find(b"\n", j) if j < len(new) else -1
        if old_end < 0 and new_end < 0:
            return differing
        old_line = old[i:old_end] if old_end >= 0 else None
        new_line = new[j:new_end] if new_end >= 0 else None
        if new_line is None or (old_line is not None and old_line < new_line):
            differing.append(old_line)  # type: ignore[arg-type]
            i = old_end + 1
        else:
            differing.append(new_line)
            j = new_end + 1
        if len(differing) > limit:
            return None


MAX_STEP = 1 << 24  # bytes compared at once: slices are copies


def _shared_prefix(old: Text, i: int, new: Text, j: int) -> int:
    """How many bytes old[i:] and new[j:] share from the start."""
    room = min(len(old) - i, len(new) - j)
    shared, step = 0, 4096
    while True:  # growing steps while the runs agree
        size = min(step, room - shared)
        if size <= 0:
            return shared
        if old[i + shared : i + shared + size] != new[j + shared : j + shared + size]:
            break
        shared += size
        step = min(2 * step, MAX_STEP)
    while size > 1:  # the first difference lies within the next `size` bytes
        half = size // 2
        if old[i + shared : i + shared + half] == new[j + shared : j + shared + half]:
            shared += half
            size -= half
        else:
            size = half
    return shared  # the byte at `shared` differs
