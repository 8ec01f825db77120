"""A presentation in, ranked and explained exercise recommendations out (pure library, no HTTP).

The presentation graph is loaded beside the built knowledge graph (the artifact of
`service.kb.build.ensure_artifact()`), the rules of the artifact's rules graph (the domain rules
plus `ontology/rules/prescribe-*.ttl`) run over it with the engine of `service.kb.reasoning`,
and this module only reads what the rules derived, ranks it and words it. Options come from the
bodies of evidence (one per modality, goal and condition): their conclusion, directness,
certainty and rating-downs are read, never re-derived here. Ranking, per stated condition and
goal: directness (direct before indirect), then conclusion (benefit before inconsistent, which
is shown with its warning), then preference matches, then the body's certainty (`cmp:rank`),
then the largest |SMD| among the carrying claims (only SMDs are compared), then the modality
label, so the same input always gives the same bytes. Bodies that conclude no important
effect, inconclusive or harm are listed as not an option, with the reason.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from service.kb import sources
from service.kb.reasoning import Rule, load_rules, run_rules
from service.kb.sources import GRAPHS, PREFIXES, parse_file, project_root
from service.prescribe.presentation import (
    FIELD_OF_PROPERTY,
    InvalidPresentation,
    Presentation,
    Problem,
    build_presentation,
    load_context,
    parse_body,
)
from service.query.jsonld import json_number
from service.query.terms import TermResolver
from service.vocab import DISCLAIMER, NUMERIC_DATATYPES

CMP = PREFIXES["cmp"]
PRESENTATION_GRAPH = ox.NamedNode(PREFIXES["graph"] + "presentation")
DERIVED_GRAPH = ox.NamedNode(PREFIXES["graph"] + "presentation-inferred")
SHAPE_FILES = ("prefixes.ttl", "presentation.ttl")
DIRECTNESS_ORDER = {"direct": 0, "indirect": 1}
CONCLUSION_ORDER = {"benefit": 0, "inconsistent": 1}
INCONSISTENT_WARNING = (
    "Inconsistent evidence: the claims this option rests on disagree (some show a clear "
    "benefit, others no clear or no important difference); read each claim before relying on it."
)
IMPRECISION_HEURISTIC = (
    "project heuristic, not a source's judgement: at least one carrying pooled estimate of a "
    "continuous outcome rests on fewer than 400 participants (possible imprecision)"
)


def _short(iri: str) -> str:
    """A project prefixed name for text a person reads (field and rule names in reports)."""
    return sources.curie(iri) or iri


def node_id(iri: str) -> str:
    """A node's `@id` in the answer: its full IRI, the API's one convention for ids (issue
    14; CURIEs could not be: some prefixes clash with keys in the published context)."""
    return iri


@dataclass
class KnowledgeBase:
    """The built KG as quads, its rules, a term index and the presentation shapes."""

    quads: list[ox.Quad]
    rules: list[Rule]
    resolver: TermResolver
    shapes: list[ox.Quad]
    context: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    dois: dict[str, str] = field(default_factory=dict)
    # Whether PREMISES (without a presentation) are at the rules' fixpoint: then a prescription
    # runs only the rules its presentation can affect (see derive). False: every rule runs.
    at_fixpoint: bool = False

    @classmethod
    def from_artifact(cls, artifact: Path, root: Path | None = None) -> KnowledgeBase:
        root = root or project_root()
        quads = parse_file(artifact)
        store = ox.Store()
        store.extend(quads)
        rules = load_rules(q for q in quads if q.graph_name == GRAPHS["rules"])
        shapes = [q for name in SHAPE_FILES for q in parse_file(root / "shapes" / name)]
        kb = cls(quads, rules, TermResolver.from_store(store), shapes, load_context(root))
        for row in sources.solutions(
            store.query(
                "SELECT ?s ?l WHERE { ?s rdfs:label ?l }",
                prefixes=PREFIXES,
                use_default_graph_as_union=True,
            )
        ):
            if isinstance(row["s"], ox.NamedNode):
                # Deterministic when a node has several labels: keep the smallest.
                prev = kb.labels.get(row["s"].value)
                if prev is None or row["l"].value < prev:
                    kb.labels[row["s"].value] = row["l"].value
        for row in sources.solutions(
            store.query(
                "SELECT ?s ?d WHERE { ?s cmp:doi ?d }",
                prefixes=PREFIXES,
                use_default_graph_as_union=True,
            )
        ):
            prev = kb.dois.get(row["s"].value)
            if prev is None or row["d"].value < prev:
                kb.dois[row["s"].value] = row["d"].value
        kb.at_fixpoint = premises_at_fixpoint(kb)
        return kb

    def store(self) -> ox.Store:
        """A fresh store per answer: concurrent requests never see each other's presentation."""
        store = ox.Store()
        store.extend(self.quads)
        return store

    def label(self, iri: str) -> str:
        return self.resolver.label(iri) or self.labels.get(iri) or _short(iri)


