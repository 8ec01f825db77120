"""Validation of the knowledge base: SHACL shapes plus OWL DL consistency (HermiT).

SHACL runs on pyshacl-turbo (pySHACL-compatible, Rust) by default, pySHACL on request. One report
type for both checks, rendered as text for curators, JSON for tools, or Turtle as a
standard sh:ValidationReport.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import pyshacl_turbo
import rdflib
from rdflib.namespace import RDF, RDFS, SH

from service.kb.hermit import (
    Clash,
    HermitError,
    HermitResult,
    JavaNotFoundError,
    describe_clash,
    describe_literal_clash,
    run_hermit,
)
from service.kb.sources import (
    PREFIXES,
    knowledge_files,
    parse_file,
    project_root,
    to_rdflib_graph,
)

SHAPE_NS = "https://w3id.org/cmpkg/shape/"
ONTOLOGY_IRI = "https://w3id.org/cmpkg/ontology"
SEVERITIES = ("Violation", "Warning", "Info")
_DISPLAY_PREFIXES = {**PREFIXES, "shape": SHAPE_NS}

Statement = ox.Triple | ox.Quad
ENGINES = {"turbo": pyshacl_turbo.validate, "pyshacl": pyshacl.validate}


@dataclass
class Finding:
    severity: str  # "Violation" | "Warning" | "Info"
    focus_node: str
    focus_label: str | None
    path: str | None
    value: str | None
    message: str
    shape: str | None
    constraint: str | None  # the rule: shape IRI + constraint component
    file: str | None  # the file (relative to the repo) where the focus node is described
    check: str  # "shacl" | "owl" | "syntax"
    # The value as an RDF term, so the Turtle report can keep literals typed; not part of JSON.
    value_term: rdflib.term.Node | None = field(default=None, repr=False, compare=False)

    def sort_key(self) -> tuple:
        return (
            self.file or "~",
            self.focus_node,
            self.path or "",
            SEVERITIES.index(self.severity) if self.severity in SEVERITIES else 9,
            self.message,
            self.value or "",
            self.shape or "",
        )

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("value_term")
        return data


@dataclass
class ValidationReport:
    findings: list[Finding]
    hermit: HermitResult | None = field(default=None, repr=False)

    @property
    def conforms(self) -> bool:
        return not any(f.severity == "Violation" for f in self.findings)

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def exit_code(self, strict: bool = False) -> int:
        if not self.conforms:
            return 1
        if strict and any(f.severity in ("Warning", "Info") for f in self.findings):
            return 1
        return 0

    def render(self, fmt: str) -> str:
        if fmt == "text":
            return render_text(self)
        if fmt == "json":
            return render_json(self)
        if fmt == "turtle":
            return render_turtle(self)
        raise ValueError(f"unknown report format {fmt!r} (use text, json or turtle)")


# --- display helpers ---------------------------------------------------------------------------
def short(iri: str | None) -> str | None:
    """A prefixed name for project IRIs, so reports read like the Turtle curators write."""
    if iri is None:
        return None
    if iri.startswith("_:"):
        return iri
    for prefix, ns in sorted(_DISPLAY_PREFIXES.items(), key=lambda kv: -len(kv[1])):
        if iri.startswith(ns) and "/" not in iri[len(ns) :] and "#" not in iri[len(ns) :]:
            return f"{prefix}:{iri[len(ns) :]}"
    return f"<{iri}>"


def _term_text(term: rdflib.term.Node | None) -> str | None:
    if term is None:
        return None
    if isinstance(term, rdflib.URIRef):
        return str(term)
    if isinstance(term, rdflib.Literal):
        return str(term)
    return f"_:{term}"


def _display_value(f: Finding) -> str:
    if isinstance(f.value_term, rdflib.URIRef):
        return short(str(f.value_term)) or ""
    if isinstance(f.value_term, rdflib.Literal):
        dt = f.value_term.datatype
        if dt is not None and str(dt) == PREFIXES["xsd"] + "string":
            return json.dumps(str(f.value_term), ensure_ascii=False)
        if f.value_term.language:
            return json.dumps(str(f.value_term), ensure_ascii=False) + "@" + f.value_term.language
    return f.value or ""


def render_text(report: ValidationReport) -> str:
    lines: list[str] = []
    last_head = None
    for f in report.findings:
        if f.check == "syntax":
            lines.append(f"{f.file}: [{f.severity}] {f.message}")
            continue
        node = short(f.focus_node)
        head = f"{f.file or '(no file)'}: {node}" + (f" ({f.focus_label})" if f.focus_label else "")
        if head != last_head:
            lines.append(head)
            last_head = head
        where = short(f.path) if f.path else "(node)"
        if f.value is not None:
            where += f" = {_display_value(f)}"
        rule = ", ".join(short(x) or "" for x in (f.shape, f.constraint) if x)
        lines.append(f"  {where}: [{f.severity}] {f.message}" + (f" ({rule})" if rule else ""))
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


def _summary(report: ValidationReport) -> str:
    parts = [
        f"{report.count('Violation')} violation(s)",
        f"{report.count('Warning')} warning(s)",
    ]
    if report.count("Info"):
        parts.append(f"{report.count('Info')} info")
    owl = "not run"
    if report.hermit is not None:
        owl = "consistent" if report.hermit.consistent else "INCONSISTENT"
        owl += f" (HermiT, {report.hermit.seconds:.1f} s)"
    if any(f.check == "syntax" for f in report.findings):
        return "NOT checked: a file could not be read (fix it, then validate again)"
    verdict = "valid" if report.conforms else "NOT valid"
    return f"{verdict}: " + ", ".join(parts) + f"; OWL DL: {owl}"


def render_json(report: ValidationReport) -> str:
    payload = {
        "conforms": report.conforms,
        "violations": report.count("Violation"),
        "warnings": report.count("Warning"),
        "owl_consistent": None if report.hermit is None else report.hermit.consistent,
        "findings": [f.as_dict() for f in report.findings],
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def render_turtle(report: ValidationReport) -> str:
    g = rdflib.Graph()
    g.bind("sh", SH)
    for prefix, ns in _DISPLAY_PREFIXES.items():
        g.bind(prefix, ns, override=True)
    root = rdflib.URIRef("urn:cmpkg:validation-report")
    g.add((root, RDF.type, SH.ValidationReport))
    g.add((root, SH.conforms, rdflib.Literal(report.conforms)))
    for i, f in enumerate(report.findings, start=1):
        # Numbered IRIs rather than blank nodes keep the output stable between runs.
        r = rdflib.URIRef(f"urn:cmpkg:validation-report:result-{i:04d}")
        g.add((root, SH.result, r))
        g.add((r, RDF.type, SH.ValidationResult))
        g.add((r, SH.focusNode, rdflib.URIRef(f.focus_node)))
        g.add((r, SH.resultSeverity, SH[f.severity]))
        g.add((r, SH.resultMessage, rdflib.Literal(f.message, lang="en")))
        if f.path:
            g.add((r, SH.resultPath, rdflib.URIRef(f.path)))
        if f.value_term is not None:
            g.add((r, SH.value, f.value_term))
        elif f.value is not None:
            g.add((r, SH.value, rdflib.Literal(f.value)))
        if f.shape:
            g.add((r, SH.sourceShape, rdflib.URIRef(f.shape)))
        if f.constraint and f.constraint.startswith(("http://", "https://")):
            g.add((r, SH.sourceConstraintComponent, rdflib.URIRef(f.constraint)))
        if f.file:
            g.add((r, RDFS.seeAlso, rdflib.Literal(f.file)))
    return g.serialize(format="turtle")


# --- SHACL -------------------------------------------------------------------------------------
def shacl_engine() -> str:
    """pyshacl-turbo by default (tests prove its report identical to pySHACL's on every fixture,
    at a fraction of the time); CMPKG_SHACL_ENGINE=pyshacl selects the reference engine."""
    engine = os.environ.get("CMPKG_SHACL_ENGINE", "turbo")
    if engine not in ENGINES:
        raise ValueError(f"CMPKG_SHACL_ENGINE must be one of {sorted(ENGINES)}, not {engine!r}")
    return engine


def run_shacl(
    data_graph: rdflib.Graph, shapes_graph: rdflib.Graph, engine: str | None = None
) -> rdflib.Graph:
    """The SHACL results graph. Types are asserted in the data, so no inference: RDFS
    inference would also type every punned term through domains/ranges and inflate reports."""
    validate = ENGINES[engine or shacl_engine()]
    _conforms, results, _text = validate(
        data_graph,
        shacl_graph=shapes_graph,
        inference="none",
        advanced=False,
        allow_warnings=False,
        abort_on_first=False,
    )
    if not isinstance(results, rdflib.Graph):  # a failure object, e.g. an unsupported shape
        raise RuntimeError(f"SHACL engine could not run the shapes: {results}")
    return results


def _shacl_findings(
    results: rdflib.Graph, data_graph: rdflib.Graph, file_of: Mapping[str, str]
) -> list[Finding]:
    findings: list[Finding] = []
    for r in results.objects(None, SH.result):
        focus = results.value(r, SH.focusNode)
        path = results.value(r, SH.resultPath)
        value = results.value(r, SH.value)
        severity = results.value(r, SH.resultSeverity)
        # A SPARQL-based rule has its own IRI (sh:sourceConstraint): more telling than the
        # node shape that holds it.
        shape = results.value(r, SH.sourceConstraint) or results.value(r, SH.sourceShape)
        if value == focus:
            value = None  # SPARQL rules without ?value echo the focus node, which says nothing
        messages = sorted(str(m) for m in results.objects(r, SH.resultMessage))
        findings.append(
            Finding(
                severity=str(severity).rsplit("#", 1)[-1] if severity else "Violation",
                focus_node=_term_text(focus) or "",
                focus_label=_label(data_graph, focus),
                path=str(path) if isinstance(path, rdflib.URIRef) else None,
                value=_term_text(value),
                message=messages[0] if messages else "Constraint not met.",
                shape=str(shape) if isinstance(shape, rdflib.URIRef) else None,
                constraint=_term_text(results.value(r, SH.sourceConstraintComponent)),
                file=file_of.get(_term_text(focus) or ""),
                check="shacl",
                value_term=value,
            )
        )
    return findings


def _label(graph: rdflib.Graph, node: rdflib.term.Node | None) -> str | None:
    if node is None:
        return None
    labels = sorted(str(x) for x in graph.objects(node, RDFS.label))
    return labels[0] if labels else None


# --- OWL ---------------------------------------------------------------------------------------
def _owl_findings(
    result: HermitResult, data_graph: rdflib.Graph, file_of: Mapping[str, str]
) -> list[Finding]:
    findings: list[Finding] = []
    for clash in result.clashes:
        findings.append(_clash_finding(clash, data_graph, file_of))
    for lit in result.literal_clashes:
        findings.append(
            Finding(
                severity="Violation",
                focus_node=lit.subject,
                focus_label=_label(data_graph, rdflib.URIRef(lit.subject)),
                path=lit.prop,
                value=lit.value,
                message="HermiT: the knowledge base is inconsistent. "
                + describe_literal_clash(lit),
                shape=None,
                constraint=PREFIXES["rdfs"] + "range",
                file=file_of.get(lit.subject),
                check="owl",
                value_term=rdflib.Literal(lit.value, datatype=rdflib.URIRef(lit.datatype))
                if lit.datatype != PREFIXES["rdf"] + "langString"
                else None,
            )
        )
    if not result.consistent and not result.clashes and not result.literal_clashes:
        findings.append(_ontology_finding("HermiT: " + result.explanation, file_of))
    for cls in result.unsatisfiable:
        findings.append(
            Finding(
                severity="Violation",
                focus_node=cls,
                focus_label=_label(data_graph, rdflib.URIRef(cls)),
                path=None,
                value=None,
                message="HermiT: this class can have no members (it is unsatisfiable): check "
                "its superclasses and disjointness axioms.",
                shape=None,
                constraint=None,
                file=file_of.get(cls),
                check="owl",
            )
        )
    return findings


def _ontology_finding(message: str, file_of: Mapping[str, str]) -> Finding:
    """An OWL finding about the knowledge base as a whole, not one node."""
    return Finding(
        severity="Violation",
        focus_node=ONTOLOGY_IRI,
        focus_label=None,
        path=None,
        value=None,
        message=message,
        shape=None,
        constraint=None,
        file=file_of.get(ONTOLOGY_IRI),
        check="owl",
    )


def _clash_finding(clash: Clash, data_graph: rdflib.Graph, file_of: Mapping[str, str]) -> Finding:
    kind, other, prop = clash.via_b
    # The curator fixes the statement that uses the node wrongly, so point at that statement.
    focus = other if kind == "range" and other else clash.node
    return Finding(
        severity="Violation",
        focus_node=focus,
        focus_label=_label(data_graph, rdflib.URIRef(focus)),
        path=prop if kind in ("range", "domain") else None,
        value=clash.node if focus != clash.node else None,
        message=f"HermiT: the knowledge base is inconsistent. {describe_clash(clash)}",
        shape=None,
        constraint=PREFIXES["owl"] + "disjointWith",
        file=file_of.get(focus) or file_of.get(clash.node),
        check="owl",
        value_term=rdflib.URIRef(clash.node) if focus != clash.node else None,
    )


# --- entry points ------------------------------------------------------------------------------
def validate_graphs(
    data: Iterable[Statement],
    ontology: Iterable[Statement],
    shapes: Iterable[Statement],
    file_of: Mapping[str, str] | None = None,
    reasoner: bool = True,
    engine: str | None = None,
) -> ValidationReport:
    """SHACL-validate ontology + data against the shapes, then (optionally) run HermiT."""
    file_of = file_of or {}
    statements = list(ontology) + list(data)
    # The ontology goes into the data graph: term shapes check it, and sh:class needs its
    # rdfs:subClassOf links (a cmp:SystematicReview is a cmp:Source).
    data_graph = to_rdflib_graph(statements)
    shapes_graph = to_rdflib_graph(shapes)
    findings = _shacl_findings(run_shacl(data_graph, shapes_graph, engine), data_graph, file_of)
    hermit = None
    if reasoner:
        try:
            hermit = run_hermit(statements)
            findings += _owl_findings(hermit, data_graph, file_of)
        except JavaNotFoundError:
            raise
        except HermitError as err:
            # Input HermiT rejects is not OWL 2 DL: report it with the SHACL findings.
            findings.append(_ontology_finding(str(err), file_of))
    return ValidationReport(findings=_dedupe(sorted(findings, key=Finding.sort_key)), hermit=hermit)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple] = set()
    out = []
    for f in findings:
        key = (*f.sort_key(), f.constraint, f.check)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _node_key(node: ox.NamedNode | ox.BlankNode | ox.Triple) -> str:
    """The focus-node text a finding will carry for this subject (see _term_text)."""
    return node.value if isinstance(node, ox.NamedNode) else f"_:{node.value}"


def display_path(path: Path, root: Path) -> str:
    """A path relative to the repository when it lies inside it, else as given."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def validate_project(
    extra_files: Sequence[Path] = (), root: Path | None = None, reasoner: bool = True
) -> ValidationReport:
    """Validate the shipped ontology + data (+ draft files) against shapes/.

    Raises service.kb.sources.RDFSyntaxError for a file that cannot be parsed."""
    root = root or project_root()
    files = knowledge_files(root)
    parsed: dict[str, dict[Path, list[ox.Quad]]] = {
        "ontology": {p: parse_file(p) for p in files["ontology"]},
        "data": {p: parse_file(p) for p in [*files["asserted"], *map(Path, extra_files)]},
        "shapes": {p: parse_file(p) for p in files["shapes"]},
    }
    where: dict[str, list[str]] = defaultdict(list)
    # Data files first: a statement is fixed where it is curated, not where its terms live.
    for group in ("data", "ontology"):
        for path, quads in parsed[group].items():
            shown = display_path(path, root)
            for q in quads:
                key = _node_key(q.subject)
                if shown not in where[key]:
                    where[key].append(shown)
    file_of = {node: ", ".join(paths) for node, paths in where.items()}
    return validate_graphs(
        data=[q for quads in parsed["data"].values() for q in quads],
        ontology=[q for quads in parsed["ontology"].values() for q in quads],
        shapes=[q for quads in parsed["shapes"].values() for q in quads],
        file_of=file_of,
        reasoner=reasoner,
    )
