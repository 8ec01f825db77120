"""SHACL compiled to SPARQL in the store (service.kb.shacl_sparql) against pySHACL, the reference
engine, and the changed-nodes mode against the whole run it stands for."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib
from conftest import sparql_parsed_once
from rdflib.namespace import SH

from service.kb import shacl_sparql
from service.kb.sources import knowledge_files, load_triples, parse_file, to_rdflib_graph
from service.kb.validation import Finding, ValidationReport, validate_graphs

ROOT = Path(__file__).resolve().parent.parent
BROKEN = ROOT / "tests" / "fixtures" / "broken"
VALID = ROOT / "tests" / "fixtures" / "valid"
FIXTURES = sorted(p for p in BROKEN.glob("*.ttl") if p.stem != "syntax-error")
NS = "https://w3id.org/cmpkg/"
FILES = knowledge_files(ROOT)

PRESENTATION = """
@prefix cmp: <https://w3id.org/cmpkg/vocab/> .
@prefix cond: <https://w3id.org/cmpkg/condition/> .
@prefix out: <https://w3id.org/cmpkg/outcome/> .
@prefix mod: <https://w3id.org/cmpkg/modality/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
<urn:p1> a cmp:Presentation ; cmp:presentsCondition cond:fibromyalgia , mod:aerobic-exercise ;
    cmp:prefersFormat "group" , "alone" ; cmp:prefersSetting mod:land-based-exercise , out:pain ;
    cmp:pathologyStatus <urn:s1> , <urn:s2> , <urn:s3> .
<urn:p2> a cmp:Presentation ; cmp:goal out:pain ; cmp:prefersSupervision "home"@en .
<urn:s1> a cmp:PathologyStatus ; cmp:score 120.0 ; cmp:scoreMin 0.0 ; cmp:scoreMax 100.0 ;
    cmp:instrument "" .
<urn:s2> a cmp:PathologyStatus ; cmp:score "12" ; cmp:scoreMin 10.0 ; cmp:scoreMax 10.0 ;
    cmp:elevated "yes"^^xsd:boolean , true .
