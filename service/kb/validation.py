"""Validation of the knowledge base: SHACL shapes plus OWL DL consistency (HermiT).

SHACL runs by default inside a pyoxigraph store: the shapes compiled to SPARQL
(service.kb.shacl_sparql), any node shape the compiler does not know through pyshacl-turbo
(pySHACL-compatible, Rust), which `ValidationReport.engine_fallback` names; CMPKG_SHACL_ENGINE=
pyshacl runs the reference engine on everything. Tests compare the compiled run with pySHACL.
One report type for both checks, rendered as text for curators, JSON for tools, or Turtle as a
standard sh:ValidationReport.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import cast

import pyoxigraph as ox
import pyshacl
import pyshacl_turbo
import rdflib
from rdflib.namespace import RDF, RDFS, SH

from service import config
from service.kb import shacl_sparql
from service.kb.hermit import (
    Clash,
    HermitError,
    HermitResult,
    JavaNotFoundError,
    describe_clash,
    describe_literal_clash,
    run_hermit_summarized,
)
from service.kb.sources import (
    PREFIXES,
    curie,
    knowledge_files,
    parse_file,
    project_root,
    to_rdflib_graph,
    to_rdflib_term,
)

SHAPE_NS = "https://w3id.org/cmpkg/shape/"
ONTOLOGY_IRI = "https://w3id.org/cmpkg/ontology"
SEVERITIES = ("Violation", "Warning", "Info")

Statement = ox.Triple | ox.Quad
Term = ox.NamedNode | ox.BlankNode | rdflib.URIRef | rdflib.BNode | str  # a node; "_:x" is blank
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
    # With validate_graphs(changed=...): the focus nodes the local rules checked (None: all).
    scope: frozenset[str] | None = None
    local_rules: frozenset[str] = frozenset()  # rules restricted to the scope (Finding.shape)
    # Node shapes the SPARQL compiler left to the SHACL engine, and why (manifest full_input).
    uncompiled: dict[str, str] = field(default_factory=dict)

    @property
    def engine_fallback(self) -> str | None:
        """Why part of SHACL ran through the engine rather than in the store, or None."""
        if not self.uncompiled:
            return None
        return "; ".join(f"{short(k)}: {v}" for k, v in sorted(self.uncompiled.items()))

    def carry_over(
        self, previous: ValidationReport, file_of: Mapping[str, str] | None = None
    ) -> ValidationReport:
        """The whole graph's report from a scoped one: `previous` (a report on the graph
        before the change, all nodes checked) supplies the local rules' findings outside the
        scope, which the change cannot have altered (validate_graphs says when). With
        `file_of`, their files are looked up again: a statement can move to another file
        without changing the graph."""
        if self.scope is None:
            return self
        kept = [
            f
            for f in previous.findings
            if f.check == "shacl" and f.shape in self.local_rules and f.focus_node not in self.scope
        ]
        if file_of is not None:
            kept = [replace(f, file=file_of.get(f.focus_node)) for f in kept]
        merged = sorted([*self.findings, *kept], key=Finding.sort_key)
        return ValidationReport(
            findings=_dedupe(merged), hermit=self.hermit, uncompiled=self.uncompiled
        )

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
def short(iri: str) -> str:
    """A prefixed name for project IRIs, so reports read like the Turtle curators write."""
    if iri.startswith("_:"):
        return iri
    return curie(iri) or f"<{iri}>"


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
    line = f"{verdict}: " + ", ".join(parts) + f"; OWL DL: {owl}"
    if report.scope is not None:
        # The curator must not read a draft check as a verdict on the whole knowledge base.
        line = (
            f"SHACL checked the {len(report.scope)} node(s) the draft touches and the nodes "
            "pointing at them (validate without files, or with --whole, for everything)\n" + line
        )
    return line


def render_json(report: ValidationReport) -> str:
    payload = {
        "conforms": report.conforms,
        "violations": report.count("Violation"),
        "warnings": report.count("Warning"),
        "owl_consistent": None if report.hermit is None else report.hermit.consistent,
        "checked_nodes": None if report.scope is None else sorted(report.scope),
        "findings": [f.as_dict() for f in report.findings],
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def render_turtle(report: ValidationReport) -> str:
    g = rdflib.Graph()
    g.bind("sh", SH)
    for prefix, ns in PREFIXES.items():
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
    """ "turbo" by default: the shapes as SPARQL in the store, pyshacl-turbo for the rest (tests
    prove both reports identical to pySHACL's on every fixture, at a fraction of the time);
    CMPKG_SHACL_ENGINE=pyshacl selects the reference engine."""
    engine = config.value("shacl_engine")
    if engine not in ENGINES:
        raise ValueError(f"CMPKG_SHACL_ENGINE must be one of {sorted(ENGINES)}, not {engine!r}")
    return engine


def run_shacl(
    data_graph: rdflib.Graph | ox.Store, shapes_graph: rdflib.Graph, engine: str | None = None
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
    results: rdflib.Graph, data_graph: rdflib.Graph | _StoreGraph, file_of: Mapping[str, str]
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


class _StoreGraph:
    """The one rdflib.Graph method the report needs (labels), over a pyoxigraph store."""

    def __init__(self, store: ox.Store) -> None:
        self.store = store

    def objects(self, node: rdflib.term.Node, predicate: rdflib.term.Node) -> list:
        if not isinstance(node, rdflib.URIRef):
            return []
        quads = self.store.quads_for_pattern(
            ox.NamedNode(str(node)), ox.NamedNode(str(predicate)), None, None
        )
        return [rdflib.Literal(q.object.value) for q in quads if isinstance(q.object, ox.Literal)]


def _label(graph: rdflib.Graph | _StoreGraph, node: rdflib.term.Node | None) -> str | None:
    if node is None:
        return None
    labels = sorted(str(x) for x in graph.objects(node, RDFS.label))
    return labels[0] if labels else None


# --- OWL ---------------------------------------------------------------------------------------
def _owl_findings(
    result: HermitResult, data_graph: rdflib.Graph | _StoreGraph, file_of: Mapping[str, str]
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


def _clash_finding(
    clash: Clash, data_graph: rdflib.Graph | _StoreGraph, file_of: Mapping[str, str]
) -> Finding:
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
    changed: Collection[Term] | None = None,
) -> ValidationReport:
    """SHACL-validate ontology + data against the shapes, then (optionally) run HermiT.

    `changed` (None: check everything) names the nodes an edit touched: the subject of every
    triple added or removed since a previous run. Then the *local* rules (every compiled core
    constraint, and each SPARQL constraint whose patterns start at $this or at a node one
    $this pattern reaches) check only the affected focus nodes: the changed nodes and every
    node with a triple pointing at one (`report.scope`). The guarantee: the report holds
    exactly the whole run's findings of local rules on focus nodes in the scope, and all of
    the whole run's findings of every other rule (non-local SPARQL, shapes left to the
    engine, OWL); a local rule's findings on a node outside the scope are those of the graph
    before the change, which `report.carry_over(previous_report)` adds back. A change to the
    schema (see affected_nodes) checks everything, and so does the reference engine.
    """
    file_of = file_of or {}
    schema = [s.triple if isinstance(s, ox.Quad) else s for s in ontology]
    data = list(data)

    def statements() -> list[ox.Triple]:  # only HermiT and pySHACL need one list of triples
        return schema + [s.triple if isinstance(s, ox.Quad) else s for s in data]

    # The ontology goes into the data graph: term shapes check it, and sh:class needs its
    # rdfs:subClassOf links (a cmp:SystematicReview is a cmp:Source).
    engine = engine or shacl_engine()
    data_graph: rdflib.Graph | _StoreGraph
    scope: set[ox.NamedNode | ox.BlankNode] | None = None
    local_rules: frozenset[str] = frozenset()
    uncompiled: dict[str, str] = {}
    if engine == "turbo":
        run, data_graph = _shacl_in_store(schema, data, shapes, file_of, changed)
        findings, scope, local_rules, uncompiled = (
            run.findings,
            run.scope,
            run.local_rules,
            run.uncompiled,
        )
    else:
        data_graph = to_rdflib_graph(statements())
        results = run_shacl(data_graph, to_rdflib_graph(shapes), engine)
        findings = _shacl_findings(results, data_graph, file_of)
    hermit = None
    if reasoner:
        try:
            # The summary (one representative per kind of data node) keeps a draft check
            # interactive on a large knowledge base; the whole input runs when it must.
            hermit, _why = run_hermit_summarized(schema, statements()[len(schema) :])
            findings += _owl_findings(hermit, data_graph, file_of)
        except JavaNotFoundError:
            raise
        except HermitError as err:
            # Input HermiT rejects is not OWL 2 DL: report it with the SHACL findings.
            findings.append(_ontology_finding(str(err), file_of))
    return ValidationReport(
        findings=_dedupe(sorted(findings, key=Finding.sort_key)),
        hermit=hermit,
        scope=None if scope is None else frozenset(_node_key(n) for n in scope),
        local_rules=local_rules if scope is not None else frozenset(),
        uncompiled=uncompiled,
    )


def _shacl_in_store(
    schema: list[ox.Triple],
    data: list[Statement],
    shapes: Iterable[Statement],
    file_of: Mapping[str, str],
    changed: Collection[Term] | None,
) -> tuple[StoreRun, _StoreGraph]:
    """SHACL inside a pyoxigraph store: no rdflib copy of the data, which at a million
    triples cost more than the validation itself."""
    shapes_graph, compiled = _compiled_shapes(shapes)
    near = None
    every_check_local = not compiled.uncompiled and all(c.local for c in compiled.checks)
    if changed is not None and every_check_local:
        near = _neighbourhood(schema, data, changed)
    scope = None
    if near is not None:
        # Local checks read no further than one hop from the scope: the store holds that and
        # the schema, not the whole knowledge base (most of a draft check's time).
        scope, data = near
    store = _load_store([*schema, *data])
    if changed is not None and near is None:
        scope = affected_nodes(store, changed, schema)
    run = validate_store(store, shapes_graph, file_of, scope, compiled)
    _restore_literals(run.findings, [*schema, *data])
    return run, _StoreGraph(store)


def _load_store(statements: Sequence[Statement]) -> ox.Store:
    """The statements in a new store's default graph. Written out as N-Triples and read back
    by Oxigraph in one call: a Python Quad per statement took longer than the validation,
    and so did a Python test of each statement. The serializer writes one line per statement,
    in order, so the lines naming a blank node (or holding "_:" in a literal) find their
    statements again: those are added as they are, since reading relabels blank nodes and
    findings must name the caller's."""
    try:
        text = ox.serialize(cast(list[ox.Triple], statements), format=ox.RdfFormat.N_TRIPLES)
    except ValueError:  # a quad in a named graph: SHACL reads the default graph only
        triples = [s.triple if isinstance(s, ox.Quad) else s for s in statements]
        text = ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES)
    assert text is not None  # with no output given, serialize returns the bytes
    if text.count(b"\n") != len(statements):
        raise AssertionError("the N-Triples serializer wrote other than a line a statement")
    text, blank = _without_blank_lines(text)
    store = ox.Store()
    # lenient: the terms were checked when they were made (a parse or a constructor).
    store.load(text, format=ox.RdfFormat.N_TRIPLES, lenient=True)
    default = ox.DefaultGraph()
    kept = [statements[i] for i in blank]
    store.extend(ox.Quad(s.subject, s.predicate, s.object, default) for s in kept)
    return store


