"""The competency questions (issue 2) and the named queries (issue 5) on the shipped KG.

Every expected answer below was worked out by hand from the Turtle in data/ and ontology/,
not by running the query: if the data or a query changes, these tests say so.
The asserted-level questions run on the plain load (no reasoning), both over the union of all
graphs and over graph:asserted + graph:ontology alone; "what a support rests on" runs on the
built artifact, whose inferred graph holds the rules' support statements.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pyoxigraph as ox
import pytest

from service.kb.sources import GRAPHS, PREFIXES, knowledge_files, load_store, parse_file
from service.query.named import NamedQuery, load_queries, run_query

QUERIES: dict[str, NamedQuery] = load_queries()
XSD = PREFIXES["xsd"]
NUMERIC = {XSD + "decimal", XSD + "integer"}
ASSERTED_ONLY = [GRAPHS["asserted"], GRAPHS["ontology"]]


@pytest.fixture(scope="module")
def store() -> ox.Store:
    return load_store(knowledge_files())


def short(term: ox.NamedNode | ox.Literal | ox.BlankNode | None) -> object:
    """CURIEs for IRIs, Decimals for numbers, bools, plain text for other literals."""
    if term is None:
        return None
    if isinstance(term, ox.NamedNode):
        for prefix, base in PREFIXES.items():
            if term.value.startswith(base) and "/" not in term.value[len(base) :]:
                return f"{prefix}:{term.value[len(base) :]}"
        return term.value
    if isinstance(term, ox.Literal):
        if term.datatype.value in NUMERIC:
            return D(term.value)
        if term.datatype.value == XSD + "boolean":
            return term.value == "true"
        return term.value
    raise TypeError(term)


def answer(
    store: ox.Store,
    name: str,
    columns: tuple[str, ...],
    values: dict[str, str] | None = None,
    graphs: list[ox.NamedNode] | None = None,
) -> list[tuple[object, ...]]:
    result = run_query(store, QUERIES[name], values or {}, graphs=graphs)
    index = {v.value: i for i, v in enumerate(result.variables)}
    return [tuple(short(row[index[c]]) for c in columns) for row in result]


def asserted_answer(store: ox.Store, name: str, columns: tuple[str, ...], **kw) -> list:
    """The answer over the union, checked to be the same over asserted + ontology alone."""
    union = answer(store, name, columns, **kw)
    assert answer(store, name, columns, graphs=ASSERTED_ONLY, **kw) == union
    return union


def unordered(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return sorted(rows, key=repr)


# -- issue 2: the ten competency questions ----------------------------------------------------


def test_cq1_modalities_that_improve_physical_function_in_fibromyalgia(
    artifact_store: ox.Store,
) -> None:
    # Issue 12: the question now reads the bodies of evidence the rules derive, so it runs on
    # the built artifact (no longer at asserted level). The same six claims answer it, each now
    # shown as a claim of the body whose conclusion is benefit. Worked by hand:
    # aerobic / physical function / fibromyalgia: Busch 2007 SMD 0.66 (0.41 to 0.92, moderate)
    # and Bidonde 2017 MD -10.16 (-15.39 to -4.94, low), both significant benefits about exactly
    # this question -> direct, benefit, certainty low: the lowest carrying rating. (It was
    # "moderate", the best of the two, under the old support rule; that changed on purpose.)
    # aquatic / physical function / fibromyalgia: Bidonde 2014 physical function MD and SMD,
    # both moderate -> direct, benefit, moderate. Its FIQ total (multidimensional function, a
    # narrower outcome) claims are included but do not carry: direct evidence exists.
    # Left out by hand as before: Busch 2007 pain/tender points (other outcome), Busch 2013's
    # resistance claims (its body is inconclusive: the "17 points" has no CI and the translated
    # figures are unconfirmed, so nothing carries).
    columns = ("modality", "outcome", "claim", "measure", "estimate", "ciLower", "ciUpper",
               "certainty", "source")  # fmt: skip
    aerobic, aquatic, pf = "mod:aerobic-exercise", "mod:aquatic-exercise", "out:physical-function"
    fiq, moderate = "out:multidimensional-function", "cert:moderate"
    assert answer(artifact_store, "modalities-improving-outcome", columns) == [
        (aerobic, pf, "claim:bidonde-2017-aerobic-physical-function",
         "measure:md", D("-10.16"), D("-15.39"), D("-4.94"), "cert:low", "src:bidonde-2017"),
        (aerobic, pf, "claim:busch-2007-aerobic-physical-function",
         "measure:smd", D("0.66"), D("0.41"), D("0.92"), moderate, "src:busch-2007"),
        (aquatic, fiq, "claim:bidonde-2014-aquatic-multidimensional-function-md",
         "measure:md", D("-5.97"), D("-9.06"), D("-2.88"), moderate, "src:bidonde-2014"),
        (aquatic, fiq, "claim:bidonde-2014-aquatic-multidimensional-function-smd",
         "measure:smd", D("-0.55"), D("-0.83"), D("-0.27"), moderate, "src:bidonde-2014"),
        (aquatic, pf, "claim:bidonde-2014-aquatic-physical-function-md",
         "measure:md", D("-4.35"), D("-7.77"), D("-0.94"), moderate, "src:bidonde-2014"),
        (aquatic, pf, "claim:bidonde-2014-aquatic-physical-function-smd",
         "measure:smd", D("-0.44"), D("-0.76"), D("-0.11"), moderate, "src:bidonde-2014"),
    ]  # fmt: skip
    bodies = answer(artifact_store, "modalities-improving-outcome",
                    ("modality", "claim", "carries", "bodyCertainty", "evidenceDirectness",
                     "bodyCurationStatus"))  # fmt: skip
    assert {(m, certainty, d, st) for m, _c, _k, certainty, d, st in bodies} == {
        (aerobic, "cert:low", "direct", "status:confirmed"),
        (aquatic, moderate, "direct", "status:confirmed"),
    }
    assert [c for _m, c, carries, *_ in bodies if not carries] == [
        "claim:bidonde-2014-aquatic-multidimensional-function-md",
        "claim:bidonde-2014-aquatic-multidimensional-function-smd",
    ]
    doi = answer(artifact_store, "modalities-improving-outcome", ("claim", "doi"))
    assert ("claim:busch-2007-aerobic-physical-function", "10.1002/14651858.CD003786.pub2") in doi
    # Hip osteoarthritis and pain: the only aquatic evidence is the pooled hip-and-knee estimate
    # judged not clinically important, so aquatic exercise is not listed; land-based is.
    hip = answer(artifact_store, "modalities-improving-outcome", ("modality", "claim"),
                 {"condition": "hip osteoarthritis", "outcome": "pain"})  # fmt: skip
    assert hip == [("mod:land-based-exercise", "claim:fransen-2014-land-based-pain-severity")]


def test_cq2_reviews_studies_and_participants_of_the_overview(store: ox.Store) -> None:
    columns = ("finding", "numberOfReviews", "numberOfStudies", "numberOfParticipants", "subsetOf")
    assert asserted_answer(store, "overview-summary", columns) == [
        ("finding:geneen-2017-included-evidence", 21, 381, 37143, None),
        ("finding:geneen-2017-exercise-vs-no-exercise", None, 264, 19642,
         "finding:geneen-2017-included-evidence"),
    ]  # fmt: skip


def test_cq3_outcomes_never_reported_or_not_assessable(store: ox.Store) -> None:
    columns = ("outcome", "reportingStatus", "finding")
    assert asserted_answer(store, "unreported-outcomes", columns) == [
        ("out:adherence", "report:not-assessable", "finding:geneen-2017-adherence"),
        ("out:healthcare-use", "report:not-reported", "finding:geneen-2017-healthcare-use"),
        ("out:quality-of-life", "report:not-reported", "finding:yamato-2015-quality-of-life"),
    ]
    in_overview = answer(store, "unreported-outcomes", columns, {"source": "Geneen 2017"})
    assert [row[0] for row in in_overview] == ["out:adherence", "out:healthcare-use"]


def test_cq4_secondary_pathologies_and_the_principles_that_address_them(store: ox.Store) -> None:
    columns = ("pathology", "condition", "contribution", "addressedBy", "addressing",
               "addressingStatus")  # fmt: skip
    cmp = "cond:chronic-musculoskeletal-pain"
    assert unordered(asserted_answer(store, "secondary-pathologies", columns)) == unordered([
        ("path:fear-of-movement", cmp, "finding:booth-2017-contribution-fear-of-movement",
         "princ:address-secondary-pathologies", "finding:booth-2017-addressing-fear-of-movement",
         "status:confirmed"),
        ("path:fear-of-movement", cmp, "finding:booth-2017-contribution-fear-of-movement",
         "princ:perceived-safe-non-threatening",
         "finding:booth-2017-safe-non-threatening-fear-of-movement",
         "status:curator-interpretation"),
        ("path:fear-of-movement", cmp, "finding:booth-2017-contribution-fear-of-movement",
         "mod:exercise", "finding:booth-2017-exercise-reduces-fear", "status:secondary-source"),
        ("path:pain-catastrophizing", cmp, "finding:booth-2017-contribution-pain-catastrophizing",
         "princ:address-secondary-pathologies",
         "finding:booth-2017-addressing-pain-catastrophizing", "status:confirmed"),
        ("path:pain-catastrophizing", cmp, "finding:booth-2017-contribution-pain-catastrophizing",
         "mod:exercise", "finding:booth-2017-exercise-reduces-catastrophizing",
         "status:secondary-source"),
        ("path:anxiety", cmp, "finding:booth-2017-contribution-anxiety",
         "princ:address-secondary-pathologies", "finding:booth-2017-addressing-anxiety",
         "status:confirmed"),
        ("path:anxiety", cmp, "finding:booth-2017-contribution-anxiety",
         "mod:exercise", "finding:booth-2017-exercise-reduces-anxiety", "status:secondary-source"),
        ("path:nervous-system-sensitization", cmp,
         "finding:booth-2017-contribution-nervous-system-sensitization",
         "princ:address-secondary-pathologies",
         "finding:booth-2017-addressing-nervous-system-sensitization", "status:confirmed"),
    ])  # fmt: skip
    # a subtype inherits what holds for chronic musculoskeletal pain; a sibling tree does not
    fibro = answer(store, "secondary-pathologies", ("pathology",), {"condition": "fibromyalgia"})
    assert len(fibro) == 8
    assert (
        answer(store, "secondary-pathologies", ("pathology",), {"condition": "dysmenorrhoea"}) == []
    )


def test_cq5_mechanisms_of_exercise_induced_analgesia_and_where_they_act(store: ox.Store) -> None:
    columns = ("mechanism", "site", "finding", "source", "curationStatus")
    rvm, pag = "site:rostral-ventromedial-medulla", "site:periaqueductal-gray"
    assert unordered(asserted_answer(store, "mechanisms", columns)) == unordered([
        ("mech:endogenous-opioid", pag, "finding:brito-2017-opioid-analgesia", "src:brito-2017",
         "status:confirmed"),
        ("mech:endogenous-opioid", rvm, "finding:brito-2017-opioid-analgesia", "src:brito-2017",
         "status:confirmed"),
        ("mech:serotonergic", rvm, "finding:brito-2017-serotonergic-rvm", "src:brito-2017",
         "status:curator-interpretation"),
        ("mech:central-inhibition", None, "finding:lima-2017-central-inhibition-analgesia",
         "src:lima-2017", "status:confirmed"),
        ("mech:endogenous-opioid", rvm, "finding:lima-2017-opioid-rvm-analgesia", "src:lima-2017",
         "status:confirmed"),
        ("mech:serotonergic", rvm, "finding:lima-2017-serotonergic-rvm-analgesia",
         "src:lima-2017", "status:confirmed"),
        ("mech:nmda-receptor-analgesic", rvm, "finding:lima-2017-nmda-rvm-analgesia",
         "src:lima-2017", "status:confirmed"),
    ])  # fmt: skip
    pain = answer(store, "mechanisms", ("mechanism", "site", "finding"),
                  {"phenomenon": "exercise-induced pain"})  # fmt: skip
    assert unordered(pain) == unordered([
        ("mech:nmda-receptor-activation", "site:pain-modulating-areas",
         "finding:lima-2017-nmda-exercise-induced-pain"),
        ("mech:nmda-receptor-activation", rvm, "finding:sluka-2018-nmda-rvm-sedentary"),
    ])  # fmt: skip


def test_cq6_adverse_events_and_the_share_of_studies_reporting_them(store: ox.Store) -> None:
    columns = ("adverseEvent", "statement", "review", "source")
    assert asserted_answer(store, "adverse-events", columns) == [
        ("ae:early-soreness", "finding:geneen-2017-adverse-events-han-2004", "src:han-2004",
         "src:geneen-2017"),
        ("ae:muscle-soreness", "finding:geneen-2017-adverse-event-kinds", None, "src:geneen-2017"),
    ]  # fmt: skip
    share = ("finding", "proportionOfStudies", "numberOfReviews")
    assert asserted_answer(store, "adverse-event-reporting", share) == [
        ("finding:geneen-2017-adverse-events", D("0.25"), 18),
    ]
    (denominator,) = answer(store, "adverse-event-reporting", ("denominatorDescription",))
    assert "18 reviews" in denominator[0]


def test_cq7_guideline_recommendations_with_strength(store: ox.Store) -> None:
    columns = ("guideline", "condition", "recommends", "strength", "guidelineVerb",
               "recommendation")  # fmt: skip
    strong, weak, core = "strength:strong-for", "strength:weak-for", "strength:core-treatment"
    knee, hip, oa = "cond:knee-osteoarthritis", "cond:hip-osteoarthritis", "cond:osteoarthritis"
    clbp = "cond:chronic-low-back-pain"
    acr, ng193, ng59 = "rec:acr-2019-", "rec:nice-ng193-", "rec:nice-ng59-"
    expected = [
        *[("src:acr-2019", c, "mod:exercise", strong, "strongly recommended", acr + "exercise")
          for c in (knee, hip, oa)],
        *[("src:acr-2019", c, "mod:tai-chi", strong, "strongly recommended", acr + "tai-chi")
          for c in (knee, hip)],
        *[("src:acr-2019", c, "mod:core-and-balance-training", weak, "conditionally recommended",
           acr + "balance") for c in (knee, hip)],
        ("src:eular-2016", "cond:fibromyalgia", "mod:exercise", strong, "strong for",
         "rec:eular-2016-exercise"),
        *[("src:nice-ng193", "cond:chronic-pain", r, strong, "offer",
           ng193 + "supervised-group-exercise")
          for r in ("mod:exercise", "princ:supervised", "princ:group-programme",
                    "princ:based-on-preference")],
        ("src:nice-ng193", "cond:chronic-pain", "princ:stay-active", strong, "encourage",
         ng193 + "stay-active"),
        *[("src:nice-ng59", clbp, r, weak, "consider", ng59 + "group-exercise")
          for r in ("mod:exercise", "mod:aerobic-exercise", "mod:mind-body-exercise",
                    "princ:group-programme")],
        ("src:nice-ng59", clbp, "mod:exercise", weak, "consider",
         ng59 + "therapies-alongside-exercise"),
        ("src:oarsi-2019", knee, "mod:land-based-exercise", core, "core treatment",
         "rec:oarsi-2019-land-based-knee"),
        *[("src:oarsi-2019", c, "mod:land-based-exercise", core, "core treatment",
           "rec:oarsi-2019-land-based-hip-polyarticular") for c in (hip, oa)],
        ("src:oarsi-2019", knee, "mod:aquatic-exercise", weak,
         "recommended depending on comorbidity", "rec:oarsi-2019-aquatic-knee"),
    ]  # fmt: skip
    got = asserted_answer(store, "guideline-recommendations", columns)
    assert unordered(got) == unordered(expected)
    # for knee OA: what names knee OA, and what names osteoarthritis or chronic pain above it
    knee_recs = answer(store, "guideline-recommendations", ("recommendation",),
                       {"condition": "knee OA"})  # fmt: skip
    assert sorted({r[0] for r in knee_recs}) == [
        "rec:acr-2019-balance", "rec:acr-2019-exercise", "rec:acr-2019-tai-chi",
        "rec:nice-ng193-stay-active", "rec:nice-ng193-supervised-group-exercise",
        "rec:oarsi-2019-aquatic-knee", "rec:oarsi-2019-land-based-hip-polyarticular",
        "rec:oarsi-2019-land-based-knee",
    ]  # fmt: skip


def test_cq8_conditions_and_subtypes_with_evidence_that_exercise_reduces_pain(
    store: ox.Store,
) -> None:
    # Claims with a beneficial CI on pain (or tender points), by the condition they are about:
    # fibromyalgia 3 (Bidonde 2014 MD and SMD, Bidonde 2017), osteoarthritis 1 (Bartels hip and
    # knee), knee OA 3 (Bartels knee only, Fransen 2015 SMD and "6 points"), hip OA 1
    # (Fransen 2014), chronic neck pain 2 (Gross), chronic low back pain 6 (Hayden 2005 x2,
    # Hayden 2021 x2, Yamato x2). Regnaux (high vs low intensity) is head-to-head: left out.
    per_subtype = {
        "cond:fibromyalgia": 3, "cond:osteoarthritis": 1, "cond:knee-osteoarthritis": 3,
        "cond:hip-osteoarthritis": 1, "cond:chronic-neck-pain": 2, "cond:chronic-low-back-pain": 6,
    }  # fmt: skip
    ancestors = {
        "cond:fibromyalgia": ["cond:chronic-widespread-pain"],
        "cond:knee-osteoarthritis": ["cond:osteoarthritis"],
        "cond:hip-osteoarthritis": ["cond:osteoarthritis"],
        "cond:osteoarthritis": [],
        "cond:chronic-neck-pain": [],
        "cond:chronic-low-back-pain": [],
    }
    expected = []
    for subtype, claims in per_subtype.items():
        for condition in [subtype, *ancestors[subtype], "cond:chronic-musculoskeletal-pain",
                          "cond:chronic-pain"]:  # fmt: skip
            expected.append((condition, subtype, claims))
    columns = ("condition", "evidenceCondition", "claims")
    got = asserted_answer(store, "conditions-with-pain-reduction", columns)
    assert unordered(got) == unordered(expected)
    oa_only = answer(store, "conditions-with-pain-reduction", columns, {"condition": "OA"})
    assert unordered(oa_only) == unordered([
        ("cond:osteoarthritis", "cond:osteoarthritis", 1),
        ("cond:osteoarthritis", "cond:knee-osteoarthritis", 3),
        ("cond:osteoarthritis", "cond:hip-osteoarthritis", 1),
        ("cond:knee-osteoarthritis", "cond:knee-osteoarthritis", 3),
        ("cond:hip-osteoarthritis", "cond:hip-osteoarthritis", 1),
    ])  # fmt: skip


def test_cq9_unconfirmed_statements(store: ox.Store) -> None:
    columns = ("statement", "kind", "source")
    assert asserted_answer(store, "unconfirmed-claims", columns) == [
        ("claim:busch-2013-resistance-multidimensional-function-translated", "cmp:EvidenceClaim",
         "src:busch-2013"),
        ("claim:busch-2013-resistance-pain-severity-translated", "cmp:EvidenceClaim",
         "src:busch-2013"),
        ("claim:busch-2013-resistance-physical-function-translated", "cmp:EvidenceClaim",
         "src:busch-2013"),
        ("claim:busch-2013-resistance-tender-points-translated", "cmp:EvidenceClaim",
         "src:busch-2013"),
        ("finding:booth-2017-unconfirmed-guidance", "cmp:BodyOfEvidenceFinding", "src:booth-2017"),
        ("finding:geneen-2017-adverse-events-lane-2014-events", "cmp:AdverseEventReport",
         "src:geneen-2017"),
        ("rec:acr-2019-balance", "cmp:GuidelineRecommendation", "src:acr-2019"),
    ]  # fmt: skip
    notes = answer(store, "unconfirmed-claims", ("statement", "curationNote"))
    assert all(note for _, note in notes), "every unconfirmed statement says why"


def test_cq10_overall_certainty_and_why(store: ox.Store) -> None:
    columns = ("finding", "certainty", "ratedDownFor", "curationStatus")
    assert asserted_answer(store, "overall-certainty", columns) == [
        ("finding:geneen-2017-conclusion", "cert:low", None, "status:confirmed"),
        ("finding:geneen-2017-overall-certainty", "cert:low", None, "status:confirmed"),
        ("finding:geneen-2017-rated-down-imprecision", "cert:low", "dom:imprecision",
         "status:curator-interpretation"),
    ]  # fmt: skip
    why = dict(answer(store, "overall-certainty", ("finding", "certaintyRationale")))
    assert "fewer than 50 participants" in why["finding:geneen-2017-overall-certainty"]
    assert why["finding:geneen-2017-conclusion"] is None


# -- issue 5: the other named queries -----------------------------------------------------------


def test_evidence_for_a_modality(store: ox.Store) -> None:
    columns = ("claim", "outcome", "comparator", "estimate", "ciLower", "ciUpper", "certainty")
    assert asserted_answer(store, "modality-evidence", columns, values={"modality": "Pilates"}) == [
        ("claim:yamato-2015-pilates-disability-short-term", "out:disability",
         "comp:minimal-intervention", D("-7.95"), D("-13.23"), D("-2.67"), "cert:low"),
        ("claim:yamato-2015-pilates-disability-vs-other-exercise", "out:disability",
         "comp:other-exercise", None, None, None, "cert:moderate"),
        ("claim:yamato-2015-pilates-pain-severity-intermediate-term", "out:pain-severity",
         "comp:minimal-intervention", D("-10.54"), D("-18.46"), D("-2.62"), "cert:moderate"),
        ("claim:yamato-2015-pilates-pain-severity-short-term", "out:pain-severity",
         "comp:minimal-intervention", D("-14.05"), D("-18.91"), D("-9.19"), "cert:low"),
    ]  # fmt: skip


def test_mechanisms_of_a_modality(store: ox.Store) -> None:
    # Every finding names mod:exercise, which aerobic exercise falls under; Sluka 2018 names
    # no engaging modality and so is not listed.
    columns = ("mechanism", "phenomenon", "site", "finding")
    rvm, eih = "site:rostral-ventromedial-medulla", "phen:exercise-induced-hypoalgesia"
    expected = [
        ("mech:endogenous-opioid", eih, "site:periaqueductal-gray",
         "finding:brito-2017-opioid-analgesia"),
        ("mech:endogenous-opioid", eih, rvm, "finding:brito-2017-opioid-analgesia"),
        ("mech:serotonergic", eih, rvm, "finding:brito-2017-serotonergic-rvm"),
        ("mech:nmda-receptor-activation", "phen:exercise-induced-pain",
         "site:pain-modulating-areas", "finding:lima-2017-nmda-exercise-induced-pain"),
        ("mech:central-inhibition", eih, None, "finding:lima-2017-central-inhibition-analgesia"),
        ("mech:endogenous-opioid", eih, rvm, "finding:lima-2017-opioid-rvm-analgesia"),
        ("mech:serotonergic", eih, rvm, "finding:lima-2017-serotonergic-rvm-analgesia"),
        ("mech:nmda-receptor-analgesic", eih, rvm, "finding:lima-2017-nmda-rvm-analgesia"),
    ]  # fmt: skip
    got = asserted_answer(
        store, "modality-mechanisms", columns, values={"modality": "aerobic exercise"}
    )
    assert unordered(got) == unordered(expected)


def test_adverse_event_reporting_per_review(store: ox.Store) -> None:
    columns = ("review", "numberOfTrials", "numberOfParticipants", "participantsLowerBound",
               "numberOfTrialsReportingAdverseEvents", "numberOfAdverseEvents",
               "numberOfStudiesWithEvents", "curationStatus")  # fmt: skip
    ok, unconfirmed = "status:confirmed", "status:unconfirmed"
    assert unordered(asserted_answer(store, "adverse-event-reports", columns)) == unordered([
        ("src:fransen-2014", 10, 549, True, 5, 7, 3, ok),
        ("src:fransen-2015", 54, 5362, None, 11, 42, 8, ok),
        ("src:gross-2015", 16, 2485, None, 11, 41, 6, ok),
        ("src:han-2004", 3, 206, None, 2, 1, None, ok),
        ("src:hayden-2005", 43, 3907, None, 10, 23, 10, ok),
        ("src:hurkmans-2009", 5, 575, None, 2, 0, None, ok),
        ("src:koopman-2015", 2, 68, None, 1, 0, None, ok),
        ("src:lane-2014", 30, 1822, None, 1, None, None, ok),
        ("src:lane-2014", None, None, None, None, None, None, unconfirmed),
    ])  # fmt: skip


def test_evidence_gaps_in_fibromyalgia(store: ox.Store) -> None:
    # Top-level outcomes with evidence somewhere in the KG, minus those a fibromyalgia claim
    # covers (QoL via global well-being, physical function, pain, overall effect, adverse
    # events, stiffness, muscle strength, walking capacity, withdrawal).
    got = asserted_answer(store, "evidence-gaps", ("condition", "outcome"),
                          values={"condition": "fibromyalgia"})  # fmt: skip
    assert got == [
        ("cond:fibromyalgia", f"out:{o}")
        for o in ("adherence", "aerobic-capacity", "death", "fatigue", "healthcare-use",
                  "menstrual-distress", "psychological-function")
    ]  # fmt: skip


def test_term_search(store: ox.Store) -> None:
    found = answer(store, "term-search", ("term", "matched"), {"text": "KINESIO"})
    assert found == [("path:fear-of-movement", "kinesiophobia")]


# -- what a derived statement rests on (needs the built artifact) -----------------------------


@pytest.fixture(scope="module")
def artifact_store() -> ox.Store:
    from service.kb.build import ensure_artifact

    built = ox.Store()
    built.extend(parse_file(ensure_artifact()))
    return built


def test_what_a_body_of_evidence_rests_on(artifact_store: ox.Store) -> None:
    # Issue 12 replaced support statements by bodies of evidence. Aerobic exercise for pain in
    # fibromyalgia, worked by hand: Busch 2007 SMD 0.65 (-0.09 to 1.39, moderate) crosses zero;
    # Bidonde 2017 MD -11.06 (-18.34 to -3.77, low) is a significant benefit: the claims
    # disagree -> inconsistent, both listed and both carrying; certainty = lowest carrying
    # rating (low) - 1 for inconsistency = very low. Busch 2007 tender points (a narrower
    # outcome) is included but does not carry.
    iri = "https://w3id.org/cmpkg/body/aerobic-exercise--pain-severity--fibromyalgia"
    body = "body:aerobic-exercise--pain-severity--fibromyalgia"  # as answers show it
    columns = ("evidenceBody", "conclusion", "certainty", "evidenceDirectness", "rule", "claim",
               "carries", "claimCertainty")  # fmt: skip
    rest = (body, "concl:inconsistent", "cert:very-low", "direct", "rule:body-of-evidence")
    expected = [
        (*rest, "claim:bidonde-2017-aerobic-pain-severity", True, "cert:low"),
        (*rest, "claim:busch-2007-aerobic-pain-severity", True, "cert:moderate"),
        (*rest, "claim:busch-2007-aerobic-tender-points", False, "cert:moderate"),
    ]
    assert answer(artifact_store, "body-basis", columns, {"body": iri}) == expected
    by_terms = {"modality": "aerobic exercise", "outcome": "pain severity",
                "condition": "fibromyalgia"}  # fmt: skip
    assert answer(artifact_store, "body-basis", columns, by_terms) == expected


def test_why_a_body_has_its_certainty(artifact_store: ox.Store) -> None:
    # Land-based exercise for pain in chronic pain, worked by hand: the one claim is Fransen
    # 2014 (hip osteoarthritis, SMD -0.38, high). Hip OA applied to chronic pain is indirect:
    # high - 1 = moderate; the Geneen 2017 overview rates exercise for chronic pain low (three
    # findings say so), so the certainty is capped at low. It used to be "high" (issue 12).
    columns = ("evidenceBody", "certainty", "projectRatedDownFor", "reason", "method", "claim",
               "cappedBy", "capCertainty")  # fmt: skip
    body = "body:land-based-exercise--pain-severity--chronic-pain"
    got = answer(artifact_store, "body-certainty", columns,
                 {"body": "https://w3id.org/cmpkg/" + body.replace(":", "/", 1)})  # fmt: skip
    # SPARQL orders unbound values first: the cap rows come before the rating-down row.
    assert got == [
        (body, "cert:low", None, None, None, None, "finding:geneen-2017-conclusion", "cert:low"),
        (body, "cert:low", None, None, None, None, "finding:geneen-2017-overall-certainty",
         "cert:low"),
        (body, "cert:low", None, None, None, None, "finding:geneen-2017-rated-down-imprecision",
         "cert:low"),
        (body, "cert:low", "dom:indirectness",
         "evidence from hip osteoarthritis applied to chronic pain",
         "src:guyatt-2011-indirectness", "claim:fransen-2014-land-based-pain-severity", None,
         None),
    ]  # fmt: skip
    # By modality, with the default condition (chronic pain): the same body and nothing else.
    land = answer(artifact_store, "body-certainty", ("evidenceBody", "certainty"),
                  {"modality": "land-based exercise"})  # fmt: skip
    assert set(land) == {(body, "cert:low")}


ASSERTED_LEVEL = [
    test_cq2_reviews_studies_and_participants_of_the_overview,
    test_cq3_outcomes_never_reported_or_not_assessable,
    test_cq4_secondary_pathologies_and_the_principles_that_address_them,
    test_cq5_mechanisms_of_exercise_induced_analgesia_and_where_they_act,
    test_cq6_adverse_events_and_the_share_of_studies_reporting_them,
    test_cq7_guideline_recommendations_with_strength,
    test_cq8_conditions_and_subtypes_with_evidence_that_exercise_reduces_pain,
    test_cq9_unconfirmed_statements,
    test_cq10_overall_certainty_and_why,
    test_evidence_for_a_modality,
    test_mechanisms_of_a_modality,
    test_adverse_event_reporting_per_review,
    test_evidence_gaps_in_fibromyalgia,
]


@pytest.mark.parametrize("check", ASSERTED_LEVEL, ids=lambda f: f.__name__[5:])
def test_the_served_artifact_gives_the_same_answers(check, artifact_store: ox.Store) -> None:
    # What the service answers from: OWL RL entailments and derived statements added must
    # not change an asserted-level answer (e.g. duplicate rows from materialised types).
    check(artifact_store)


def test_every_named_query_has_an_exact_answer_test() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    assert [name for name in QUERIES if f'"{name}"' not in source] == []
