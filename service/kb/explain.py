"""`cmpkg explain`: the derivation tree of an inferred statement, down to asserted claims + DOIs.

Walks the provenance the rules leave in graph:inferred: derived nodes (bodies, cautions,
prescription components) name their rule (prov:wasGeneratedBy) and premises
(prov:wasDerivedFrom); what a rule adds about a node it did not mint has one derivation record
per rule and node (cmp:derivedSubject, cmp:derivedProperty, prov:wasGeneratedBy, prov:used).
Asserted sourced statements are the leaves, shown with their source and DOI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from service.kb.reasoning import (
    DERIVED_PROPERTY,
    DERIVED_SUBJECT,
    HERMIT_RULE,
    OWL_RL_RULE,
    PROV_GENERATED_BY,
    PROV_USED,
)
from service.kb.sources import GRAPHS, PREFIXES, curie, expand_curie, load_dataset

_P = {
    "label": ox.NamedNode(PREFIXES["rdfs"] + "label"),
    "type": ox.NamedNode(PREFIXES["rdf"] + "type"),
    "subject": DERIVED_SUBJECT,
    "property": DERIVED_PROPERTY,
    "generated": PROV_GENERATED_BY,
    "derived_from": ox.NamedNode(PREFIXES["prov"] + "wasDerivedFrom"),
    "used": PROV_USED,
    "source": ox.NamedNode(PREFIXES["cmp"] + "source"),
    "reported_in": ox.NamedNode(PREFIXES["cmp"] + "reportedIn"),
    "doi": ox.NamedNode(PREFIXES["cmp"] + "doi"),
    "pmid": ox.NamedNode(PREFIXES["cmp"] + "pmid"),
    "pmcid": ox.NamedNode(PREFIXES["cmp"] + "pmcid"),
    "certainty": ox.NamedNode(PREFIXES["cmp"] + "certainty"),
    "status": ox.NamedNode(PREFIXES["cmp"] + "curationStatus"),
    "dc_source": ox.NamedNode(PREFIXES["dcterms"] + "source"),
    "condition": ox.NamedNode(PREFIXES["cmp"] + "condition"),
    "indirectly_informs": ox.NamedNode(PREFIXES["cmp"] + "indirectlyInforms"),
    "conclusion": ox.NamedNode(PREFIXES["cmp"] + "conclusion"),
    "directness": ox.NamedNode(PREFIXES["cmp"] + "evidenceDirectness"),
    "carried_by": ox.NamedNode(PREFIXES["cmp"] + "carriedBy"),
    "includes": ox.NamedNode(PREFIXES["cmp"] + "includesClaim"),
    "rating_down": ox.NamedNode(PREFIXES["cmp"] + "ratingDown"),
    "capped_by": ox.NamedNode(PREFIXES["cmp"] + "certaintyCappedBy"),
    "domain": ox.NamedNode(PREFIXES["cmp"] + "domain"),
    "reason": ox.NamedNode(PREFIXES["cmp"] + "reason"),
    "rated_down_for": ox.NamedNode(PREFIXES["cmp"] + "ratedDownFor"),
}
BODY = ox.NamedNode(PREFIXES["cmp"] + "EvidenceBody")
_INFERRED = GRAPHS["inferred"]
# Reasoner steps record no premises and tag every claim with generic types; leaving them out
# keeps a tree to the facts a domain rule used.
_QUIET_RULES = {OWL_RL_RULE, HERMIT_RULE}


class UnknownIRI(LookupError):
    pass


@dataclass
class Step:
    """One node of a derivation tree."""

    iri: str
    kind: str  # "derived" | "derivation" | "asserted" | "term" | "seen"
    text: str
    rule: str | None = None
    rule_label: str | None = None
    source: str | None = None  # label of the source of an asserted statement
    doi: str | None = None
    details: list[str] = field(default_factory=list)
    children: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "children" and v not in (None, [])}
        data["children"] = [c.to_dict() for c in self.children]
        return data

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def expand(text: str) -> str:
    """A full IRI from `<iri>`, an absolute IRI, or a CURIE such as `body:a--b--c`."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        return text[1:-1]
    if "://" in text:
        return text
    iri = expand_curie(text)
    if iri is None:
        raise UnknownIRI(f"not an IRI or known CURIE: {text!r}")
    return iri


def compact(term: ox.NamedNode | ox.BlankNode | ox.Literal | str) -> str:
    if isinstance(term, ox.Literal):
        return f'"{term.value}"'
    iri = term if isinstance(term, str) else term.value
    return curie(iri) or f"<{iri}>"


def load_artifact(path: Path) -> ox.Store:
    return load_dataset(path)