<urn:s3> a cmp:PathologyStatus ; cmp:score 5.0 ; cmp:scoreMin "a" ; cmp:scoreMax 9.0 .
"""


def key(findings: list[Finding]) -> list[tuple[str, ...]]:
    """Everything a finding reports; blank nodes (relabelled by each parse) as one label."""

    def node(text: str | None) -> str:
        return "_:b" if text and text.startswith("_:") else str(text)

    return sorted(
        (
            f.severity,
            node(f.focus_node),
            str(f.path),
            node(f.value),
            f.message,
            str(f.shape),
            str(f.constraint),
            str(f.focus_label),
            str(f.file),
            f.check,
        )
        for f in findings
    )


def both(data: list, ontology: list, shapes: list) -> tuple[ValidationReport, ValidationReport]:
    fast = validate_graphs(data, ontology, shapes, reasoner=False)
    # pySHACL as it is, with rdflib parsing each SPARQL constraint once instead of once per
    # focus node (conftest.sparql_parsed_once: the same answers, a tenth of the time).
    with sparql_parsed_once():
        reference = validate_graphs(data, ontology, shapes, reasoner=False, engine="pyshacl")
    return fast, reference


@pytest.fixture(scope="module")
def shapes() -> list[ox.Triple]:
    return load_triples(FILES["shapes"])


@pytest.fixture(scope="module")
def shapes_graph(shapes) -> rdflib.Graph:
    return to_rdflib_graph(shapes)


def test_every_shipped_shape_is_compiled(shapes_graph: rdflib.Graph) -> None:
    compiled = shacl_sparql.compile_shapes(shapes_graph)
    assert compiled.uncompiled == {}
    # Every constraint component the shapes use has a check (min/max/values/... kinds).
    used = {str(p).rsplit("#", 1)[-1] for _s, p, _o in shapes_graph if str(p).startswith(str(SH))}
    compiled_components = {c.rsplit("#", 1)[-1] for ch in compiled.checks for c in ch.components}
    for name in (
        "minCount",
        "maxCount",
        "datatype",
        "class",
        "in",
        "or",
        "minInclusive",
        "maxInclusive",
        "pattern",
        "nodeKind",
        "lessThan",
        "lessThanOrEquals",
        "languageIn",
        "minLength",
        "sparql",
    ):
        assert name in used
        expected = "SPARQL" if name == "sparql" else name[0].upper() + name[1:]
        assert f"{expected}ConstraintComponent" in compiled_components


@pytest.mark.slow
def test_shipped_data_and_every_broken_fixture_give_pyshacls_report(shapes) -> None:
    """One pySHACL run on the shipped KB with every broken fixture on top (they share no
    node IRIs, test_shapes checks), compared finding by finding with the compiled shapes and
    with pyshacl-turbo (the engine for any shape the compiler does not take)."""
    data = load_triples([*FILES["asserted"], *FIXTURES])
    ontology = load_triples(FILES["ontology"])
    fast, reference = both(data, ontology, shapes)
    assert len(reference.findings) >= len(FIXTURES)
    assert key(fast.findings) == key(reference.findings)
    assert fast.uncompiled == {}
    turbo = validate_graphs(data, ontology, shapes, reasoner=False, engine="turbo")
    assert key(turbo.findings) == key(reference.findings)


def test_mini_kb_with_every_broken_fixture_gives_pyshacls_report(shapes) -> None:
    data = load_triples([VALID / "mini-data.ttl", *FIXTURES])
    fast, reference = both(data, load_triples([VALID / "mini-ontology.ttl"]), shapes)
    assert len(reference.findings) >= len(FIXTURES)
    assert key(fast.findings) == key(reference.findings)


def test_a_presentation_breaking_every_presentation_shape_gives_pyshacls_report(
    shapes, tmp_path: Path
) -> None:
    """The presentation shapes use what curated data never does (sh:lessThan, sh:minLength,
    sh:lessThanOrEquals, ill-typed literals)."""
    path = tmp_path / "presentation.ttl"
    path.write_text(PRESENTATION)
    # The mini ontology holds the terms the presentation names: the shipped one would make
    # pySHACL check its thousand terms as well (half a minute), which the shipped-data oracle
    # above already compares.
    ontology = load_triples([VALID / "mini-ontology.ttl"])
    fast, reference = both(parse_file(path), ontology, shapes)
    components = {f.constraint.rsplit("#", 1)[-1] for f in reference.findings if f.constraint}
    assert {
        "LessThanConstraintComponent",
        "LessThanOrEqualsConstraintComponent",
        "MinLengthConstraintComponent",
        "DatatypeConstraintComponent",
        "InConstraintComponent",
        "ClassConstraintComponent",
        "MaxCountConstraintComponent",
        "MinCountConstraintComponent",
    } <= components
    assert key(fast.findings) == key(reference.findings)


def test_a_shape_the_compiler_does_not_know_goes_to_the_engine(shapes) -> None:
    """sh:hasValue is not compiled: its node shape runs through the SHACL engine, the report
    says so, and the findings are still pySHACL's."""
    extra = rdflib.Graph().parse(
        data="""
        @prefix sh: <http://www.w3.org/ns/shacl#> .
        @prefix cmp: <https://w3id.org/cmpkg/vocab/> .
        <https://w3id.org/cmpkg/shape/x-status> a sh:NodeShape ;
            sh:targetClass cmp:EvidenceClaim ;
            sh:property <https://w3id.org/cmpkg/shape/x-status-value> .
        <https://w3id.org/cmpkg/shape/x-status-value> sh:path cmp:curationStatus ;
            sh:hasValue <urn:none> ; sh:message "x"@en .
        """,
        format="turtle",
    )
    more = shapes + [
        ox.Triple(
            *(
                ox.NamedNode(str(x))
                if isinstance(x, rdflib.URIRef)
                else ox.BlankNode(str(x))
                if isinstance(x, rdflib.BNode)
                else ox.Literal(str(x), language=x.language)
                for x in t
            )
        )
        for t in extra
    ]
    data = load_triples([VALID / "mini-data.ttl", BROKEN / "reversed-ci.ttl"])
    fast, reference = both(data, load_triples([VALID / "mini-ontology.ttl"]), more)
    assert set(fast.uncompiled) == {NS + "shape/x-status"}
    assert fast.engine_fallback and "hasValue" in fast.engine_fallback
    assert any(f.constraint == str(SH.HasValueConstraintComponent) for f in fast.findings)
    assert key(fast.findings) == key(reference.findings)