_CACHE: dict[tuple[str, float], KnowledgeBase] = {}
_CACHE_LOCK = threading.Lock()


def knowledge_base(artifact: Path | None = None, root: Path | None = None) -> KnowledgeBase:
    """The knowledge base of `artifact` (default: the current build, built if stale), cached."""
    if artifact is None:
        from service.kb.build import ensure_artifact

        artifact = ensure_artifact(root)
    artifact = Path(artifact)
    key = (str(artifact.resolve()), artifact.stat().st_mtime)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE.clear()
            _CACHE[key] = KnowledgeBase.from_artifact(artifact, root)
        return _CACHE[key]


# --- validation --------------------------------------------------------------------------------
def validate(pres: Presentation, kb: KnowledgeBase, store: ox.Store) -> None:
    """SHACL on the presentation graph; InvalidPresentation(422) naming field and shape."""
    from service.kb.validation import validate_graphs

    referenced = {t.object for t in pres.triples if isinstance(t.object, ox.NamedNode)}
    types = [
        q.triple
        for iri in sorted(referenced, key=str)
        for q in store.quads_for_pattern(iri, ox.NamedNode(PREFIXES["rdf"] + "type"), None)
    ]
    report = validate_graphs(pres.triples, types, kb.shapes, reasoner=False)
    nodes = pres.node_fields()
    problems = []
    for f in report.findings:
        if f.severity != "Violation":
            continue
        prefix = nodes.get(f.focus_node, f.focus_node)
        name = FIELD_OF_PROPERTY.get(f.path or "", _short(f.path) if f.path else "")
        if prefix and name and not name.startswith("preferences"):
            name = f"{prefix}.{name}"
        rule = _short(f.shape) if f.shape else "shape"
        constraint = re.split(r"[#:]", f.constraint)[-1] if f.constraint else ""
        problems.append(
            Problem(
                name or prefix or "body",
                rule,
                f.message + (f" (value: {f.value})" if f.value else ""),
            )
        )
        if constraint:
            problems[-1].rule = f"{rule} ({constraint})"
    if problems:
        problems.sort(key=lambda p: (p.field, p.rule, p.message))
        raise InvalidPresentation(
            422, "the presentation does not conform to its SHACL shapes", problems
        )


# --- reasoning -----------------------------------------------------------------------------------
PREMISES = (GRAPHS["ontology"], GRAPHS["asserted"], GRAPHS["inferred"], PRESENTATION_GRAPH)


def premises_at_fixpoint(kb: KnowledgeBase) -> bool:
    """Whether the artifact's PREMISES, before any presentation is added, are the fixpoint
    of its rules: checked by running every rule over them once (per artifact), not trusted.

    Why not trust the build, which ran the same rules to their fixpoint: it ran them over
    ontology + rule vocabulary + asserted + OWL RL entailments, then added what its rules
    never saw (HermiT's new subclass links with their records, the OWL RL entailments'
    derivation records), and the vocabulary sits in the rules graph, which a prescription
    does not read. A rule that reads any of those could derive something in every
    prescription. A run that derives nothing has run each rule once over exactly these
    premises and found its whole result already there: that is the fixpoint derive's
    seeding needs. On the shipped build it holds (HermiT adds no link there, and neither the
    records nor the missing vocabulary change any rule's result); when it does not, every
    rule runs for every prescription, as before."""
    per_rule, _rounds = run_rules(kb.store(), kb.rules, PREMISES, DERIVED_GRAPH)
    return not any(per_rule.values())


def derive(pres: Presentation, kb: KnowledgeBase, store: ox.Store) -> dict[str, int]:
    """Run the rules over the knowledge base plus the presentation, into DERIVED_GRAPH.

    With the premises at the fixpoint (kb.at_fixpoint), only the presentation's triples are
    new to the rules, so run_rules is told so and runs only the rules they (or what the
    rules derive from them) can affect: the same triples as running every rule, for about a
    tenth of its CPU on the shipped build (its knowledge-base rules are not run at all)."""
    store.extend(
        ox.Quad(t.subject, t.predicate, t.object, PRESENTATION_GRAPH) for t in pres.triples
    )
    changed = pres.triples if kb.at_fixpoint else None
    per_rule, _rounds = run_rules(store, kb.rules, PREMISES, DERIVED_GRAPH, changed=changed)
    return per_rule


