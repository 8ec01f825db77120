"""Quality checks on the OWL ontology in ontology/ (schema, term hierarchies, value sets).

Every term labelled and defined once, no clashing labels, every property typed and scoped, the
header complete, external matches well-formed, the hierarchies and disjointness the issue asks
for present, and no stray blank nodes. The checks read only the repository's ontology files.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pyoxigraph as ox
import pytest

from service.kb.sources import PREFIXES, knowledge_files, load_store, parse_file, sparql_prefixes

NS = "https://w3id.org/cmpkg/"
ONTOLOGY = NS + "ontology"
OWL = PREFIXES["owl"]
XSD = PREFIXES["xsd"]
CMP = PREFIXES["cmp"]
RDF_TYPE = PREFIXES["rdf"] + "type"


def words(text: str) -> list[str]:
    """Whitespace-separated local names: long lists read better as prose than as literals."""
    return text.split()


@pytest.fixture(scope="module")
def store() -> ox.Store:
    files = knowledge_files()["ontology"]
    assert files, "no ontology files found"
    return load_store({"ontology": files})


def curator_terms() -> set[str]:
    """Terms the data curator declares in extra-terms.ttl on top of the fixed lists below."""
    path = next((p for p in knowledge_files()["ontology"] if p.name == "extra-terms.ttl"), None)
    if path is None:
        return set()
    rdf_type = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
    return {q.subject.value for q in parse_file(path) if q.predicate.value == rdf_type}


def select(
    store: ox.Store, query: str
) -> list[dict[str, ox.NamedNode | ox.Literal | ox.BlankNode]]:
    solutions = store.query(sparql_prefixes() + query, use_default_graph_as_union=True)
    names = [v.value for v in solutions.variables]
    return [{n: s[n] for n in names if s[n] is not None} for s in solutions]


def iris(store: ox.Store, query: str, var: str = "x") -> set[str]:
    return {row[var].value for row in select(store, query) if var in row}


def ask(store: ox.Store, query: str) -> bool:
    return bool(store.query(sparql_prefixes() + query, use_default_graph_as_union=True))


def defined_terms(store: ox.Store) -> set[str]:
    """Every IRI of our namespace that the ontology declares or types (classes, properties,
    individuals, agents), except the ontology and version IRIs themselves."""
    found = iris(
        store,
        """SELECT DISTINCT ?x WHERE { ?x rdf:type ?t .
           FILTER (isIRI(?x) && STRSTARTS(STR(?x), "https://w3id.org/cmpkg/")) }""",
    )
    return found - {ONTOLOGY}


# --- header -------------------------------------------------------------------------------------


def test_header_has_version_license_and_dates(store: ox.Store) -> None:
    rows = select(
        store,
        """SELECT ?version ?info ?title ?description ?license ?created ?modified WHERE {
            <https://w3id.org/cmpkg/ontology> a owl:Ontology ;
                owl:versionIRI ?version ; owl:versionInfo ?info ; dcterms:title ?title ;
                dcterms:description ?description ; dcterms:license ?license ;
                dcterms:created ?created ; dcterms:modified ?modified . }""",
    )
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["version"].value == "https://w3id.org/cmpkg/ontology/0.1.0"
    assert row["info"].value == "0.1.0"
    assert row["license"].value == "https://creativecommons.org/licenses/by/4.0/"
    assert "not advice to patients" in row["description"].value


def test_exactly_one_ontology_header(store: ox.Store) -> None:
    assert iris(store, "SELECT ?x WHERE { ?x a owl:Ontology }") == {ONTOLOGY}


def test_creators_and_contributors_have_roles(store: ox.Store) -> None:
    creators = iris(
        store, "SELECT ?x WHERE { <https://w3id.org/cmpkg/ontology> dcterms:creator ?x }"
    )
    contributors = iris(
        store, "SELECT ?x WHERE { <https://w3id.org/cmpkg/ontology> dcterms:contributor ?x }"
    )
    assert creators and contributors
    rows = select(
        store,
        """SELECT ?attribution ?agent ?role WHERE {
            <https://w3id.org/cmpkg/ontology> prov:qualifiedAttribution ?attribution .
            ?attribution a prov:Attribution ; prov:agent ?agent ; prov:hadRole ?role .
            ?role a prov:Role ; rdfs:label ?roleLabel . }""",
    )
    attributed = {r["agent"].value for r in rows}
    assert creators | contributors <= attributed
    for row in rows:
        for key in ("attribution", "agent", "role"):
            assert row[key].value.startswith(NS + "agent/"), row[key]


# --- labels and definitions ---------------------------------------------------------------------


def test_every_term_has_one_english_label_equal_pref_label_and_a_definition(
    store: ox.Store,
) -> None:
    terms = defined_terms(store)
    assert len(terms) > 150  # schema + terms + value sets; guards against a silently empty load
    labels: dict[str, list[ox.Literal]] = defaultdict(list)
    prefs: dict[str, list[ox.Literal]] = defaultdict(list)
    definitions: dict[str, list[ox.Literal]] = defaultdict(list)
    for row in select(store, "SELECT ?s ?o WHERE { ?s rdfs:label ?o }"):
        labels[row["s"].value].append(row["o"])
    for row in select(store, "SELECT ?s ?o WHERE { ?s skos:prefLabel ?o }"):
        prefs[row["s"].value].append(row["o"])
    for row in select(store, "SELECT ?s ?o WHERE { ?s skos:definition ?o }"):
        definitions[row["s"].value].append(row["o"])
    problems = []
    for term in sorted(terms):
        if len(labels[term]) != 1 or labels[term][0].language != "en":
            problems.append(f"{term}: needs exactly one rdfs:label@en, has {labels[term]}")
            continue
        label = labels[term][0]
        if [(p.value, p.language) for p in prefs[term]] != [(label.value, "en")]:
            problems.append(f"{term}: skos:prefLabel {prefs[term]} differs from {label.value!r}")
        if not definitions[term] or any(d.language != "en" for d in definitions[term]):
            problems.append(f"{term}: needs a skos:definition@en")
        elif any(len(d.value.split()) < 4 for d in definitions[term]):
            problems.append(f"{term}: definition too short to be a definition")
    assert not problems, "\n".join(problems)


def test_no_two_terms_share_a_label_or_synonym(store: ox.Store) -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for row in select(
        store,
        """SELECT ?s ?o WHERE { VALUES ?p { rdfs:label skos:prefLabel skos:altLabel } ?s ?p ?o .
           FILTER (STRSTARTS(STR(?s), "https://w3id.org/cmpkg/")) }""",
    ):
        owners[row["o"].value.casefold()].add(row["s"].value)
    clashes = {text: sorted(who) for text, who in owners.items() if len(who) > 1}
    assert not clashes, clashes


def test_alt_labels_are_english_and_differ_from_the_label(store: ox.Store) -> None:
    rows = select(
        store,
        """SELECT ?s ?alt WHERE { ?s skos:altLabel ?alt .
           OPTIONAL { ?s rdfs:label ?label }
           FILTER (LANG(?alt) != "en" || LCASE(STR(?alt)) = LCASE(STR(?label))) }""",
    )
    assert not rows, rows


# --- properties ---------------------------------------------------------------------------------

PROPERTY_KINDS = {OWL + "ObjectProperty", OWL + "DatatypeProperty", OWL + "AnnotationProperty"}

# The properties docs/CONVENTIONS.md names, so a rename or a forgotten one fails here.
OBJECT_PROPERTIES = words(
    """source curationStatus reportedIn intervention comparator condition outcome