def _without_blank_lines(text: bytes) -> tuple[bytes, list[int]]:
    """N-Triples text without its lines holding "_:", and their numbers (from 0). Found by
    searching the bytes: a Python step per line cost seconds at a million triples."""
    pieces: list[bytes] = []
    numbers: list[int] = []
    kept_from = line = 0  # `line` is the number of the line starting at kept_from
    found = text.find(b"_:")
    while found != -1:
        start = text.rfind(b"\n", 0, found) + 1
        end = text.index(b"\n", found) + 1
        line += text.count(b"\n", kept_from, start)
        numbers.append(line)
        line += 1
        pieces.append(text[kept_from:start])
        kept_from = end
        found = text.find(b"_:", end)
    if not numbers:
        return text, numbers
    pieces.append(text[kept_from:])
    return b"".join(pieces), numbers


def _restore_literals(findings: list[Finding], statements: Sequence[Statement]) -> None:
    """The store keeps numbers in canonical form (120.0 comes back as 120): give a finding
    the literal as the curator wrote it, which is what the engines report."""
    wanted = {(f.focus_node, f.path) for f in findings if isinstance(f.value_term, rdflib.Literal)}
    if not wanted:
        return
    subjects = {_as_node(node) for node, _path in wanted}
    written: dict[tuple[str, str], list[rdflib.Literal]] = defaultdict(list)
    for t in statements:
        if t.subject in subjects and isinstance(t.object, ox.Literal):
            literal = to_rdflib_term(t.object)
            written[(_node_key(t.subject), t.predicate.value)].append(literal)  # type: ignore[arg-type]
            written[(_node_key(t.subject), "")].append(literal)  # type: ignore[arg-type]
    for f in findings:
        if not isinstance(f.value_term, rdflib.Literal):
            continue
        for original in written.get((f.focus_node, f.path or ""), []):
            same_kind = (original.datatype, original.language) == (
                f.value_term.datatype,
                f.value_term.language,
            )
            if same_kind and original != f.value_term and original.eq(f.value_term):
                f.value_term, f.value = original, _term_text(original)
                break


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
    if isinstance(node, ox.Triple):  # never a focus node: shapes target IRIs and blank nodes
        return str(node)
    return node.value if isinstance(node, ox.NamedNode) else f"_:{node.value}"