def _select(store: ox.Store, query: str, **bindings: str) -> list[dict[str, Any]]:
    for name, value in bindings.items():
        query = query.replace(f"?{name}_", f"<{value}>")
    rows = sources.solutions(store.query(query, prefixes=PREFIXES, use_default_graph_as_union=True))
    names = [v.value for v in rows.variables]
    return [{n: row[n] for n in names if row[n] is not None} for row in rows]


def _v(term: Any) -> Any:
    if term is None:
        return None
    if isinstance(term, ox.Literal):
        dt = term.datatype.value
        if dt in NUMERIC_DATATYPES:
            return json_number(term.value)
        if dt.endswith("#boolean"):
            return term.value == "true"
        return term.value
    return term.value


def _ref(kb: KnowledgeBase, iri: str) -> dict[str, str]:
    return {"@id": node_id(iri), "label": kb.label(iri)}


def _source(kb: KnowledgeBase, iri: str) -> dict[str, str]:
    """A source with its DOI when it has one, so every explanation is citable."""
    ref = _ref(kb, iri)
    if iri in kb.dois:
        ref["doi"] = kb.dois[iri]
    return ref


def _rules_of(store: ox.Store, node: str) -> list[str]:
    rows = _select(store, "SELECT DISTINCT ?r WHERE { ?n_ prov:wasGeneratedBy ?r }", n=node)
    return [r["r"].value.rsplit("/", 1)[-1] for r in rows]


def _claim(store: ox.Store, kb: KnowledgeBase, iri: str) -> tuple[dict[str, Any], set[str]]:
    rows = _select(
        store,
        """SELECT ?p ?o WHERE { ?c_ ?p ?o }""",
        c=iri,
    )
    props: dict[str, list[Any]] = {}
    for r in rows:
        props.setdefault(r["p"].value, []).append(r["o"])

    def one(name: str) -> Any:
        vals = props.get(CMP + name, [])
        return _v(sorted(vals, key=str)[0]) if vals else None

    source = one("source")
    doi = kb.dois.get(source) if source else None
    measure = one("effectMeasure")
    claim = {
        "@id": node_id(iri),
        "label": kb.label(iri),
        "condition": _ref(kb, one("condition")) if one("condition") else None,
        "outcome": _ref(kb, one("outcome")) if one("outcome") else None,
        "comparator": _ref(kb, one("comparator")) if one("comparator") else None,
        "effectMeasure": _ref(kb, measure) if measure else None,
        "estimate": one("estimate"),
        "ciLower": one("ciLower"),
        "ciUpper": one("ciUpper"),
        "scale": one("scale"),
        "numberOfStudies": one("numberOfStudies"),
        "numberOfParticipants": one("numberOfParticipants"),
        "reportedResult": one("reportedResult"),
        "certainty": _ref(kb, one("certainty")),
        "ratedDownFor": sorted(kb.label(_v(t)) for t in props.get(CMP + "ratedDownFor", [])),
        "clinicallyImportant": one("clinicallyImportant"),
        # The 400-participant flag is the project's heuristic, never the source's rating-down.
        "imprecisionConcern": one("imprecisionConcern") is True,
        "curationStatus": kb.label(one("curationStatus")) if one("curationStatus") else None,
        "source": (
            {"@id": node_id(source), "label": kb.label(source), "doi": doi} if source else None
        ),
    }
    rules = {
        r["r"].value.rsplit("/", 1)[-1]
        for r in _select(
            store,
            """SELECT DISTINCT ?r WHERE {
                 ?d cmp:derivedSubject ?c_ ; cmp:derivedProperty ?p ; prov:wasGeneratedBy ?r .
                 FILTER (?p IN (cmp:significance, cmp:direction)) }""",
            c=iri,
        )
    }
    return {k: v for k, v in claim.items() if v is not None}, rules


def _smd(claims: list[dict[str, Any]]) -> tuple[float | None, str | None]:
    """The largest |SMD| among claims: SMDs are the one measure comparable across reviews."""
    best: tuple[float | None, str | None] = (None, None)
    for c in claims:
        measure = c.get("effectMeasure", {}).get("@id")
        if measure == PREFIXES["measure"] + "smd" and c.get("estimate") is not None:
            size = abs(c["estimate"])
            if best[0] is None or size > best[0]:
                best = (size, c["@id"])
    return best


def _local(iri: str) -> str:
    return iri.rsplit("/", 1)[-1]