@pytest.mark.parametrize(
    "target",
    [
        "sh:targetNode <urn:claim>",
        "sh:targetSubjectsOf cmp:curationStatus",
        "sh:targetObjectsOf <urn:points-at>",
    ],
)
def test_a_shape_targeting_otherwise_than_by_class_is_checked(target: str) -> None:
    """The compiler takes node shapes with sh:targetClass; one that targets its nodes another
    way goes to the SHACL engine, and its violation is reported (it used to be checked by
    nothing: the compiler never saw it and the engine was told the compiler had it)."""
    shapes = load_triples_text(
        f"""
        @prefix sh: <http://www.w3.org/ns/shacl#> .
        @prefix cmp: <https://w3id.org/cmpkg/vocab/> .
        <https://w3id.org/cmpkg/shape/x-other-target> a sh:NodeShape ; {target} ;
            sh:property [ sh:path cmp:curationStatus ; sh:hasValue <urn:none> ;
                          sh:message "x"@en ] .
        """
    )
    data = load_triples_text(
        """
        @prefix cmp: <https://w3id.org/cmpkg/vocab/> .
        <urn:claim> cmp:curationStatus <urn:checked> .
        <urn:other> <urn:points-at> <urn:claim> .
        """
    )
    fast, reference = both(data, [], shapes)
    assert set(fast.uncompiled) == {NS + "shape/x-other-target"}
    assert [f.focus_node for f in fast.findings if f.severity == "Violation"] == ["urn:claim"]
    assert key(fast.findings) == key(reference.findings)


def load_triples_text(turtle: str) -> list[ox.Triple]:
    return list(ox.parse(turtle.encode(), format=ox.RdfFormat.TURTLE))


# --- the changed-nodes mode ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def kb_report(shapes) -> ValidationReport:
    return validate_graphs(
        load_triples(FILES["asserted"]), load_triples(FILES["ontology"]), shapes, reasoner=False
    )


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_a_draft_checked_on_what_it_touches_gives_the_whole_report(
    fixture: Path, shapes, kb_report: ValidationReport
) -> None:
    """The guarantee validate_graphs documents: the scoped report carried over from the
    previous whole report is the whole report of the changed graph."""
    ontology = load_triples(FILES["ontology"])
    draft = load_triples([fixture])
    data = load_triples(FILES["asserted"]) + draft
    whole = validate_graphs(data, ontology, shapes, reasoner=False)
    scoped = validate_graphs(
        data, ontology, shapes, reasoner=False, changed={t.subject for t in draft}
    )
    if scoped.scope is None:  # the draft changes the schema (a new term): checked in full
        assert fixture.stem.startswith("term-")
        assert key(scoped.findings) == key(whole.findings)
        return
    assert scoped.scope and len(scoped.scope) < 20
    assert key(scoped.carry_over(kb_report).findings) == key(whole.findings)
    # Exactly the whole run's findings on the scope: nothing about the rest of the KB.
    assert key(scoped.findings) == key([f for f in whole.findings if f.focus_node in scoped.scope])
    assert any(f.severity in ("Violation", "Warning") for f in scoped.findings)