class _Graph:
    def __init__(self, store: ox.Store) -> None:
        self.store = store

    def objects(self, s: ox.NamedNode, p: ox.NamedNode) -> list:
        return sorted({q.object for q in self.store.quads_for_pattern(s, p, None, None)}, key=str)

    def subjects(self, p: ox.NamedNode, o) -> list:
        return sorted({q.subject for q in self.store.quads_for_pattern(None, p, o, None)}, key=str)

    def one(self, s: ox.NamedNode, p: ox.NamedNode) -> Any:
        """The first object, or None; an IRI or a literal, as the property says."""
        found = self.objects(s, p)
        return found[0] if found else None

    def label(self, node) -> str:
        if isinstance(node, ox.Literal):
            return f'"{node.value}"'
        found = self.one(node, _P["label"]) if isinstance(node, ox.NamedNode) else None
        return found.value if found else compact(node)

    def known(self, node: ox.NamedNode) -> bool:
        return next(iter(self.store.quads_for_pattern(node, None, None, None)), None) is not None

    def derived(self, record: ox.NamedNode) -> list[tuple[ox.NamedNode, list]]:
        """The statements a derivation record explains, as (property, objects) pairs.

        A record names its node and properties, not each object: it explains every inferred
        (node, property, o), unless another rule's record also derives that property of the
        node; then each explains the objects it used (the rating-down nodes, say)."""
        subject = self.one(record, _P["subject"])
        used = set(self.objects(record, _P["used"]))
        others = [r for r in self.subjects(_P["subject"], subject) if r != record]
        out = []
        for prop in self.objects(record, _P["property"]):
            values = sorted(
                {q.object for q in self.store.quads_for_pattern(subject, prop, None, _INFERRED)},
                key=str,
            )
            if any(prop in self.objects(r, _P["property"]) for r in others):
                values = [v for v in values if v in used]
            out.append((prop, values))
        return out


def explain(store: ox.Store, iri: str, max_depth: int = 12) -> Step:
    """The derivation tree of `iri` (a derived node, a derivation record, or any statement)."""
    graph = _Graph(store)
    node = ox.NamedNode(iri)
    if not graph.known(node):
        raise UnknownIRI(f"{compact(iri)} is not described in the knowledge graph")
    return _step(graph, node, set(), max_depth)


def _rule_step(graph: _Graph, step: Step, node: ox.NamedNode) -> None:
    rule = graph.one(node, _P["generated"])
    if rule is not None:
        step.rule = compact(rule)
        step.rule_label = graph.label(rule)


def _step(
    graph: _Graph,
    node: ox.NamedNode,
    seen: set[str],
    depth: int,
    condition: ox.NamedNode | None = None,
) -> Step:
    """`seen` holds the ancestors (a premise that is an ancestor is not repeated); `condition`
    is the condition of the derived node above, so only the indirect-evidence links that
    matter for it are shown."""
    if node.value in seen:
        return Step(node.value, "seen", f"{graph.label(node)} (shown above)")
    seen = seen | {node.value}
    # Which kind of node this is decides what it says and what its premises are.
    premises: list
    if graph.one(node, _P["subject"]) is not None:  # what one rule derived about one node
        step, premises = _derivation_step(graph, node, condition)
    elif graph.one(node, _P["generated"]) is not None:  # a node minted by a rule
        step, premises = _derived_step(graph, node)
        condition = graph.one(node, _P["condition"]) or condition
    elif graph.one(node, _P["source"]) is not None:  # an asserted sourced statement
        step, premises = _asserted_step(graph, node, condition)
    else:
        return Step(node.value, "term", graph.label(node))
    if depth > 0:
        _add_children(graph, step, node, premises, seen, depth, condition)
    return step


def _derivation_step(
    graph: _Graph, node: ox.NamedNode, condition: ox.NamedNode | None
) -> tuple[Step, list]:
    subject = graph.one(node, _P["subject"])
    said = []
    for prop, values in graph.derived(node):
        if condition is not None and prop == _P["indirectly_informs"]:
            values = [v for v in values if v == condition]  # only the link that matters here
        said.append(f"{compact(prop)} {', '.join(compact(v) for v in values)}")
    step = Step(node.value, "derivation", f"{compact(subject)} {' ; '.join(said)}")
    _rule_step(graph, step, node)
    return step, graph.objects(node, _P["used"])


def _derived_step(graph: _Graph, node: ox.NamedNode) -> tuple[Step, list]:
    step = Step(node.value, "derived", graph.label(node))
    _rule_step(graph, step, node)
    is_body = BODY in graph.objects(node, _P["type"])
    certainty = graph.one(node, _P["certainty"])
    if certainty is not None and not is_body:
        step.details.append(f"certainty: {graph.label(certainty)}")
    domain = graph.one(node, _P["domain"])
    if domain is not None:  # a rating-down: the project's, never the source's
        step.details.append(f"rated down one level by the project for {graph.label(domain)}")
        step.details += [f"reason: {r.value}" for r in graph.objects(node, _P["reason"])]
    for src in graph.objects(node, _P["dc_source"]):
        step.details.append(f"source: {_source_text(graph, src)}")
    premises = graph.objects(node, _P["derived_from"])
    if is_body:
        step.details += _body_details(graph, node)
        # Rating-downs first (each with the claims behind it), then every included claim.
        premises = graph.objects(node, _P["rating_down"]) + premises
    return step, premises