def _body(store: ox.Store, kb: KnowledgeBase, body: str) -> dict[str, Any]:
    """What the rules derived for one body of evidence, as the answer shows it."""
    (row,) = _select(
        store,
        """SELECT ?concl ?dir ?cert ?rank ?status ?o ?c ?m WHERE {
             ?b_ cmp:conclusion ?concl ; cmp:evidenceDirectness ?dir ; cmp:certainty ?cert ;
                 cmp:curationStatus ?status ; cmp:outcome ?o ; cmp:condition ?c ; cmp:modality ?m .
             ?cert cmp:rank ?rank }""",
        b=body,
    )
    carriers = sorted(
        x["cl"].value for x in _select(store, "SELECT ?cl WHERE { ?b_ cmp:carriedBy ?cl }", b=body)
    )
    carried = bool(carriers)
    if not carried:  # nothing carries: show what the body holds, so the reason can be read
        carriers = sorted(
            x["cl"].value
            for x in _select(store, "SELECT ?cl WHERE { ?b_ cmp:includesClaim ?cl }", b=body)
        )
    claims, rules = [], set(_rules_of(store, body))
    # The rules that added the body's conclusion, certainty, carriers and status.
    rules |= {
        _local(x["r"].value)
        for x in _select(
            store,
            "SELECT DISTINCT ?r WHERE { ?d cmp:derivedSubject ?b_ ; prov:wasGeneratedBy ?r }",
            b=body,
        )
    }
    for iri in carriers:
        claim, claim_rules = _claim(store, kb, iri)
        claims.append(claim)
        rules |= claim_rules
    downs = []
    for r in _select(
        store,
        """SELECT ?r ?dom ?src WHERE { ?b_ cmp:ratingDown ?r . ?r cmp:domain ?dom .
             OPTIONAL { ?r dcterms:source ?src } } ORDER BY ?r""",
        b=body,
    ):
        down = r["r"].value
        rules |= set(_rules_of(store, down))
        reasons = sorted(
            x["t"].value for x in _select(store, "SELECT ?t WHERE { ?r_ cmp:reason ?t }", r=down)
        )
        concerns = sorted(
            node_id(x["cl"].value)
            for x in _select(store, "SELECT ?cl WHERE { ?r_ prov:wasDerivedFrom ?cl }", r=down)
        )
        entry: dict[str, Any] = {
            "@id": node_id(down),
            "domain": _ref(kb, r["dom"].value),
            "reasons": reasons,
            "claims": concerns,
        }
        if "src" in r:
            entry["source"] = _source(kb, r["src"].value)
        downs.append(entry)
    capped = [
        {"@id": node_id(x["k"].value), "label": kb.label(x["k"].value),
         "certainty": _ref(kb, x["kc"].value), "source": _source(kb, x["src"].value)}
        for x in _select(
            store,
            """SELECT ?k ?kc ?src WHERE { ?b_ cmp:certaintyCappedBy ?k .
                 ?k cmp:certainty ?kc ; cmp:source ?src } ORDER BY ?k""",
            b=body,
        )
    ]  # fmt: skip
    size, size_claim = _smd(claims)
    return {
        "body": body,
        "modality": row["m"].value,
        "outcome": row["o"].value,
        "bodyCondition": row["c"].value,
        "conclusion": _local(row["concl"].value),
        "conclusionIri": row["concl"].value,
        "directness": row["dir"].value,
        "certainty": row["cert"].value,
        "rank": int(row["rank"].value),
        "curationStatus": row["status"].value,
        "claims": claims,
        "carried": carried,
        "ratingDowns": downs,
        "cappedBy": capped,
        "smd": size,
        "smdClaim": size_claim,
        "rules": rules,
    }


def _candidates(store: ox.Store, kb: KnowledgeBase, pres: Presentation) -> list[dict[str, Any]]:
    rows = _select(
        store,
        """SELECT ?cand ?c ?g ?b WHERE {
             ?cand a cmp:CandidateRecommendation ; cmp:forPresentation ?p_ ; cmp:forCondition ?c ;
                   cmp:forGoal ?g ; cmp:basedOn ?b .
           } ORDER BY ?cand""",
        p=pres.iri,
    )
    out = []
    for r in rows:
        body = _body(store, kb, r["b"].value)
        body["rules"] |= set(_rules_of(store, r["cand"].value))
        prefs = sorted(
            x["pref"].value
            for x in _select(
                store, "SELECT ?pref WHERE { ?c_ cmp:matchesPreference ?pref }", c=r["cand"].value
            )
        )
        if prefs:
            body["rules"].add("prescribe-preference")
        out.append({**body, "condition": r["c"].value, "goal": r["g"].value, "preferences": prefs})
    return out