def display_path(path: Path, root: Path) -> str:
    """A path relative to the repository when it lies inside it, else as given."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def validate_project(
    extra_files: Sequence[Path] = (),
    root: Path | None = None,
    reasoner: bool = True,
    whole: bool = False,
) -> ValidationReport:
    """Validate the shipped ontology + data (+ draft files) against shapes/.

    With draft files, SHACL checks what they touch (validate_graphs' `changed`: every subject
    a draft describes) against the whole knowledge base, unless `whole`; the knowledge base
    itself is checked by every build and by a run without drafts.

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
            for subject in {q.subject for q in quads}:
                where[_node_key(subject)].append(shown)
    file_of = {node: ", ".join(paths) for node, paths in where.items()}
    drafts = [parsed["data"][Path(p)] for p in extra_files]
    changed = None
    if extra_files and not whole:
        changed = {q.subject for qs in drafts for q in qs if not isinstance(q.subject, ox.Triple)}
    return validate_graphs(
        data=[q for quads in parsed["data"].values() for q in quads],
        ontology=[q for quads in parsed["ontology"].values() for q in quads],
        shapes=[q for quads in parsed["shapes"].values() for q in quads],
        file_of=file_of,
        reasoner=reasoner,
        changed=changed,
    )


# --- SHACL inside the store ---------------------------------------------------------------------
@dataclass
class StoreRun:
    findings: list[Finding]
    local_rules: frozenset[str]  # rules (Finding.shape) whose checks read one hop only
    uncompiled: dict[str, str]  # node shape -> why the SHACL engine ran it instead
    scope: set[ox.NamedNode | ox.BlankNode] | None = None  # the nodes local rules checked