def _asserted_step(
    graph: _Graph, node: ox.NamedNode, condition: ox.NamedNode | None
) -> tuple[Step, list]:
    src = graph.one(node, _P["source"])
    step = Step(node.value, "asserted", graph.label(node), source=graph.label(src))
    doi = graph.one(src, _P["doi"])
    step.doi = doi.value if doi is not None else None
    if doi is None:  # some sources (PMC-only reviews, animal studies) have no DOI
        step.details += [
            f"{key.upper()} {value.value}"
            for key in ("pmid", "pmcid")
            for value in graph.objects(src, _P[key])
        ]
    step.details += _asserted_details(graph, node)
    # What the rules concluded about this statement on the way up (significance, ...).
    premises = [
        record
        for record in graph.subjects(_P["subject"], node)
        if graph.one(record, _P["generated"]) not in _QUIET_RULES
        and (condition is None or _relevant(graph, record, condition))
    ]
    return step, premises


def _relevant(graph: _Graph, record: ox.NamedNode, condition: ox.NamedNode) -> bool:
    """Under a derived node about `condition`, a claim's indirect-evidence record matters only
    when it links the claim to that condition."""
    informs = dict(graph.derived(record)).get(_P["indirectly_informs"])
    return informs is None or condition in informs


def _asserted_details(graph: _Graph, node: ox.NamedNode) -> list[str]:
    """Curation status and the source's own rating, each said to be the source's."""
    details = []
    status = graph.one(node, _P["status"])
    if status is not None:
        details.append(f"curation status: {graph.label(status)}")
    certainty = graph.one(node, _P["certainty"])
    if certainty is not None:
        details.append(f"certainty given by the source: {graph.label(certainty)}")
    rated = [graph.label(d) for d in graph.objects(node, _P["rated_down_for"])]
    if rated:
        details.append("rated down by the source for: " + ", ".join(rated))
    for secondary in graph.objects(node, _P["reported_in"]):
        details.append(f"figures as reported in: {_source_text(graph, secondary)}")
    return details


def _add_children(
    graph: _Graph,
    step: Step,
    node: ox.NamedNode,
    premises: list,
    seen: set[str],
    depth: int,
    condition: ox.NamedNode | None,
) -> None:
    step.children = [
        _step(graph, p, seen, depth - 1, condition)
        for p in premises
        if isinstance(p, ox.NamedNode) and p.value not in seen
    ]
    carriers = {c.value for c in graph.objects(node, _P["carried_by"])}
    for child in step.children:
        if child.iri in carriers:
            child.details.insert(0, "carries the conclusion of this body of evidence")


def _body_details(graph: _Graph, node: ox.NamedNode) -> list[str]:
    """What a body concludes and how certain the project rates it, with the cap that set it."""
    details = []
    for key, text in (("conclusion", "conclusion"), ("directness", "evidence")):
        value = graph.one(node, _P[key])
        if value is not None:
            details.append(f"{text}: {graph.label(value).strip(chr(34))}")
    certainty = graph.one(node, _P["certainty"])
    if certainty is not None:
        details.append(f"certainty (derived for this question): {graph.label(certainty)}")
    for capper in graph.objects(node, _P["capped_by"]):
        level = graph.one(capper, _P["certainty"])
        rated = f" rates it {graph.label(level)}" if level is not None else ""
        details.append(f"capped: {compact(capper)}{rated} (a source's rating of this question)")
    status = graph.one(node, _P["status"])
    if status is not None:
        details.append(f"curation status: {graph.label(status)}")
    carried = graph.objects(node, _P["carried_by"])
    details.append(
        f"{len(graph.objects(node, _P['includes']))} claim(s) included, {len(carried)} carry"
        " the conclusion"
    )
    return details


def _source_text(graph: _Graph, src: ox.NamedNode) -> str:
    doi = graph.one(src, _P["doi"])
    return graph.label(src) + (f", DOI {doi.value}" if doi is not None else "")


def render_text(step: Step, depth: int = 0) -> str:
    """An indented tree: each premise one level below what was derived from it."""
    kind = {"derivation": "derived", "seen": "see above"}.get(step.kind, step.kind)
    indent = "    " * depth
    lines = [f"{indent}{'- ' if depth else ''}{compact(step.iri)}  [{kind}] {step.text}"]
    pad = indent + ("      " if depth else "    ")
    if step.rule:
        lines.append(f"{pad}by {step.rule} ({step.rule_label})")
    if step.kind == "asserted":
        where = step.source or "unknown source"
        lines.append(f"{pad}source: {where}" + (f", DOI {step.doi}" if step.doi else ""))
    lines += [f"{pad}{d}" for d in step.details]
    lines += [render_text(child, depth + 1) for child in step.children]
    return "\n".join(lines)