def _excluded(store: ox.Store, kb: KnowledgeBase, pres: Presentation) -> list[dict[str, Any]]:
    """Modalities whose body for a stated goal and condition does not conclude benefit."""
    rows = _select(
        store,
        """SELECT ?x ?c ?g ?b WHERE {
             ?x a cmp:ExcludedOption ; cmp:forPresentation ?p_ ; cmp:forCondition ?c ;
                cmp:forGoal ?g ; cmp:basedOn ?b .
           } ORDER BY ?x""",
        p=pres.iri,
    )
    order = {c: i for i, c in enumerate(pres.conditions)}
    goals = {g: i for i, g in enumerate(pres.goals)}
    found = []
    for r in rows:
        body = _body(store, kb, r["b"].value)
        body["rules"] |= set(_rules_of(store, r["x"].value))
        found.append({**body, "condition": r["c"].value, "goal": r["g"].value})
    found.sort(
        key=lambda e: (
            order.get(e["condition"], 99),
            goals.get(e["goal"], 99),
            kb.label(e["modality"]).casefold(),
        )
    )
    return [
        {
            "condition": _ref(kb, e["condition"]),
            "goal": _ref(kb, e["goal"]),
            "exerciseModality": _ref(kb, e["modality"]),
            "conclusion": _ref(kb, e["conclusionIri"]),
            "reason": _excluded_reason(kb, e),
            **_evidence(kb, e),
            "rulesFired": sorted(e["rules"]),
        }
        for e in found
    ]


def _excluded_reason(kb: KnowledgeBase, e: dict[str, Any]) -> str:
    what = {
        "no-important-effect": "the effect the evidence shows was judged not clinically "
        "important by its source",
        "inconclusive": "the evidence neither shows nor rules out an effect"
        + ("" if e["carried"] else " (no included claim gives a usable result)"),
        "harm": "the evidence shows harm",
    }[e["conclusion"]]
    text = (
        f"Not an option: {kb.label(e['modality'])} for {kb.label(e['goal'])} in "
        f"{kb.label(e['condition'])}: {what}"
    )
    indirect = [r for d in e["ratingDowns"] for r in d["reasons"] if d["domain"]["@id"].endswith(
        "indirectness")]  # fmt: skip
    if indirect:
        text += "; the evidence is indirect (" + "; ".join(indirect) + ")"
    return text + "."


def _evidence(kb: KnowledgeBase, c: dict[str, Any]) -> dict[str, Any]:
    """The body an answer rests on: the audit trail a clinician reads."""
    return {
        "evidence": [
            {
                "evidenceBody": node_id(c["body"]),
                "statement": kb.label(c["body"]),
                "conclusion": _ref(kb, c["conclusionIri"]),
                "outcome": _ref(kb, c["outcome"]),
                "evidenceCondition": _ref(kb, c["bodyCondition"]),
                "directness": c["directness"],
                "certainty": _ref(kb, c["certainty"]),
                "curationStatus": kb.label(c["curationStatus"]),
                "ratingDowns": c["ratingDowns"],
                "certaintyCappedBy": c["cappedBy"],
                "claims": c["claims"],
            }
        ],
        "directness": c["directness"],
        "certainty": _ref(kb, c["certainty"]),
        "curationStatus": kb.label(c["curationStatus"]),
    }


def _certainty_reasons(kb: KnowledgeBase, best: dict[str, Any]) -> list[str]:
    """Why to trust the option less; the project's judgements are always marked as such."""
    reasons = []
    for down in best["ratingDowns"]:
        for reason in down["reasons"]:
            reasons.append(f"rated down by the project for {down['domain']['label']}: {reason}")
    for cap in best["cappedBy"]:
        reasons.append(
            f"capped at {cap['certainty']['label']}: {cap['source']['label']} rates this "
            f"question {cap['certainty']['label']} ({_short(cap['@id'])})"
        )
    if best["rank"] == 0:
        reasons.append(
            "not rated: the sources give no GRADE certainty for the claims this option rests on"
        )
    rated = sorted({d for c in best["claims"] for d in c.get("ratedDownFor", [])})
    if rated:
        reasons.append("rated down by the source for: " + ", ".join(rated))
    if any(c.get("imprecisionConcern") for c in best["claims"]):
        reasons.append(IMPRECISION_HEURISTIC)
    status = best["curationStatus"]
    if status.endswith("/secondary-source"):
        reasons.append(
            "rests only on figures taken from a secondary source (a summary quoting the "
            "review), not checked against the review itself"
        )
    elif status.endswith("/curator-interpretation"):
        reasons.append("rests only on the curators' reading of its sources")
    return reasons


def _key(c: dict[str, Any], kb: KnowledgeBase) -> tuple:
    return (
        DIRECTNESS_ORDER.get(c["directness"], 9),
        CONCLUSION_ORDER.get(c["conclusion"], 9),
        -len(c["preferences"]),
        -c["rank"],
        -(c["smd"] if c["smd"] is not None else -1.0),
        kb.label(c["modality"]).casefold(),
        c["body"],
    )