effectMeasure certainty ratedDownFor reportedSignificance reportedDirection direction significance
indirectlyInforms aboutOutcome aboutCondition aboutIntervention reportingStatus adverseEventKind
subsetOf aboutReview pathology addressedBy mechanism mediates actsIn engagedBy phenomenon
recommendsModality recommendsPrinciple strength includedIn possiblyIncludedIn postdates
supports"""
)
DATATYPE_PROPERTIES = words(
    """curationNote pageOrTable estimate ciLower ciUpper higherIsBetter
numberOfStudies numberOfParticipants scale timepoint reportedResult clinicallyImportant nntb
nntbLower nntbUpper interventionEvents interventionTotal controlEvents controlTotal
imprecisionConcern numberOfReviews numberOfReviewsWithSignificantBenefit
numberOfReviewsWithNoSignificantChange numberOfReviewsWithLargeEffect
numberOfReviewsWithLongFollowUp proportionOfStudies denominatorDescription ratePer1000Intervention
ratePer1000Control certaintyRationale numberOfTrials numberOfTrialsReportingAdverseEvents
numberOfAdverseEvents numberOfStudiesWithEvents participantsLowerBound evidenceBasis
minimumDurationWeeks prevalence population recommendationText guidelineVerb doi pmid pmcid
cochraneId year citation searchDate rank nullValue"""
)

# Single-valued by the conventions ("exactly 1" or "0..1").
FUNCTIONAL = words(
    """source curationStatus intervention comparator outcome effectMeasure estimate ciLower