def test_an_edit_rechecks_the_nodes_pointing_at_the_changed_node(shapes) -> None:
    """A value's type is read through the node pointing at it (sh:class): when a draft
    outcome loses its type, the claim using it fails, though only the outcome changed."""
    ontology = load_triples(FILES["ontology"])
    claim = NS + "claim/busch-2007-aerobic-pain-severity"
    outcome = ox.NamedNode(NS + "outcome/draft-outcome")
    typed = ox.Triple(
        outcome, ox.NamedNode(str(rdflib.RDF.type)), ox.NamedNode(NS + "vocab/Outcome")
    )
    asserted = [
        t
        for t in load_triples(FILES["asserted"])
        if not (t.subject.value == claim and t.predicate.value == NS + "vocab/outcome")
    ]
    assert len(asserted) == len(load_triples(FILES["asserted"])) - 1  # its one outcome went
    uses = ox.Triple(ox.NamedNode(claim), ox.NamedNode(NS + "vocab/outcome"), outcome)
    before = validate_graphs([*asserted, uses, typed], ontology, shapes, reasoner=False)
    assert not [f for f in before.findings if f.focus_node == claim and f.severity == "Violation"]
    after = validate_graphs([*asserted, uses], ontology, shapes, reasoner=False, changed=[outcome])
    assert after.scope is not None and claim in after.scope
    hits = [f for f in after.findings if f.focus_node == claim and f.severity == "Violation"]
    assert [f.constraint for f in hits] == [str(SH.ClassConstraintComponent)]
    whole = validate_graphs([*asserted, uses], ontology, shapes, reasoner=False)
    assert key(after.carry_over(before).findings) == key(whole.findings)


def test_a_schema_change_checks_everything(shapes) -> None:
    ontology = load_triples(FILES["ontology"])
    report = validate_graphs(
        load_triples(FILES["asserted"]),
        ontology,
        shapes,
        reasoner=False,
        changed=[ox.NamedNode(NS + "vocab/EvidenceClaim")],
    )
    assert report.scope is None


@pytest.mark.parametrize(
    ("query", "local"),
    [
        ("SELECT $this WHERE { $this <p> ?x FILTER EXISTS { ?x <q> ?y } }", True),
        ("SELECT $this WHERE { $this <p> ?x ; <q> ?w . ?w <a> 'x'@en , 3 ; }", True),
        ("SELECT $this WHERE { $this ?p ?v FILTER NOT EXISTS { ?p a ?k } }", True),
        ("SELECT $this WHERE { $this <p> ?x OPTIONAL { ?x <q> ?y } }", True),
        ("SELECT $this WHERE { $this <p> ?x . ?x <q> ?y . ?y <r> ?z }", False),  # two hops
        ("SELECT ?this WHERE { ?this <p>/<q> ?x }", False),  # a path
        ("SELECT $this WHERE { <a> <p> ?x }", False),  # a fixed node
        ("SELECT $this WHERE { { SELECT ?this WHERE { ?this <p> ?x } } }", False),
        ("SELECT $this WHERE { ?x <p> $this }", False),  # incoming
        ("SELECT $this WHERE { $this <p> [ <q> ?y ] }", False),
        ("SELECT $this WHERE { FILTER NOT EXISTS { ?y <p> ?z } }", False),
        ("SELECT $this WHERE { { $this <p> ?x } UNION { ?x <q> ?y } }", False),
        ("SELECT $this WHERE { FILTER NOT EXISTS { $this <p> ?x } ?x <q> ?y }", False),
        ("SELECT $this WHERE { OPTIONAL { $this <p> ?x } ?x <q> ?y }", False),
        ("SELECT $this WHERE { GRAPH ?g { $this ?p ?o } }", False),
        ("SELECT $this WHERE { $this <p> ?x BIND (?x AS ?y) ?y <q> ?z }", False),
    ],
)
def test_only_one_hop_sparql_counts_as_local(query: str, local: bool) -> None:
    assert shacl_sparql.reads_one_hop(query) is local