def _recommendations(
    kb: KnowledgeBase,
    pres: Presentation,
    candidates: list[dict[str, Any]],
    excluded: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in candidates:
        grouped.setdefault((c["condition"], c["goal"]), []).append(c)
    recs: list[dict[str, Any]] = []
    no_evidence: list[str] = []
    for cond in pres.conditions:
        for goal in pres.goals:
            group = sorted(grouped.get((cond, goal), []), key=lambda c: _key(c, kb))
            if not group:
                if any(
                    e["condition"]["@id"] == node_id(cond) and e["goal"]["@id"] == node_id(goal)
                    for e in excluded
                ):
                    no_evidence.append(
                        f"No exercise modality is an option for {kb.label(goal)} in "
                        f"{kb.label(cond)}: the evidence held does not conclude benefit "
                        "(see notOptions for each modality and why)."
                    )
                else:
                    no_evidence.append(
                        f"No evidence in the knowledge graph supports any exercise modality for "
                        f"{kb.label(goal)} in {kb.label(cond)} (nor in a broader condition that "
                        f"includes it)."
                    )
                continue
            for rank, best in enumerate(group, start=1):
                local = "--".join(_local(x) for x in (cond, goal, best["modality"]))
                effect: dict[str, Any] | None = None
                if best["smd"] is not None:
                    effect = {
                        "measure": "SMD",
                        "absoluteValue": best["smd"],
                        "claim": best["smdClaim"],
                        "note": "largest |SMD| among the claims this option rests on; "
                        "only SMDs are compared across options",
                    }
                recs.append(
                    {
                        "@id": f"{pres.iri}/recommendation/{local}",
                        "@type": "CandidateRecommendation",
                        "rank": rank,
                        "condition": _ref(kb, cond),
                        "goal": _ref(kb, goal),
                        "exerciseModality": _ref(kb, best["modality"]),
                        "conclusion": _ref(kb, best["conclusionIri"]),
                        "warning": INCONSISTENT_WARNING
                        if best["conclusion"] == "inconsistent"
                        else None,
                        **_evidence(kb, best),
                        "certaintyReasons": _certainty_reasons(kb, best),
                        "effect": effect,
                        "effectNote": None
                        if effect
                        else "no SMD among the claims this option rests on: effect sizes on "
                        "other measures are shown with each claim but not compared",
                        "preferenceMatches": [_ref(kb, p) for p in best["preferences"]],
                        "rulesFired": sorted(best["rules"]),
                    }
                )
    return [{k: v for k, v in r.items() if v is not None} for r in recs], no_evidence


def _is_under(store: ox.Store, narrow: str, broad: str) -> bool:
    return bool(
        store.query(
            f"ASK {{ <{narrow}> rdfs:subClassOf* <{broad}> }}",
            prefixes=PREFIXES,
            use_default_graph_as_union=True,
        )
    )


def _preference_notes(
    store: ox.Store, kb: KnowledgeBase, pres: Presentation, candidates: list[dict[str, Any]]
) -> list[str]:
    notes = []
    settings = pres.prefers_setting
    if len(settings) > 1:
        notes.append(
            "Conflicting preferences: both "
            + " and ".join(kb.label(s) for s in settings)
            + " are preferred; each counts as a match and neither outranks the evidence order."
        )
    for m in pres.prefers_modality:
        for s in settings:
            if not (_is_under(store, m, s) or _is_under(store, s, m)):
                notes.append(
                    f"Conflicting preferences: {kb.label(m)} is not a kind of {kb.label(s)}; "
                    "options matching either preference are moved up among supported options."
                )
    for pref in pres.prefers_modality + settings:
        if not any(pref in c["preferences"] for c in candidates):
            notes.append(
                f"Preferred {kb.label(pref)}: no supported option matches it for the stated "
                "goals and conditions, so it is not recommended on preference alone."
            )
    if pres.prefers_format is not None:
        notes.append(
            f"Preferred format ({pres.prefers_format}) is recorded for the clinician; "
            "the knowledge graph holds no evidence that ranks these options by group or "
            "individual format."
        )
    if pres.prefers_supervision is not None:
        text = (
            f"Preferred supervision ({pres.prefers_supervision}) is recorded for the "
            "clinician; the knowledge graph holds no evidence that ranks these options by "
            "supervision."
        )
        if pres.prefers_supervision == "home":
            text += (
                " Note that the Booth 2017 consensus endorses supervised exercise (see principles)."
            )
        notes.append(text)
    return notes


def _pathologies(store: ox.Store, kb: KnowledgeBase, pres: Presentation) -> list[dict[str, Any]]:
    rows = _select(
        store,
        """SELECT ?a ?pc ?c ?x ?pa ?addr ?status ?src WHERE {
             ?a a cmp:ApplicableComponent ; cmp:forPresentation ?p_ ; cmp:forCondition ?c ;
                cmp:basedOn ?pc .
             ?pc cmp:component ?x ; cmp:pathology ?pa ; prov:wasDerivedFrom ?addr .
             ?addr a cmp:PathologyAddressing ; cmp:curationStatus ?status ; cmp:source ?src .
           }""",
        p=pres.iri,
    )
    out = []
    for status in pres.pathologies:
        entry: dict[str, Any] = {"pathology": _ref(kb, status.iri)}
        for key, value in (
            ("instrument", status.instrument),
            ("score", status.score),
            ("scoreMin", status.score_min),
            ("scoreMax", status.score_max),
            ("elevated", status.elevated),
        ):
            if value is not None:
                entry[key] = (
                    json_number(value)
                    if isinstance(value, Decimal | int) and not isinstance(value, bool)
                    else value
                )
        if status.score is not None:
            entry["scoreNote"] = (
                "No sourced cut-off is held for this instrument: the score is shown as supplied, "
                "and 'elevated' is the clinician's judgement, never computed from the score."
            )
        comps = sorted(
            {
                (r["c"].value, r["x"].value, r["status"].value, r["src"].value, r["addr"].value)
                for r in rows
                if r["pa"].value == status.iri
            }
        )
        entry["components"] = [
            {
                "condition": _ref(kb, c),
                "component": _ref(kb, x),
                "curationStatus": kb.label(st),
                "statement": _ref(kb, addr),
                "source": _source(kb, src),
                "rulesFired": ["prescribe-component", "prescription-component"],
            }
            for c, x, st, src, addr in comps
        ]
        if status.elevated is False:
            entry["note"] = (
                "Marked not elevated by the clinician: no components are proposed for it."
            )
        elif not comps:
            entry["note"] = (
                "No prescription component in the knowledge graph addresses this secondary "
                "pathology in the stated conditions."
            )
        out.append(entry)
    return out


def _principles(store: ox.Store, kb: KnowledgeBase, pres: Presentation) -> list[dict[str, Any]]:
    rows = _select(
        store,
        """SELECT DISTINCT ?pr ?f ?src ?c WHERE {
             ?a a cmp:ApplicablePrinciple ; cmp:forPresentation ?p_ ; cmp:principle ?pr ;
                cmp:forCondition ?c ; prov:wasDerivedFrom ?f .
             ?f cmp:source ?src .
           }""",
        p=pres.iri,
    )
    by_principle: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: (r["pr"].value, r["f"].value, r["c"].value)):
        entry = by_principle.setdefault(
            r["pr"].value,
            {
                "principle": _ref(kb, r["pr"].value),
                "conditions": [],
                "statements": [],
                "rulesFired": ["prescribe-principle"],
            },
        )
        for key, value in (
            ("conditions", _ref(kb, r["c"].value)),
            ("statements", _ref(kb, r["f"].value)),
        ):
            if value not in entry[key]:
                entry[key].append(value)
        entry["source"] = _source(kb, r["src"].value)
    return [by_principle[k] for k in sorted(by_principle)]