ciUpper higherIsBetter certainty strength year rank nullValue"""
)

RANGES = {
    "source": CMP + "Source",
    "curationStatus": CMP + "CurationStatus",
    "intervention": CMP + "ExerciseModality",
    "comparator": CMP + "Comparator",
    "condition": CMP + "Condition",
    "outcome": CMP + "Outcome",
    "effectMeasure": CMP + "EffectMeasure",
    "certainty": CMP + "CertaintyLevel",
    "ratedDownFor": CMP + "CertaintyDomain",
    "pathology": CMP + "SecondaryPathology",
    "mechanism": CMP + "Mechanism",
    "mediates": CMP + "Phenomenon",
    "actsIn": CMP + "AnatomicalSite",
    "engagedBy": CMP + "ExerciseModality",
    "strength": CMP + "RecommendationStrength",
    "includedIn": CMP + "OverviewOfReviews",
    "estimate": XSD + "decimal",
    "higherIsBetter": XSD + "boolean",
    "numberOfStudies": XSD + "integer",
    "year": XSD + "integer",
    "doi": XSD + "string",
}

# The OWL 2 datatype map (the subset a curated value could need); xsd:gYear / xsd:date are not in
# it and make HermiT reject the ontology.
OWL2_DATATYPES = {
    XSD + t for t in ("decimal", "integer", "string", "boolean", "nonNegativeInteger")
}
OWL2_DATATYPES |= {PREFIXES["rdf"] + "langString", PREFIXES["rdf"] + "PlainLiteral"}


def kinds(store: ox.Store) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for row in select(store, "SELECT ?p ?k WHERE { ?p a ?k }"):
        found[row["p"].value].add(row["k"].value)
    return found


def test_conventions_properties_exist_with_their_kind(store: ox.Store) -> None:
    found = kinds(store)
    missing = [p for p in OBJECT_PROPERTIES if OWL + "ObjectProperty" not in found[CMP + p]]
    missing += [p for p in DATATYPE_PROPERTIES if OWL + "DatatypeProperty" not in found[CMP + p]]
    assert not missing, missing


def test_every_property_has_exactly_one_kind(store: ox.Store) -> None:
    found = kinds(store)
    vocab_properties = {iri for iri in found if iri.startswith(CMP) and iri[len(CMP)].islower()}
    problems = {p: found[p] & PROPERTY_KINDS for p in vocab_properties}
    problems = {p: k for p, k in problems.items() if len(k) != 1}
    assert not problems, problems


def test_every_predicate_used_is_declared(store: ox.Store) -> None:
    # OWL 2 DL needs every predicate to have a declared kind; the RDF/RDFS/OWL built-ins have one.
    builtins = (PREFIXES["rdf"], PREFIXES["rdfs"], OWL)
    used = iris(store, "SELECT DISTINCT ?x WHERE { ?s ?x ?o }")
    found = kinds(store)
    undeclared = sorted(
        p for p in used if not p.startswith(builtins) and not (found[p] & PROPERTY_KINDS)
    )
    assert not undeclared, undeclared


def test_object_and_data_properties_have_a_domain(store: ox.Store) -> None:
    rows = select(
        store,
        """SELECT ?p WHERE { VALUES ?k { owl:ObjectProperty owl:DatatypeProperty } ?p a ?k .
           FILTER NOT EXISTS { ?p rdfs:domain ?d }
           FILTER NOT EXISTS {
               ?p rdfs:comment ?c . FILTER (CONTAINS(LCASE(STR(?c)), "domain-free")) }
        }""",
    )
    assert not rows, [r["p"].value for r in rows]


def test_ranges_follow_the_conventions(store: ox.Store) -> None:
    for name, expected in RANGES.items():
        ranges = iris(store, f"SELECT ?x WHERE {{ cmp:{name} rdfs:range ?x }}")
        assert ranges == {expected}, (name, ranges)


def test_addressed_by_ranges_over_principles_or_modalities(store: ox.Store) -> None:
    members = iris(
        store,
        "SELECT ?x WHERE { cmp:addressedBy rdfs:range ?u . ?u owl:unionOf/rdf:rest*/rdf:first ?x }",
    )
    assert members == {CMP + "PrescriptionPrinciple", CMP + "ExerciseModality"}


def test_single_valued_properties_are_functional(store: ox.Store) -> None:
    functional = iris(store, "SELECT ?x WHERE { ?x a owl:FunctionalProperty }")
    assert {CMP + p for p in FUNCTIONAL} <= functional
    # A guideline recommendation covers one or more conditions, so condition must not be.
    assert CMP + "condition" not in functional


def test_shared_statement_properties_have_the_sourced_statement_domain(store: ox.Store) -> None:
    for name in ("source", "curationStatus", "condition", "certainty", "numberOfStudies"):
        domains = iris(store, f"SELECT ?x WHERE {{ cmp:{name} rdfs:domain ?x }}")
        assert domains == {CMP + "SourcedStatement"}, (name, domains)


def test_only_owl2_datatypes(store: ox.Store) -> None:
    ranges = iris(store, "SELECT ?x WHERE { ?p a owl:DatatypeProperty ; rdfs:range ?x }")
    assert ranges <= OWL2_DATATYPES, ranges - OWL2_DATATYPES
    datatypes = iris(
        store,
        "SELECT DISTINCT ?x WHERE { ?s ?p ?o . FILTER (isLiteral(?o)) BIND (DATATYPE(?o) AS ?x) }",
    )
    assert datatypes <= OWL2_DATATYPES, datatypes - OWL2_DATATYPES


# --- classes and disjointness ------------------------------------------------------------------

TOP_LEVEL = words(
    """Condition ExerciseModality SecondaryPathology PrescriptionPrinciple Mechanism