_COMPILED: dict[frozenset[ox.Triple], tuple[rdflib.Graph, shacl_sparql.Compiled]] = {}


def _compiled_shapes(
    shapes: Iterable[Statement],
) -> tuple[rdflib.Graph, shacl_sparql.Compiled]:
    """The shapes as rdflib graph and compiled checks, kept for the next call with the same
    shapes (the prescription service validates every request against one shapes graph)."""
    key = frozenset(s.triple if isinstance(s, ox.Quad) else s for s in shapes)
    found = _COMPILED.get(key)
    if found is None:
        graph = to_rdflib_graph(key)
        found = (graph, shacl_sparql.compile_shapes(graph))
        _COMPILED.clear()  # one shapes graph is in use at a time
        _COMPILED[key] = found
    return found


def validate_store(
    store: ox.Store,
    shapes: rdflib.Graph,
    file_of: Mapping[str, str],
    scope: Collection[ox.NamedNode | ox.BlankNode] | None = None,
    compiled: shacl_sparql.Compiled | None = None,
) -> StoreRun:
    """SHACL findings for the data in `store`'s default graph: the compiled shapes as SPARQL
    in the store (service.kb.shacl_sparql), any other node shape through pyshacl-turbo.

    With `scope`, local rules check only the focus nodes in it (see validate_graphs)."""
    compiled = compiled or shacl_sparql.compile_shapes(shapes)
    try:
        shacl_sparql.record_targets(store, compiled, scope)
        results = shacl_sparql.run_checks(store, compiled.checks, scoped=scope is not None)
    finally:
        shacl_sparql.clear_targets(store)  # the engine below must see the data alone
    labels = _StoreGraph(store)
    findings = [_result_finding(r, labels, file_of) for r in results]
    if compiled.uncompiled:
        # The engine runs only the shapes left: the compiled ones lose their targets.
        done = {
            t for t in shapes.subjects(SH.targetClass) if _term_text(t) not in compiled.uncompiled
        }
        rest = rdflib.Graph()
        for t in shapes:
            if not (t[0] in done and t[1] == SH.targetClass):
                rest.add(t)
        findings += _shacl_findings(run_shacl(store, rest, "turbo"), labels, file_of)
    local = frozenset(c.shape for c in compiled.checks if c.local)
    return StoreRun(findings, local, compiled.uncompiled, None if scope is None else set(scope))