def _cautions(store: ox.Store, kb: KnowledgeBase, pres: Presentation) -> list[dict[str, Any]]:
    rows = _select(
        store,
        """SELECT DISTINCT ?caution ?c ?text ?src WHERE {
             ?a a cmp:ApplicableCaution ; cmp:forPresentation ?p_ ; cmp:forCondition ?c ;
                cmp:basedOn ?caution .
             ?caution cmp:cautionText ?text ; dcterms:source ?src .
           }""",
        p=pres.iri,
    )
    return [
        {
            "@id": node_id(r["caution"].value),
            "condition": _ref(kb, r["c"].value),
            "text": r["text"].value,
            "source": _source(kb, r["src"].value),
            "rulesFired": ["exercise-caution", "prescribe-caution"],
        }
        for r in sorted(rows, key=lambda r: (r["c"].value, r["caution"].value))
    ]


def _summary(
    kb: KnowledgeBase,
    pres: Presentation,
    recs: list[dict[str, Any]],
    no_evidence: list[str],
    excluded: list[dict[str, Any]],
    pathologies: list[dict[str, Any]],
    cautions: list[dict[str, Any]],
    notes: list[str],
) -> str:
    parts = []
    for cond in pres.conditions:
        for goal in pres.goals:
            mine = [
                r
                for r in recs
                if r["condition"]["@id"] == node_id(cond) and r["goal"]["@id"] == node_id(goal)
            ]
            if not mine:
                continue
            listed = "; ".join(
                f"{r['rank']}. {r['exerciseModality']['label']} ({r['directness']} evidence, "
                f"{r['certainty']['label']}"
                + (", inconsistent: read the warning" if r.get("warning") else "")
                + (f", {r['curationStatus']}" if r["curationStatus"] != "confirmed" else "")
                + (", matches preference" if r.get("preferenceMatches") else "")
                + ")"
                for r in mine
            )
            parts.append(f"For {kb.label(goal)} in {kb.label(cond)}: {listed}.")
    parts += no_evidence
    parts += [e["reason"] for e in excluded]
    components = sorted({c["component"]["label"] for p in pathologies for c in p["components"]})
    if components:
        parts.append(
            "To address the stated secondary pathologies, consider: " + ", ".join(components) + "."
        )
    if cautions:
        parts.append(
            f"{len(cautions)} caution(s) apply: exercise can increase pain in some people with "
            "these conditions; see cautions for what each source reports."
        )
    if any("scoreNote" in p for p in pathologies):
        parts.append(
            "No sourced cut-off is held for the instruments given; 'elevated' is as supplied."
        )
    parts += notes
    parts.append(DISCLAIMER)
    return " ".join(parts)