Phenomenon AnatomicalSite Outcome Comparator EffectMeasure CertaintyLevel CertaintyDomain
RecommendationStrength CurationStatus ReportingStatus AdverseEventKind Direction Significance Source
SourcedStatement"""
)
SOURCE_KINDS = (
    "OverviewOfReviews SystematicReview NarrativeReview MetaAnalysis Guideline PrimaryStudy"
)
STATEMENT_KINDS = words(
    """EvidenceClaim BodyOfEvidenceFinding AdverseEventReport PathologyContribution
PathologyAddressing MechanismFinding PhenomenonObservation ConditionFinding
GuidelineRecommendation"""
)


def disjoint_groups(store: ox.Store) -> list[set[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for row in select(
        store,
        """SELECT ?g ?m WHERE {
            ?g a owl:AllDisjointClasses ; owl:members/rdf:rest*/rdf:first ?m }""",
    ):
        groups[str(row["g"])].add(row["m"].value)
    return list(groups.values())


@pytest.mark.parametrize(
    ("parent", "members"),
    [
        (None, TOP_LEVEL),
        ("Source", SOURCE_KINDS.split()),
        ("SourcedStatement", STATEMENT_KINDS),
    ],
)
def test_pairwise_disjoint_groups(store: ox.Store, parent: str | None, members: list[str]) -> None:
    expected = {CMP + m for m in members}
    assert expected in disjoint_groups(store)
    found = kinds(store)
    assert all(OWL + "Class" in found[c] for c in expected)
    if parent:
        subclasses = iris(store, f"SELECT ?x WHERE {{ ?x rdfs:subClassOf cmp:{parent} }}")
        assert subclasses == expected


def test_land_and_water_exercise_are_disjoint(store: ox.Store) -> None:
    assert ask(
        store,
        """ASK { { mod:land-based-exercise owl:disjointWith mod:water-based-exercise }
           UNION { mod:water-based-exercise owl:disjointWith mod:land-based-exercise } }""",
    )


def test_musculoskeletal_and_non_musculoskeletal_pain_are_disjoint(store: ox.Store) -> None:
    assert ask(
        store,
        """ASK {
            { cond:chronic-musculoskeletal-pain owl:disjointWith ?other }
            UNION { ?other owl:disjointWith cond:chronic-musculoskeletal-pain }
            FILTER (?other = cond:chronic-non-musculoskeletal-pain)
        }""",
    )


def test_no_class_is_placed_under_two_disjoint_groups(store: ox.Store) -> None:
    # A cheap structural stand-in for HermiT's unsatisfiable-class check on the asserted hierarchy.
    ancestors: dict[str, set[str]] = defaultdict(set)
    for row in select(
        store, "SELECT ?c ?a WHERE { ?c rdfs:subClassOf+ ?a . FILTER (isIRI(?c) && isIRI(?a)) }"
    ):
        ancestors[row["c"].value].add(row["a"].value)
    pairs = [
        (r["a"].value, r["b"].value)
        for r in select(store, "SELECT ?a ?b WHERE { ?a owl:disjointWith ?b }")
    ]
    for group in disjoint_groups(store):
        pairs += [(a, b) for a in group for b in group if a < b]
    clashes = [
        (c, a, b)
        for c, anc in ancestors.items()
        for a, b in pairs
        if (a in anc or a == c) and (b in anc or b == c)
    ]
    assert not clashes, clashes


# --- term hierarchies ---------------------------------------------------------------------------

CONDITIONS = words(
    """chronic-pain chronic-musculoskeletal-pain chronic-non-musculoskeletal-pain