def _result_finding(
    r: shacl_sparql.Result, labels: _StoreGraph, file_of: Mapping[str, str]
) -> Finding:
    focus = _node_key(r.focus)
    value = None if r.value is None else to_rdflib_term(r.value)
    names = labels.store.quads_for_pattern(r.focus, ox.NamedNode(str(RDFS.label)), None)
    texts = sorted(q.object.value for q in names if isinstance(q.object, ox.Literal))
    return Finding(
        severity=r.severity,
        focus_node=focus,
        focus_label=texts[0] if texts else None,
        path=r.path,
        value=_term_text(value),
        message=r.message,
        shape=r.shape,
        constraint=r.component,
        file=file_of.get(focus),
        check="shacl",
        value_term=value,
    )


def affected_nodes(
    store: ox.Store, changed: Iterable[Term], schema: Iterable[ox.Triple]
) -> set[ox.NamedNode | ox.BlankNode] | None:
    """The focus nodes whose local findings a change can alter: each changed node and every
    node with a triple pointing at one. None (check everything) when a changed node is part of
    the schema: a subject of the ontology, a property in use, a class something is typed
    with, or either end of an rdfs:subClassOf link (targets and sh:class read those)."""
    schema_subjects = {t.subject for t in schema}
    rdf_type, sub_class = ox.NamedNode(str(RDF.type)), ox.NamedNode(str(RDFS.subClassOf))
    found: set[ox.NamedNode | ox.BlankNode] = set()
    for term in changed:
        node = _as_node(term)
        if node in schema_subjects:
            return None
        if isinstance(node, ox.NamedNode) and (
            next(store.quads_for_pattern(None, node, None), None) is not None
            or next(store.quads_for_pattern(None, rdf_type, node), None) is not None
            or next(store.quads_for_pattern(None, sub_class, node), None) is not None
        ):
            return None
        if next(store.quads_for_pattern(node, sub_class, None), None) is not None:
            return None
        found.add(node)
        for q in store.quads_for_pattern(None, None, node, ox.DefaultGraph()):
            if isinstance(q.subject, ox.NamedNode | ox.BlankNode):
                found.add(q.subject)
    return found


def _neighbourhood(
    schema: Sequence[ox.Triple], data: Sequence[Statement], changed: Iterable[Term]
) -> tuple[set[ox.NamedNode | ox.BlankNode], list[Statement]] | None:
    """affected_nodes read from the statements, and every statement a local check on those
    nodes can read: the triples of the nodes, of the nodes and properties they point to, and
    every rdfs:subClassOf link (the schema comes separately). None on a schema change."""
    nodes = {_as_node(t) for t in changed}
    if nodes & {t.subject for t in schema}:
        return None
    rdf_type, sub_class = ox.NamedNode(str(RDF.type)), ox.NamedNode(str(RDFS.subClassOf))
    scope: set[ox.NamedNode | ox.BlankNode] = set(nodes)
    links: list[Statement] = []
    for s in [*schema, *data]:
        subject, predicate, obj = s.subject, s.predicate, s.object
        if predicate in nodes:
            return None
        if predicate == sub_class:
            if subject in nodes or obj in nodes:
                return None
            links.append(s)
        if obj in nodes:
            if predicate == rdf_type:
                return None
            if isinstance(subject, ox.NamedNode | ox.BlankNode):
                scope.add(subject)
    own = [s for s in data if s.subject in scope]
    near: set[ox.NamedNode | ox.BlankNode] = set()
    for s in own:
        near |= {x for x in (s.predicate, s.object) if isinstance(x, ox.NamedNode | ox.BlankNode)}
    near -= scope
    return scope, own + [s for s in data if s.subject in near] + links


def _as_node(term: Term) -> ox.NamedNode | ox.BlankNode:
    if isinstance(term, ox.NamedNode | ox.BlankNode):
        return term
    if isinstance(term, rdflib.BNode):
        return ox.BlankNode(str(term))
    text = str(term)
    return ox.BlankNode(text[2:]) if text.startswith("_:") else ox.NamedNode(text)
