"""Graph nodes -> FHIR R5 resources (plain JSON dicts; service.fhir.bundle validates them).

One Citation per source, one EvidenceVariable per condition, modality, comparator and outcome
that a claim or body names, one Evidence per claim and one Evidence per body of evidence, and
a StructureDefinition per extension the others use (service.fhir.extensions).
The table "our property -> FHIR path" in docs/FHIR.md is the specification of this module.

Certainty is kept apart by who rated it: every `certainty` entry carries the rating-origin
extension (`source` = as the source published it, `project` = this project's rules), so a
project downgrade is never shown as a source's and a source's rating never as ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from service.fhir import codes
from service.fhir.extensions import EXTENSIONS, structure_definition
from service.fhir.graph import Graph, Node, expand
from service.kb.sources import PREFIXES

Resource = dict[str, Any]

PROJECT = "cmp-kg"  # Evidence.certainty.rater for the project's own ratings
CMP = PREFIXES["cmp"]
NNTB = PREFIXES["measure"] + "nntb"
IMPRECISION_RULE = PREFIXES["rule"] + "imprecision-concern"

# Which EvidenceVariable role a term plays, by the namespace it lives in.
ROLES = {
    PREFIXES["cond"]: ("population", "population"),
    PREFIXES["mod"]: ("exposure", "exposure"),
    PREFIXES["comp"]: ("referenceExposure", "reference exposure"),
    PREFIXES["out"]: ("measuredVariable", "measured variable"),
}


@dataclass
class Entry:
    """One resource and the terms /fhir search matches it by (parameter -> IRIs)."""

    resource: Resource
    search: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return str(self.resource["resourceType"])

    @property
    def id(self) -> str:
        return str(self.resource["id"])


# --- small builders ---------------------------------------------------------------------------


def number(lexical: str) -> int | float:
    """An xsd:integer or xsd:decimal lexical form as a JSON number (value kept exactly)."""
    value = Decimal(lexical)
    if value == value.to_integral_value() and not any(c in lexical for c in ".eE"):
        return int(value)
    return float(lexical)


def reference(rtype: str, iri: str, graph: Graph) -> dict[str, str]:
    ref = {"reference": f"{rtype}/{codes.resource_id(iri)}"}
    label = graph.label(iri)
    if label:
        ref["display"] = label
    return ref


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    found = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)], "text": display}


def extension(url: str, kind: str, value: Any) -> dict[str, Any]:
    return {"url": url, f"value{kind}": value}


def own_coding(iri: str, graph: Graph) -> dict[str, str]:
    """A value of ours as a Coding: system = its namespace, code = its local name."""
    code = codes.local_name(iri)
    return coding(iri[: len(iri) - len(code)], code, graph.label(iri))


def _base(rtype: str, iri: str, title: str | None) -> Resource:
    resource: Resource = {
        "resourceType": rtype,
        "id": codes.resource_id(iri),
        "url": iri,
        "identifier": [{"system": codes.IRI_SYSTEM, "value": iri}],
    }
    if title:
        resource["title"] = title
    resource["status"] = "active"
    return resource


def _notes(texts: list[str]) -> list[dict[str, str]]:
    return [{"text": t} for t in texts]


# --- Citation ---------------------------------------------------------------------------------

_IDENTIFIERS = (
    ("cmp:doi", "https://doi.org", "DOI"),
    ("cmp:pmid", "https://pubmed.ncbi.nlm.nih.gov", "PMID"),
    ("cmp:pmcid", "https://www.ncbi.nlm.nih.gov/pmc", "PMCID"),
    ("cmp:cochraneId", None, "Cochrane review number"),
)


def citation(node: Node, graph: Graph) -> Entry:
    resource = _base("Citation", node.iri, node.first("rdfs:label"))
    description = node.first("dcterms:description")
    if description:
        resource["description"] = description
    text = node.first("cmp:citation")
    if text:
        resource["summary"] = [{"text": text}]
    cited = _cited_artifact(node, graph)
    if cited:
        resource["citedArtifact"] = cited
    return Entry(resource)


def _cited_artifact(node: Node, graph: Graph) -> dict[str, Any]:
    """Citation.citedArtifact: identifiers, year, publication type, the review it is part of."""
    cited: dict[str, Any] = {}
    identifiers = []
    for prop, system, kind in _IDENTIFIERS:
        for value in node.all(prop):
            identifier: dict[str, Any] = {"type": {"text": kind}, "value": value}
            if system:
                identifier["system"] = system
            identifiers.append(identifier)
    if identifiers:
        cited["identifier"] = identifiers
    year = node.first("cmp:year")
    if year:
        cited["publicationForm"] = [{"articleDate": year}]
    kinds = sorted(
        label for t in node.all("rdf:type") if t != CMP + "Source" and (label := graph.label(t))
    )
    if kinds:
        cited["classification"] = [
            {"type": {"text": "publication type"}, "classifier": [{"text": k} for k in kinds]}
        ]
    parts = [
        {
            "type": "part-of",
            "label": "included in",
            "resourceReference": reference("Citation", o, graph),
        }
        for o in node.all("cmp:includedIn")
        if o in graph.sources
    ]
    if parts:
        cited["relatesTo"] = parts
    return cited


# --- EvidenceVariable -------------------------------------------------------------------------


def role_of(iri: str) -> tuple[str, str] | None:
    return next((role for base, role in ROLES.items() if iri.startswith(base)), None)


def variable(node: Node, graph: Graph) -> Entry:
    label = node.first("rdfs:label")
    resource = _base("EvidenceVariable", node.iri, label)
    definition = node.first("skos:definition")
    if definition:
        resource["description"] = definition
    codings = [coding(codes.IRI_SYSTEM, node.iri, label)]
    for match, strength in (("skos:exactMatch", "exact"), ("skos:closeMatch", "close")):
        for external in node.all(match):
            system, code = codes.term_coding(external)
            found: dict[str, Any] = {
                "extension": [extension(codes.EXT_MATCH, "Code", strength)],
                **coding(system, code),
            }
            codings.append(found)
    characteristic: dict[str, Any] = {"definitionCodeableConcept": {"coding": codings}}
    if label:
        characteristic["description"] = label
        characteristic["definitionCodeableConcept"]["text"] = label
    resource["characteristic"] = [characteristic]
    return Entry(resource)


def variable_definition(
    iri: str, graph: Graph, link: str = "observed", description: str | None = None
) -> dict[str, Any]:
    role = role_of(iri)
    assert role is not None, f"no FHIR variable role for {iri}"
    found: dict[str, Any] = {}
    if description:
        found["description"] = description
    found["variableRole"] = concept(codes.VARIABLE_ROLE, *role)
    found[link] = reference("EvidenceVariable", iri, graph)
    return found


# --- certainty --------------------------------------------------------------------------------


def rating(level: str | None, graph: Graph) -> dict[str, Any]:
    """A certainty level: its HL7 certainty-rating code, or text only when it has none
    (cert:not-reported is no judgement of low certainty, so it gets no code)."""
    node = graph.values.get(level or "")
    label = (node.first("rdfs:label") if node else None) or "certainty not reported"
    if node:
        for match in node.all("skos:exactMatch"):
            code = codes.hl7_code(match, codes.CERTAINTY_RATING)
            if code:
                return concept(codes.CERTAINTY_RATING, code, label)
    return {"text": label}


def domain(iri: str, graph: Graph) -> dict[str, Any]:
    node = graph.values.get(iri)
    label = (node.first("rdfs:label") if node else None) or codes.local_name(iri)
    if node:
        for match in node.all("skos:exactMatch"):
            code = codes.hl7_code(match, codes.CERTAINTY_TYPE)
            if code:
                return concept(codes.CERTAINTY_TYPE, code, label)
    return {"text": label}


def origin(who: str) -> dict[str, Any]:
    return extension(codes.EXT_RATING_ORIGIN, "Code", who)


OVERALL = concept(codes.CERTAINTY_TYPE, "Overall", "Overall certainty")


def source_certainty(level: str | None, rater: str | None, graph: Graph) -> dict[str, Any]:
    entry: dict[str, Any] = {"extension": [origin("source")], "type": OVERALL}
    entry["rating"] = rating(level, graph)
    if rater:
        entry["rater"] = rater
    return entry


# --- Evidence for a claim ---------------------------------------------------------------------


def _statistic(node: Node, graph: Graph) -> dict[str, Any] | None:
    stat: dict[str, Any] = {}
    higher = node.first("cmp:higherIsBetter")
    if higher is not None:
        stat["extension"] = [
            extension(codes.EXT_HIGHER_IS_BETTER, "Boolean", higher in ("true", "1"))
        ]
    result = node.first("cmp:reportedResult")
    if result:
        stat["description"] = result
    events = [
        node.first(f"cmp:{p}")
        for p in ("interventionEvents", "interventionTotal", "controlEvents", "controlTotal")
    ]
    if all(events):
        stat["note"] = [
            {
                "text": f"Events: {events[0]} of {events[1]} with the intervention, "
                f"{events[2]} of {events[3]} with the comparator."
            }
        ]
    measure = node.first("cmp:effectMeasure")
    if measure:
        label = graph.label(measure) or codes.local_name(measure)
        code = codes.STATISTIC_CODES.get(measure)
        stat["statisticType"] = (
            concept(codes.STATISTIC_TYPE, code[0], code[1]) | {"text": label}
            if code
            else {"text": label}
        )
    nntb = measure == NNTB
    estimate = node.first("cmp:estimate") or (node.first("cmp:nntb") if nntb else None)
    if estimate is not None:
        stat["quantity"] = {"value": number(estimate)}
    sample = {
        key: number(value)
        for key, prop in (
            ("numberOfStudies", "cmp:numberOfStudies"),
            ("numberOfParticipants", "cmp:numberOfParticipants"),
        )
        if (value := node.first(prop)) is not None
    }
    if sample:
        stat["sampleSize"] = sample
    lower = node.first("cmp:ciLower") or (node.first("cmp:nntbLower") if nntb else None)
    upper = node.first("cmp:ciUpper") or (node.first("cmp:nntbUpper") if nntb else None)
    if lower is not None or upper is not None:
        bounds = {}
        if lower is not None:
            bounds["low"] = {"value": number(lower)}
        if upper is not None:
            bounds["high"] = {"value": number(upper)}
        stat["attributeEstimate"] = [
            {
                "description": "95% confidence interval",
                "type": concept(codes.ATTRIBUTE_ESTIMATE_TYPE, "C53324", "Confidence interval"),
                "level": 95,
                "range": bounds,
            }
        ]
    return stat or None


def _outcome_description(node: Node) -> str | None:
    parts = []
    if node.first("cmp:scale"):
        parts.append(f"Scale: {node.first('cmp:scale')}.")
    if node.first("cmp:timepoint"):
        parts.append(f"Time point: {node.first('cmp:timepoint')}.")
    return " ".join(parts) or None


def claim_evidence(node: Node, graph: Graph) -> Entry:
    resource = _base("Evidence", node.iri, node.first("rdfs:label"))
    status = node.first("cmp:curationStatus")
    if status:
        resource["extension"] = [
            extension(codes.EXT_CURATION_STATUS, "Coding", own_coding(status, graph))
        ]
    artifacts = [
        {
            "type": "derived-from",
            "label": "source",
            "resourceReference": reference("Citation", s, graph),
        }
        for s in node.all("cmp:source")
    ] + [
        {
            "type": "documentation",
            "label": "reported in",
            "resourceReference": reference("Citation", s, graph),
        }
        for s in node.all("cmp:reportedIn")
    ]
    if artifacts:
        resource["relatedArtifact"] = artifacts
    if node.all("cmp:curationNote"):
        resource["note"] = _notes(node.all("cmp:curationNote"))
    definitions = []
    for prop in ("cmp:condition", "cmp:intervention", "cmp:comparator", "cmp:outcome"):
        for term in node.all(prop):
            text = _outcome_description(node) if prop == "cmp:outcome" else None
            definitions.append(variable_definition(term, graph, "observed", text))
    resource["variableDefinition"] = definitions
    stat = _statistic(node, graph)
    if stat:
        resource["statistic"] = [stat]
    sources = [graph.label(s) for s in node.all("cmp:source")]
    overall = source_certainty(node.first("cmp:certainty"), sources[0] if sources else None, graph)
    downgrades = [
        {
            "extension": [origin("source")],
            "type": domain(d, graph),
            "rating": {"text": "rated down"},
        }
        for d in node.all("cmp:ratedDownFor")
    ]
    if downgrades:
        overall["subcomponent"] = downgrades
    certainty = [overall]
    if node.first("cmp:imprecisionConcern") in ("true", "1"):
        certainty.append(
            {
                "extension": [
                    origin("project"),
                    extension(codes.EXT_GENERATED_BY, "Uri", IMPRECISION_RULE),
                ],
                "description": "Project heuristic, not the source's rating: a pooled continuous "
                "estimate from fewer than 400 participants may be imprecise.",
                "type": domain(PREFIXES["dom"] + "imprecision", graph),
                "rating": {"text": "possible concern (project heuristic)"},
                "rater": PROJECT,
            }
        )
    resource["certainty"] = certainty
    search = {
        "condition": frozenset(node.all("cmp:condition")),
        "intervention": frozenset(node.all("cmp:intervention")),
        "outcome": frozenset(node.all("cmp:outcome")),
    }
    return Entry(resource, search)


# --- Evidence for a body of evidence ----------------------------------------------------------

BODY_COMPARATOR = (
    "Comparators without exercise, as each included claim names them; head-to-head "
    "comparisons with another form or dose of exercise are not part of a body."
)


def _project_downgrade(node: Node, graph: Graph) -> dict[str, Any]:
    extensions = [origin("project")]
    extensions += [
        extension(codes.EXT_GENERATED_BY, "Uri", r) for r in node.all("prov:wasGeneratedBy")
    ]
    entry: dict[str, Any] = {"extension": extensions}
    reasons = node.all("cmp:reason")  # one per mismatch (population, outcome)
    if reasons:
        entry["description"] = "\n\n".join(reasons)  # markdown: one paragraph each
    method = [
        f"Method: {graph.label(s) or s}"
        + (f" (doi:{doi})" if (doi := graph.sources[s].first("cmp:doi")) else "")
        if s in graph.sources
        else f"Method: {s}"
        for s in node.all("dcterms:source")
    ]
    if method:
        entry["note"] = _notes(method)
    domains = node.all("cmp:domain")
    entry["type"] = domain(domains[0], graph) if domains else {"text": "rating down"}
    # body-certainty lowers one level per rating-down (rule:body-certainty)
    entry["rating"] = concept(codes.CERTAINTY_RATING, "downcode1", "reduce rating: -1")
    entry["rating"]["text"] = "rated down one level by the project"
    entry["rater"] = PROJECT
    return entry


def body_evidence(node: Node, graph: Graph) -> Entry:
    resource = _base("Evidence", node.iri, node.first("rdfs:label"))
    extensions = []
    status = node.first("cmp:curationStatus")
    if status:
        extensions.append(extension(codes.EXT_CURATION_STATUS, "Coding", own_coding(status, graph)))
    conclusion = node.first("cmp:conclusion")
    if conclusion:
        extensions.append(extension(codes.EXT_CONCLUSION, "Coding", own_coding(conclusion, graph)))
    directness = node.first("cmp:evidenceDirectness")
    if directness:
        extensions.append(extension(codes.EXT_DIRECTNESS, "Code", directness))
    extensions += [
        extension(codes.EXT_GENERATED_BY, "Uri", r) for r in node.all("prov:wasGeneratedBy")
    ]
    if extensions:
        resource["extension"] = extensions
    if conclusion:
        label = graph.label(conclusion) or codes.local_name(conclusion)
        definition = (
            graph.values[conclusion].first("skos:definition")
            if (conclusion in graph.values)
            else None
        )
        resource["assertion"] = f"{label}: {definition}" if definition else label
    carrying = set(node.all("cmp:carriedBy"))
    artifacts = [
        {
            "type": "composed-of",
            "label": "included claim",
            "resourceReference": reference("Evidence", c, graph),
        }
        for c in node.all("cmp:includesClaim")
    ] + [
        {
            "type": "derived-from",
            "label": "carries the conclusion",
            "resourceReference": reference("Evidence", c, graph),
        }
        for c in sorted(carrying)
    ]
    methods = sorted(
        {
            m
            for r in node.all("cmp:ratingDown")
            if r in graph.rating_downs
            for m in graph.rating_downs[r].all("dcterms:source")
            if m in graph.sources
        }
    )
    artifacts += [
        {
            "type": "documentation",
            "label": "method of a rating down",
            "resourceReference": reference("Citation", m, graph),
        }
        for m in methods
    ]
    if artifacts:
        resource["relatedArtifact"] = artifacts
    definitions = [
        variable_definition(t, graph, "intended")
        for prop in ("cmp:condition", "cmp:modality", "cmp:outcome")
        for t in node.all(prop)
    ]
    definitions.insert(
        min(2, len(definitions)),
        {
            "description": BODY_COMPARATOR,
            "variableRole": concept(codes.VARIABLE_ROLE, *ROLES[PREFIXES["comp"]]),
        },
    )
    resource["variableDefinition"] = definitions
    rules = graph.derived_by.get(node.iri, {}).get(expand("cmp:certainty"), [])
    overall: dict[str, Any] = {
        "extension": [origin("project")]
        + [extension(codes.EXT_GENERATED_BY, "Uri", r) for r in rules],
        "description": "Rated by the project's rules for this question; never above a "
        "source's own rating of the same question.",
        "type": OVERALL,
        "rating": rating(node.first("cmp:certainty"), graph),
        "rater": PROJECT,
    }
    downgrades = [
        _project_downgrade(graph.rating_downs[r], graph)
        for r in node.all("cmp:ratingDown")
        if r in graph.rating_downs
    ]
    if downgrades:
        overall["subcomponent"] = downgrades
    certainty = [overall]
    for finding_iri in node.all("cmp:certaintyCappedBy"):
        finding = graph.findings.get(finding_iri)
        if finding is None:
            continue
        sources = [graph.label(s) for s in finding.all("cmp:source")]
        entry = source_certainty(
            finding.first("cmp:certainty"), sources[0] if sources else None, graph
        )
        entry["description"] = (
            "The source's own rating of this question, which caps the project's rating ("
            f"{finding.first('rdfs:label') or finding_iri})."
        )
        certainty.append(entry)
    resource["certainty"] = certainty
    search = {
        "condition": frozenset(node.all("cmp:condition")),
        "intervention": frozenset(node.all("cmp:modality")),
        "outcome": frozenset(node.all("cmp:outcome")),
    }
    return Entry(resource, search)


def entries(graph: Graph) -> list[Entry]:
    """Every resource of one build, in a fixed order: type, then id."""
    found = [citation(n, graph) for n in graph.sources.values()]
    named = {
        t
        for n in graph.claims.values()
        for p in ("cmp:condition", "cmp:intervention", "cmp:comparator", "cmp:outcome")
        for t in n.all(p)
    }
    named |= {
        t
        for n in graph.bodies.values()
        for p in ("cmp:condition", "cmp:modality", "cmp:outcome")
        for t in n.all(p)
    }
    # a term with no label or match still gets its variable, so no reference dangles
    terms = [graph.terms.get(t) or Node(t) for t in sorted(named) if role_of(t)]
    found += [variable(n, graph) for n in terms]
    found += [claim_evidence(n, graph) for n in graph.claims.values()]
    found += [body_evidence(n, graph) for n in graph.bodies.values()]
    found += [Entry(structure_definition(spec)) for spec in EXTENSIONS]
    order = {"Citation": 0, "EvidenceVariable": 1, "Evidence": 2, "StructureDefinition": 3}
    found.sort(key=lambda e: (order[e.type], e.id))
    seen: dict[tuple[str, str], str] = {}
    for entry in found:
        key = (entry.type, entry.id)
        if key in seen:
            raise ValueError(
                f"two resources would be {entry.type}/{entry.id}: "
                f"{seen[key]} and {entry.resource['url']}"
            )
        seen[key] = entry.resource["url"]
    return found