def prescribe(body: Any, kb: KnowledgeBase) -> dict[str, Any]:
    """The explained, ranked answer for a decoded JSON presentation; raises InvalidPresentation."""
    pres = build_presentation(body, kb.resolver)
    store = kb.store()
    validate(pres, kb, store)
    derive(pres, kb, store)
    candidates = _candidates(store, kb, pres)
    excluded = _excluded(store, kb, pres)
    recs, no_evidence = _recommendations(kb, pres, candidates, excluded)
    notes = _preference_notes(store, kb, pres, candidates)
    pathologies = _pathologies(store, kb, pres)
    principles = _principles(store, kb, pres)
    cautions = _cautions(store, kb, pres)
    fired = sorted(
        {r for rec in recs for r in rec["rulesFired"]}
        | {r for e in excluded for r in e["rulesFired"]}
        | {r for p in pathologies for c in p["components"] for r in c["rulesFired"]}
        | {r for p in principles for r in p["rulesFired"]}
        | {r for c in cautions for r in c["rulesFired"]}
    )
    return {
        "@context": answer_context(kb.context),
        "@id": pres.iri,
        "@type": "Presentation",
        "disclaimer": DISCLAIMER,
        "summary": _summary(kb, pres, recs, no_evidence, excluded, pathologies, cautions, notes),
        "input": {
            "conditions": [_ref(kb, c) for c in pres.conditions],
            "goals": [_ref(kb, g) for g in pres.goals],
            "preferredModalities": [_ref(kb, m) for m in pres.prefers_modality],
            "preferredSettings": [_ref(kb, s) for s in pres.prefers_setting],
            **({"preferredFormat": pres.prefers_format} if pres.prefers_format is not None else {}),
            **(
                {"preferredSupervision": pres.prefers_supervision}
                if pres.prefers_supervision is not None
                else {}
            ),
        },
        "recommendations": recs,
        "noEvidence": no_evidence,
        "notOptions": excluded,
        "secondaryPathologies": pathologies,
        "principles": principles,
        "cautions": cautions,
        "notes": notes,
        "rulesFired": fired,
    }


def answer_context(context: dict[str, Any]) -> dict[str, Any]:
    """The presentation context for the answer, without numeric coercions.

    The answer writes numbers as JSON numbers, and JSON-LD to-RDF writes a fractional one
    under "@type": xsd:decimal in xsd:double's form ("6.85E1"^^xsd:decimal, not a decimal);
    uncoerced, it reads as xsd:double (or xsd:integer), the API's convention (issue 14).
    """
    numeric = {"xsd:" + iri.removeprefix(PREFIXES["xsd"]) for iri in NUMERIC_DATATYPES}
    return {
        term: (
            {k: v for k, v in definition.items() if k != "@type"}
            if isinstance(definition, dict) and definition.get("@type") in numeric
            else definition
        )
        for term, definition in context.items()
    }


def prescribe_json(raw: bytes, kb: KnowledgeBase) -> dict[str, Any]:
    return prescribe(parse_body(raw), kb)


def error_document(err: InvalidPresentation) -> dict[str, Any]:
    return {**err.to_dict(), "disclaimer": DISCLAIMER}


def render(document: dict[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, so equal answers are byte-identical."""
    return (
        json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, default=_json_default)
        + "\n"
    ).encode("utf-8")


def _json_default(value: Any) -> Any:
    """Numbers are JSON numbers (service.query.jsonld.json_number: the API's one rule)."""
    if isinstance(value, Decimal):
        return json_number(value)
    raise TypeError(f"not JSON serialisable: {value!r}")