def test_every_shipped_sparql_constraint_is_local(shapes_graph: rdflib.Graph) -> None:
    """So a one-claim draft checks no SPARQL rule on the whole graph (if a new rule is not
    local, this fails and says which: it then runs on every focus node, which is sound)."""
    compiled = shacl_sparql.compile_shapes(shapes_graph)
    assert [c.shape for c in compiled.checks if not c.local] == []


# --- how the checks run -----------------------------------------------------------------------
def test_every_check_reading_all_the_data_gives_pyshacls_report(shapes, monkeypatch) -> None:
    """On a small graph every check starts from its few focus nodes; at scale the checks read
    all the data (MINUS for sh:class, the failing rows then kept if they are focus nodes).
    With no shape counted as having few focus nodes, the fixtures still give pySHACL's
    findings."""
    monkeypatch.setattr(shacl_sparql, "FEW_TARGETS", 0)
    presentation = [q.triple for q in ox.parse(PRESENTATION, format=ox.RdfFormat.TURTLE)]
    data = load_triples([VALID / "mini-data.ttl", *FIXTURES]) + presentation
    fast, reference = both(data, load_triples([VALID / "mini-ontology.ttl"]), shapes)
    assert {f.constraint.rsplit("#", 1)[-1] for f in reference.findings if f.constraint} >= {
        "ClassConstraintComponent",
        "DatatypeConstraintComponent",
        "InConstraintComponent",
        "LessThanConstraintComponent",
        "MaxCountConstraintComponent",
        "MinCountConstraintComponent",
        "MinLengthConstraintComponent",
        "SPARQLConstraintComponent",
    }
    assert key(fast.findings) == key(reference.findings)


def _store_with_targets(
    shapes: list[ox.Triple], data: list[ox.Triple]
) -> tuple[ox.Store, shacl_sparql.Compiled]:
    from service.kb.validation import _load_store

    compiled = shacl_sparql.compile_shapes(to_rdflib_graph(shapes))
    store = _load_store([*load_triples([VALID / "mini-ontology.ttl"]), *data])
    shacl_sparql.record_targets(store, compiled, None)
    return store, compiled


@pytest.mark.parametrize("few", [1000, 0], ids=["from-focus-nodes", "all-data"])
def test_checks_on_several_threads_give_the_results_of_one(shapes, monkeypatch, few) -> None:
    monkeypatch.setattr(shacl_sparql, "FEW_TARGETS", few)
    store, compiled = _store_with_targets(
        shapes, load_triples([VALID / "mini-data.ttl", *FIXTURES])
    )
    serial = shacl_sparql.run_checks(store, compiled.checks, scoped=False, threads=1)
    assert len({r.shape for r in serial}) > 10
    for threads in (2, 5):
        seconds: list[float] = []
        concurrent = shacl_sparql.run_checks(
            store, compiled.checks, scoped=False, threads=threads, seconds=seconds
        )
        assert concurrent == serial  # the same results, in the same order
        assert len(seconds) == len(compiled.checks) and all(s >= 0 for s in seconds)


