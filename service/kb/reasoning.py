"""Reasoning: OWL 2 RL closure, then the domain rules of ontology/rules/ to a fixpoint.

Rules are data (one Turtle file each, `rule:<id> a cmp:Rule ; sh:construct "..."`); this module
only runs them. Every inferred statement is explainable: rules emit their own provenance (derived
nodes carry prov:wasGeneratedBy / prov:wasDerivedFrom, derived plain triples get a derivation
record), and OWL RL entailments get a derivation record naming `rule:owl2-rl`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyoxigraph as ox
import rdflib

from service.kb.sources import GRAPHS, PREFIXES, parse_file, project_root, to_rdflib_graph

NS = "https://w3id.org/cmpkg/"
DERIVATION_NS = NS + "derivation/"
RULE_NS = PREFIXES["rule"]
CMP = PREFIXES["cmp"]
RDF = PREFIXES["rdf"]
RDFS = PREFIXES["rdfs"]
OWL = PREFIXES["owl"]
PROV = PREFIXES["prov"]
SH = PREFIXES["sh"]

RDF_TYPE = ox.NamedNode(RDF + "type")
OWL_RL_RULE = ox.NamedNode(RULE_NS + "owl2-rl")
HERMIT_RULE = ox.NamedNode(RULE_NS + "hermit-classification")

# Prefixes every rule may use without declaring them (rule files hold only the query text).
RULE_PREFIXES: dict[str, str] = {**PREFIXES, "deriv": DERIVATION_NS}


class RuleError(Exception):
    """A rule that cannot run (bad SPARQL) or that breaks the output contract (blank nodes)."""


@dataclass(frozen=True)
class Rule:
    iri: str
    label: str
    order: int
    query: str | None  # None for reasoner steps (OWL RL, HermiT) described as rules

    @property
    def id(self) -> str:
        return self.iri.removeprefix(RULE_NS)


@dataclass
class ReasoningResult:
    inferred: list[ox.Triple]
    owl_rl_count: int  # entailments kept from the OWL RL closure (before their records)
    per_rule: dict[str, int] = field(default_factory=dict)  # new triples each rule added
    rounds: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def rule_files(root: Path | None = None) -> list[Path]:
    root = root or project_root()
    return sorted((root / "ontology" / "rules").glob("*.ttl"))


def load_rules(statements: Iterable[ox.Triple | ox.Quad]) -> list[Rule]:
    """The rules described in the given statements, in run order (order, then IRI)."""
    store = ox.Store()
    store.extend(ox.Quad(s.subject, s.predicate, s.object, ox.DefaultGraph()) for s in statements)
    rows = store.query(
        """SELECT ?r (SAMPLE(?l) AS ?label) (SAMPLE(?o) AS ?order) (SAMPLE(?q) AS ?query) WHERE {
             ?r a cmp:Rule .
             OPTIONAL { ?r rdfs:label ?l }
             OPTIONAL { ?r cmp:order ?o }
             OPTIONAL { ?r sh:construct ?q }
           } GROUP BY ?r""",
        prefixes=RULE_PREFIXES,
    )
    rules = [
        Rule(
            iri=row["r"].value,
            label=row["label"].value if row["label"] else row["r"].value,
            order=int(row["order"].value) if row["order"] else 50,
            query=row["query"].value if row["query"] else None,
        )
        for row in rows
    ]
    return sorted(rules, key=lambda r: (r.order, r.iri))


# --- OWL 2 RL ----------------------------------------------------------------------------------
def _is_ours(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> bool:
    return isinstance(term, ox.NamedNode) and term.value.startswith(NS)


_SCHEMA_RESTATEMENTS = {RDFS + "domain", RDFS + "range"}


def keep_entailment(t: ox.Triple) -> bool:
    """Whether an OWL RL entailment says something new about our own IRIs.

    Drops the axiomatic noise of a closure: reflexive statements (x sameAs x, C subClassOf C),
    typing into OWL/RDF built-ins (owl:Thing, owl:NamedIndividual, rdfs:Resource), anything
    about blank nodes or built-in vocabulary.
    """
    if not _is_ours(t.subject) or t.subject == t.object:
        return False
    # Widened domains/ranges (OWL RL scm-dom*/scm-rng*: P domain C, C subClassOf D => P domain
    # D) are redundant schema restatements: every type they give follows from the declared
    # domain plus the subclass links, which are kept. `reasonable` does not emit them; owlrl does.
    if t.predicate.value in _SCHEMA_RESTATEMENTS:
        return False
    return _is_ours(t.object) or isinstance(t.object, ox.Literal)


def _from_rdflib(term: rdflib.term.Node) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    if isinstance(term, rdflib.URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, rdflib.BNode):
        return ox.BlankNode(str(term))
    if term.language:
        return ox.Literal(str(term), language=term.language)
    if term.datatype:
        return ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype)))
    return ox.Literal(str(term))


def owl_rl_entailments(triples: Sequence[ox.Triple], engine: str = "reasonable") -> list[ox.Triple]:
    """New, non-trivial OWL 2 RL entailments of `triples`, sorted.

    `reasonable` (Rust) is the fast default; `owlrl` (pure Python) is the reference
    implementation the tests compare it with on the shipped data.
    """
    graph = to_rdflib_graph(triples)
    given = set(graph)
    if engine == "reasonable":
        import reasonable

        reasoner = reasonable.PyReasoner()
        reasoner.from_graph(graph)
        closure = reasoner.reason()
    elif engine == "owlrl":
        import owlrl

        owlrl.DeductiveClosure(
            owlrl.OWLRL_Semantics, axiomatic_triples=False, datatype_axioms=False
        ).expand(graph)
        closure = list(graph)
    else:
        raise ValueError(f"unknown OWL RL engine {engine!r}")
    found: set[ox.Triple] = set()
    for s, p, o in closure:
        # Cheap rdflib-level filter first: closures are mostly built-in and given triples.
        # owlrl also works in generalised RDF (literal subjects), which says nothing of ours.
        if not (isinstance(s, rdflib.URIRef) and isinstance(p, rdflib.URIRef)):
            continue
        if not s.startswith(NS) or (s, p, o) in given:
            continue
        t = ox.Triple(_from_rdflib(s), _from_rdflib(p), _from_rdflib(o))
        if keep_entailment(t):
            found.add(t)
    return sorted(found, key=str)


def derivation_records(triples: Iterable[ox.Triple], rule: ox.NamedNode) -> list[ox.Triple]:
    """A reified record per triple naming the rule that produced it (no premises known)."""
    out: list[ox.Triple] = []
    for t in triples:
        key = f"{rule.value} {t.subject.value} {t.predicate.value} {t.object.value}"
        node = ox.NamedNode(DERIVATION_NS + hashlib.md5(key.encode()).hexdigest())
        out += [
            ox.Triple(node, RDF_TYPE, ox.NamedNode(RDF + "Statement")),
            ox.Triple(node, RDF_TYPE, ox.NamedNode(PROV + "Entity")),
            ox.Triple(node, ox.NamedNode(RDF + "subject"), t.subject),
            ox.Triple(node, ox.NamedNode(RDF + "predicate"), t.predicate),
            ox.Triple(node, ox.NamedNode(RDF + "object"), t.object),
            ox.Triple(node, ox.NamedNode(PROV + "wasGeneratedBy"), rule),
        ]
    return out


# --- domain rules ------------------------------------------------------------------------------
def run_rules(
    store: ox.Store,
    rules: Sequence[Rule],
    premises: Sequence[ox.NamedNode],
    target: ox.NamedNode,
) -> tuple[dict[str, int], int]:
    """Run the rules over `premises` + `target`, adding what is new to `target`, to a fixpoint.

    Rules run in strata by `cmp:order`; each stratum reaches its fixpoint before the next starts,
    so rules that aggregate (best certainty of a support) see complete inputs and never leave
    a stale partial answer behind.
    """
    graphs = [*premises, target]
    per_rule: dict[str, int] = {r.id: 0 for r in rules if r.query}
    rounds = 0
    for order in sorted({r.order for r in rules if r.query}):
        stratum = [r for r in rules if r.query and r.order == order]
        while True:
            rounds += 1
            added = 0
            for rule in stratum:
                try:
                    result = store.query(rule.query, prefixes=RULE_PREFIXES, default_graph=graphs)
                except SyntaxError as err:
                    raise RuleError(f"{rule.iri}: {err}") from None
                new = []
                for t in result:
                    if isinstance(t.subject, ox.BlankNode) or isinstance(t.object, ox.BlankNode):
                        raise RuleError(f"{rule.iri} produced a blank node: {t}")
                    if not any(
                        ox.Quad(t.subject, t.predicate, t.object, g) in store for g in graphs
                    ):
                        new.append(ox.Quad(t.subject, t.predicate, t.object, target))
                store.extend(new)
                # A CONSTRUCT can return one triple several times; count what the store gained.
                gained = len(set(new))
                per_rule[rule.id] += gained
                added += gained
            if not added:
                break
    return per_rule, rounds


def reason(
    ontology: Sequence[ox.Triple | ox.Quad],
    asserted: Sequence[ox.Triple | ox.Quad],
    rules: Sequence[Rule],
    owl_rl_engine: str = "reasonable",
) -> ReasoningResult:
    """OWL RL closure of ontology + asserted, then the rules to a fixpoint; the inferred triples."""
    onto = [s.triple if isinstance(s, ox.Quad) else s for s in ontology]
    data = [s.triple if isinstance(s, ox.Quad) else s for s in asserted]
    timings: dict[str, float] = {}

    started = time.perf_counter()
    # "none" is for benchmarks at sizes where the OWL RL closure does not fit in memory.
    entailed = [] if owl_rl_engine == "none" else owl_rl_entailments(onto + data, owl_rl_engine)
    timings["owl_rl"] = time.perf_counter() - started

    started = time.perf_counter()
    store = ox.Store()
    g_onto, g_data, g_inf = GRAPHS["ontology"], GRAPHS["asserted"], GRAPHS["inferred"]
    store.extend(ox.Quad(t.subject, t.predicate, t.object, g_onto) for t in onto)
    store.extend(ox.Quad(t.subject, t.predicate, t.object, g_data) for t in data)
    store.extend(ox.Quad(t.subject, t.predicate, t.object, g_inf) for t in entailed)
    per_rule, rounds = run_rules(store, rules, [g_onto, g_data], g_inf)
    inferred = [q.triple for q in store.quads_for_pattern(None, None, None, g_inf)]
    inferred += derivation_records(entailed, OWL_RL_RULE)
    timings["rules"] = time.perf_counter() - started
    return ReasoningResult(
        inferred=sorted(set(inferred), key=str),
        owl_rl_count=len(entailed),
        per_rule=per_rule,
        rounds=rounds,
        timings=timings,
    )


def load_rule_statements(root: Path | None = None) -> list[ox.Quad]:
    return [q for path in rule_files(root) for q in parse_file(path)]


def is_provenance(t: ox.Triple) -> bool:
    """Statements that only record how something was derived (not domain knowledge)."""
    return t.subject.value.startswith(DERIVATION_NS) or t.predicate.value.startswith(PROV)