chronic-widespread-pain fibromyalgia osteoarthritis knee-osteoarthritis hip-osteoarthritis
chronic-low-back-pain rheumatoid-arthritis myofascial-pain chronic-neck-pain
mechanical-neck-disorder patellofemoral-pain dysmenorrhoea intermittent-claudication
spinal-cord-injury-pain postpolio-syndrome"""
)
MODALITIES = words(
    """exercise land-based-exercise water-based-exercise mind-body-exercise aerobic-exercise
resistance-training flexibility-exercise range-of-motion-exercise core-and-balance-training
motor-control-exercise strengthening-and-stretching walking aquatic-exercise yoga pilates
tai-chi"""
)
INDIVIDUALS = {
    "SecondaryPathology": (
        "pathology",
        """fear-of-movement pain-catastrophizing anxiety depression
        nervous-system-sensitization hyperalgesia sleep-disturbance low-self-efficacy disability""",
    ),
    "PrescriptionPrinciple": (
        "principle",
        """individualized supervised based-on-presentation
        based-on-goals based-on-preference perceived-safe-non-threatening
        address-secondary-pathologies group-programme stay-active""",
    ),
    "Mechanism": (
        "mechanism",
        """central-inhibition endogenous-opioid serotonergic
        nmda-receptor-analgesic nmda-receptor-activation""",
    ),
    "Phenomenon": ("phenomenon", "exercise-induced-hypoalgesia exercise-induced-pain"),
    "AnatomicalSite": (
        "site",
        "rostral-ventromedial-medulla periaqueductal-gray pain-modulating-areas",
    ),
    "Outcome": (
        "outcome",
        """pain-severity physical-function psychological-function quality-of-life
        adherence healthcare-use adverse-events withdrawal death multidimensional-function
        disability global-well-being tender-points stiffness muscle-strength walking-capacity
        fatigue
        aerobic-capacity menstrual-distress grip-strength""",
    ),
    "Comparator": (
        "comparator",
        """no-exercise usual-care no-treatment-usual-care-or-placebo
        other-conservative-treatment minimal-intervention other-exercise land-based-exercise
        low-intensity-exercise control""",
    ),
    "EffectMeasure": ("measure", "smd md rr nntb points-improvement"),
    "CertaintyLevel": ("certainty", "high moderate low very-low not-reported"),
    "CertaintyDomain": (
        "certainty-domain",
        """risk-of-bias inconsistency indirectness imprecision
        publication-bias""",
    ),
    "RecommendationStrength": (
        "strength",
        "strong-for weak-for strong-against weak-against core-treatment",
    ),
    "CurationStatus": ("status", "confirmed unconfirmed secondary-source curator-interpretation"),
    "ReportingStatus": ("reporting", "reported not-reported not-assessable"),
    "AdverseEventKind": ("adverse-event", "muscle-soreness early-soreness"),
    "Direction": ("direction", "benefit harm no-clear-difference"),
    "Significance": ("significance", "significant inconclusive"),
}


def test_punned_condition_and_modality_classes(store: ox.Store) -> None:
    for root, base, names in (
        ("Condition", "condition", CONDITIONS),
        ("ExerciseModality", "modality", MODALITIES),
    ):
        expected = {f"{NS}{base}/{n}" for n in names}
        expected |= {t for t in curator_terms() if t.startswith(f"{NS}{base}/")}
        typed = iris(store, f"SELECT ?x WHERE {{ ?x a cmp:{root} }}")
        classes = iris(store, f"SELECT ?x WHERE {{ ?x a owl:Class ; rdfs:subClassOf+ cmp:{root} }}")
        assert typed == expected, (root, typed ^ expected)
        assert classes == expected, (root, classes ^ expected)


@pytest.mark.parametrize("root", sorted(INDIVIDUALS))
def test_individual_terms_are_typed_with_their_root(store: ox.Store, root: str) -> None:
    base, names = INDIVIDUALS[root]
    expected = {f"{NS}{base}/{n}" for n in names.split()}
    expected |= {t for t in curator_terms() if t.startswith(f"{NS}{base}/")}
    assert iris(store, f"SELECT ?x WHERE {{ ?x a cmp:{root} }}") == expected
    # Individuals only: a class here would break the one-pattern-per-kind convention.
    assert not iris(store, f"SELECT ?x WHERE {{ ?x a cmp:{root} , owl:Class }}")


@pytest.mark.parametrize(
    ("child", "ancestor"),
    [
        ("fibromyalgia", "chronic-widespread-pain"),
        ("chronic-widespread-pain", "chronic-musculoskeletal-pain"),
        ("chronic-musculoskeletal-pain", "chronic-pain"),
        ("fibromyalgia", "chronic-pain"),
        ("knee-osteoarthritis", "osteoarthritis"),
        ("hip-osteoarthritis", "osteoarthritis"),
        ("osteoarthritis", "chronic-musculoskeletal-pain"),
        ("chronic-low-back-pain", "chronic-musculoskeletal-pain"),
        ("rheumatoid-arthritis", "chronic-musculoskeletal-pain"),
        ("myofascial-pain", "chronic-musculoskeletal-pain"),
        ("mechanical-neck-disorder", "chronic-neck-pain"),
        ("mechanical-neck-disorder", "chronic-musculoskeletal-pain"),
        ("patellofemoral-pain", "chronic-musculoskeletal-pain"),
        ("dysmenorrhoea", "chronic-non-musculoskeletal-pain"),
        ("intermittent-claudication", "chronic-non-musculoskeletal-pain"),
        ("spinal-cord-injury-pain", "chronic-non-musculoskeletal-pain"),
        ("postpolio-syndrome", "chronic-non-musculoskeletal-pain"),
        ("dysmenorrhoea", "chronic-pain"),
    ],
)
def test_condition_hierarchy_paths(store: ox.Store, child: str, ancestor: str) -> None:
    assert ask(store, f"ASK {{ cond:{child} rdfs:subClassOf+ cond:{ancestor} }}")


@pytest.mark.parametrize(
    "condition",
    ["dysmenorrhoea", "intermittent-claudication", "spinal-cord-injury-pain", "postpolio-syndrome"],
)
def test_non_musculoskeletal_conditions_are_not_under_cmp(store: ox.Store, condition: str) -> None:
    assert not ask(
        store, f"ASK {{ cond:{condition} rdfs:subClassOf* cond:chronic-musculoskeletal-pain }}"
    )


@pytest.mark.parametrize(
    ("child", "ancestors"),
    [
        ("aerobic-exercise", ["land-based-exercise", "exercise"]),
        ("walking", ["aerobic-exercise", "land-based-exercise"]),
        ("strengthening-and-stretching", ["resistance-training", "flexibility-exercise"]),
        ("aquatic-exercise", ["water-based-exercise", "exercise"]),
        ("yoga", ["mind-body-exercise", "land-based-exercise"]),
        ("pilates", ["mind-body-exercise", "land-based-exercise"]),
        ("tai-chi", ["mind-body-exercise", "land-based-exercise"]),
    ],
)
def test_modality_hierarchy(store: ox.Store, child: str, ancestors: list[str]) -> None:
    for ancestor in ancestors:
        assert ask(store, f"ASK {{ mod:{child} rdfs:subClassOf+ mod:{ancestor} }}"), ancestor
    assert not (
        ask(store, f"ASK {{ mod:{child} rdfs:subClassOf* mod:land-based-exercise }}")
        and ask(store, f"ASK {{ mod:{child} rdfs:subClassOf* mod:water-based-exercise }}")
    )


@pytest.mark.parametrize(
    ("narrower", "broader"),
    [
        ("multidimensional-function", "physical-function"),
        ("disability", "physical-function"),
        ("global-well-being", "quality-of-life"),
        ("tender-points", "pain-severity"),
    ],
)
def test_outcome_hierarchy(store: ox.Store, narrower: str, broader: str) -> None:
    assert ask(store, f"ASK {{ out:{narrower} skos:broader out:{broader} }}")


def test_skos_broader_stays_within_one_kind(store: ox.Store) -> None:
    rows = select(
        store,
        """SELECT ?a ?b WHERE { ?a skos:broader ?b .
           FILTER NOT EXISTS { ?a a ?k . ?b a ?k . FILTER (STRSTARTS(STR(?k), STR(cmp:))) } }""",
    )
    assert not rows, rows


# --- value sets ---------------------------------------------------------------------------------

HL7 = "http://terminology.hl7.org/CodeSystem/"


def test_certainty_levels_rank_and_hl7_codes(store: ox.Store) -> None:
    rows = select(
        store,
        """SELECT ?c ?rank ?notation ?match WHERE { ?c a cmp:CertaintyLevel ; cmp:rank ?rank .
           OPTIONAL { ?c skos:notation ?notation } OPTIONAL { ?c skos:exactMatch ?match } }""",
    )
    got = {
        r["c"].value.rsplit("/", 1)[1]: (
            int(r["rank"].value),
            r.get("notation") and r["notation"].value,
            r.get("match") and r["match"].value,
        )
        for r in rows
    }
    assert got == {
        "high": (4, "high", HL7 + "certainty-rating#high"),
        "moderate": (3, "moderate", HL7 + "certainty-rating#moderate"),
        "low": (2, "low", HL7 + "certainty-rating#low"),
        "very-low": (1, "very-low", HL7 + "certainty-rating#very-low"),
        "not-reported": (0, None, None),
    }


def test_certainty_domains_use_hl7_certainty_type_codes(store: ox.Store) -> None:
    rows = select(
        store,
        """SELECT ?d ?n ?m WHERE {
            ?d a cmp:CertaintyDomain ; skos:notation ?n ; skos:exactMatch ?m }""",
    )
    assert {r["n"].value for r in rows} == {
        "RiskOfBias",
        "Inconsistency",
        "Indirectness",
        "Imprecision",
        "PublicationBias",
    }
    assert all(r["m"].value == HL7 + "certainty-type#" + r["n"].value for r in rows)


def test_strength_notations(store: ox.Store) -> None:
    rows = select(
        store, "SELECT ?s ?n WHERE { ?s a cmp:RecommendationStrength ; skos:notation ?n }"
    )
    assert {r["s"].value.rsplit("/", 1)[1]: r["n"].value for r in rows} == {
        c: c for c in ("strong-for", "weak-for", "strong-against", "weak-against")
    }


def test_effect_measures_have_null_values(store: ox.Store) -> None:
    rows = select(store, "SELECT ?m ?v WHERE { ?m a cmp:EffectMeasure ; cmp:nullValue ?v }")
    values = {r["m"].value.rsplit("/", 1)[1]: float(r["v"].value) for r in rows}
    assert values == {"smd": 0, "md": 0, "rr": 1, "nntb": 0, "points-improvement": 0}


@pytest.mark.parametrize(
    "root",
    [
        "CertaintyLevel",
        "CertaintyDomain",
        "RecommendationStrength",
        "CurationStatus",
        "ReportingStatus",
        "Direction",
        "Significance",
        "EffectMeasure",
    ],
)
def test_closed_value_sets_are_declared_different(store: ox.Store, root: str) -> None:
    # With the functional properties this turns "two certainty levels on one claim" into an
    # inconsistency instead of a silent owl:sameAs.
    members = iris(store, f"SELECT ?x WHERE {{ ?x a cmp:{root} }}")
    groups: dict[str, set[str]] = defaultdict(set)
    for row in select(
        store,
        "SELECT ?g ?m WHERE { ?g a owl:AllDifferent ; owl:distinctMembers/rdf:rest*/rdf:first ?m }",
    ):
        groups[str(row["g"])].add(row["m"].value)
    assert members in groups.values()


# --- external alignments -------------------------------------------------------------------------

EXACT_PATTERNS = [
    re.compile(r"^http://id\.nlm\.nih\.gov/mesh/D\d{6}$"),
    re.compile(r"^http://purl\.obolibrary\.org/obo/(DOID_\d+|(MONDO|HP|ECO|SEPIO)_\d{7})$"),
    re.compile(
        r"^http://terminology\.hl7\.org/CodeSystem/(certainty-rating|certainty-type)#[A-Za-z-]+$"
    ),
    re.compile(r"^http://data\.cochrane\.org/ontologies/pico/[A-Za-z]+$"),
]
OTHER_MATCH_PATTERNS = [
    *EXACT_PATTERNS,
    re.compile(r"^http://terminology\.hl7\.org/CodeSystem/recommendation-strength#(strong|weak)$"),
    re.compile(r"^http://www\.w3\.org/ns/prov#[A-Za-z]+$"),
]
# Marked unconfirmed, or naming something other than our concept, in vocabularies.md.
NEVER_EXACT = {
    "http://id.nlm.nih.gov/mesh/D026241",  # Pilates as entry term: unconfirmed
    "http://id.nlm.nih.gov/mesh/D006875",  # aquatic therapy descriptor: unconfirmed
    "http://id.nlm.nih.gov/mesh/D013119",  # spinal cord injury, not its pain
    "http://purl.obolibrary.org/obo/MONDO_0043797",
}


def test_exact_matches_are_well_formed_and_allowed(store: ox.Store) -> None:
    targets = iris(store, "SELECT ?x WHERE { ?s skos:exactMatch ?x }")
    assert targets, "no alignments at all"
    bad = sorted(t for t in targets if not any(p.match(t) for p in EXACT_PATTERNS))
    assert not bad, bad
    assert not targets & NEVER_EXACT


def test_other_matches_are_well_formed(store: ox.Store) -> None:
    targets = iris(
        store,
        """SELECT ?x WHERE { VALUES ?p { skos:closeMatch skos:broadMatch skos:relatedMatch }
           ?s ?p ?x }""",
    )
    bad = sorted(t for t in targets if not any(p.match(t) for p in OTHER_MATCH_PATTERNS))
    assert not bad, bad


@pytest.mark.parametrize(
    ("term", "match", "kind"),
    [
        ("cond:chronic-pain", "mesh:D059350", "exactMatch"),
        ("cond:chronic-pain", "obo:HP_0012532", "exactMatch"),
        ("cond:chronic-musculoskeletal-pain", "mesh:D059352", "closeMatch"),
        ("cond:fibromyalgia", "obo:MONDO_0005546", "exactMatch"),
        ("cond:spinal-cord-injury-pain", "mesh:D013119", "closeMatch"),
        ("path:fear-of-movement", "obo:HP_4000009", "exactMatch"),
        ("cmp:EvidenceClaim", "obo:SEPIO_0000001", "broadMatch"),
        ("cmp:CertaintyLevel", "obo:SEPIO_0000187", "closeMatch"),
        ("cmp:intervention", "pico:intervention", "closeMatch"),
        ("cmp:source", "prov:wasDerivedFrom", "closeMatch"),
    ],
)
def test_key_alignments(store: ox.Store, term: str, match: str, kind: str) -> None:
    assert ask(store, f"ASK {{ {term} skos:{kind} {match} }}")


def test_an_id_is_not_exact_for_two_of_our_terms(store: ox.Store) -> None:
    rows = select(
        store,
        """SELECT ?x (COUNT(DISTINCT ?s) AS ?n) WHERE { ?s skos:exactMatch ?x }
           GROUP BY ?x HAVING (COUNT(DISTINCT ?s) > 1)""",
    )
    assert not rows, rows


# --- blank nodes --------------------------------------------------------------------------------


def test_blank_nodes_only_in_owl_constructs(store: ox.Store) -> None:
    allowed_types = {OWL + "AllDisjointClasses", OWL + "AllDifferent", OWL + "Class"}
    list_predicates = {PREFIXES["rdf"] + "first", PREFIXES["rdf"] + "rest"}
    construct_predicates = {OWL + "members", OWL + "distinctMembers", OWL + "unionOf"}
    problems = []
    for quad in store.quads_for_pattern(None, None, None, None):
        if not isinstance(quad.subject, ox.BlankNode):
            continue
        p = quad.predicate.value
        if p in list_predicates or p in construct_predicates:
            continue
        if p == RDF_TYPE and quad.object.value in allowed_types:
            continue
        problems.append(str(quad.triple))
    # An anonymous owl:Class is only acceptable as a union used for a range.
    for row in select(
        store,
        """SELECT ?c WHERE { ?c a owl:Class . FILTER (isBlank(?c))
           FILTER NOT EXISTS { ?c owl:unionOf ?u } }""",
    ):
        problems.append(f"anonymous class without unionOf: {row['c']}")
    assert not problems, problems