BROKEN_QUERY = """
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix cmp: <https://w3id.org/cmpkg/vocab/> .
<https://w3id.org/cmpkg/shape/x-claims> a sh:NodeShape ;
    sh:targetClass cmp:EvidenceClaim ;
    sh:sparql <https://w3id.org/cmpkg/shape/x-broken> .
<https://w3id.org/cmpkg/shape/x-broken> a sh:SPARQLConstraint ;
    sh:message "x"@en ;
    sh:select "SELECT $this WHERE { $this cmp:noSuchPrefixDeclared ?x }" .
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_a_query_failing_in_the_store_fails_the_validation_naming_its_check(
    shapes, monkeypatch, threads: int
) -> None:
    """The query only fails in the store (its prefix is undeclared): the validation fails,
    whichever thread ran it, and says which check, rather than reporting the data valid."""
    monkeypatch.setattr(shacl_sparql, "QUERY_THREADS", threads)
    extra = [t.triple for t in ox.parse(BROKEN_QUERY, format=ox.RdfFormat.TURTLE)]
    data = load_triples([VALID / "mini-data.ttl"])
    with pytest.raises(shacl_sparql.CheckFailed, match=r"shape/x-broken .*SPARQLConstraint"):
        validate_graphs(data, load_triples([VALID / "mini-ontology.ttl"]), shapes + extra,
                        reasoner=False)  # fmt: skip


XSD_INT = "http://www.w3.org/2001/XMLSchema#integer"


def test_the_store_holds_the_statements_with_their_blank_nodes() -> None:
    """The store is loaded from N-Triples text, which relabels blank nodes: the statements
    naming one (and a literal holding "_:") are added as they are, and a quad of a named graph
    goes into the default graph, which is what SHACL reads."""
    from service.kb.validation import _load_store

    p, b = ox.NamedNode("urn:p"), ox.BlankNode("keep-me")
    g = ox.NamedNode("urn:g")
    statements = [
        ox.Triple(b, p, ox.Literal("first")),
        ox.Triple(ox.NamedNode("urn:a"), p, ox.Literal("one")),
        ox.Triple(ox.NamedNode("urn:a"), p, b),
        ox.Triple(ox.NamedNode("urn:a"), p, ox.Literal("not a blank _:x\nsecond line")),
        ox.Triple(ox.NamedNode("urn:b"), p, ox.Literal("two", language="en")),
        ox.Quad(ox.NamedNode("urn:c"), p, ox.Literal("3", datatype=ox.NamedNode(XSD_INT)), g),
        ox.Triple(b, p, ox.Literal("last _:")),
    ]
    store = _load_store(statements)
    default = ox.DefaultGraph()
    expected = {
        ox.Quad(s.subject, s.predicate, s.object, default)
        for s in (x.triple if isinstance(x, ox.Quad) else x for x in statements)
    }
    assert set(store) == expected
    # Only plain statements: no blank node to keep, and the text has no "_:" at all.
    plain = statements[1:2] + statements[4:5]
    assert set(_load_store(plain)) == {ox.Quad(*s, default) for s in plain}


@pytest.mark.parametrize(
    ("query", "minus"),
    [
        # The shared variable is bound by a top-level pattern, or is $this: a MINUS.
        ("SELECT $this WHERE { $this ?p ?v FILTER NOT EXISTS { ?p a ?k FILTER (?k = <c>) } }",
         "SELECT $this WHERE { $this ?p ?v  MINUS { ?p a ?k FILTER (?k = <c>) }\n}"),
        ("SELECT $this WHERE { FILTER NOT EXISTS { $this <p> ?x } FILTER (isIRI($this)) }",
         "SELECT $this WHERE {  FILTER (isIRI($this)) MINUS { $this <p> ?x }\n}"),
        # A variable bound only in an OPTIONAL, or not at all outside the block: unchanged.
        ("SELECT $this WHERE { OPTIONAL { $this <p> ?x } FILTER NOT EXISTS { ?x <q> ?y } }", ""),
        ("SELECT $this WHERE { $this <p> ?x FILTER NOT EXISTS { ?z <q> ?y } }", ""),
        # The block's filter reads a variable of the outer query: NOT EXISTS sees its value.
        ("SELECT $this WHERE { $this <p> ?x FILTER NOT EXISTS { $this <q> ?y FILTER (?y > ?x) } }",
         ""),
        # Nested groups, a block inside a UNION branch, a variable predicate path: unchanged.
        ("SELECT $this WHERE { $this <p> ?x FILTER NOT EXISTS { { $this <q> ?y } } }", ""),
        ("SELECT $this WHERE { { $this <p> ?x FILTER NOT EXISTS { $this <q> ?y } } UNION "
         "{ $this <r> ?x } }", ""),
        ("SELECT $this WHERE { $this <p> ?x FILTER NOT EXISTS { $this <q>/<r> ?y } }", ""),
    ],
)  # fmt: skip
def test_a_not_exists_becomes_a_minus_only_where_they_mean_the_same(query: str, minus: str) -> None:
    assert shacl_sparql.minus_form(query) == minus
