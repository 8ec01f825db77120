"""Resolving parameter values (IRIs, CURIEs, labels, synonyms, external codes) to our terms."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.kb.sources import PREFIXES, knowledge_files, load_store
from service.query.terms import TermResolver, UnknownTerm, normalise

FIXTURE = Path(__file__).parent / "fixtures" / "queries" / "mini-kg.ttl"
CMP = PREFIXES["cmp"]
COND = PREFIXES["cond"]
MOD = PREFIXES["mod"]
OUT = PREFIXES["out"]
PATH = PREFIXES["path"]
CONDITION = CMP + "Condition"
OUTCOME = CMP + "Outcome"
PATHOLOGY = CMP + "SecondaryPathology"
SOURCE = CMP + "Source"


@pytest.fixture(scope="module")
def resolver() -> TermResolver:
    return TermResolver.from_store(load_store({"asserted": [FIXTURE]}))


@pytest.mark.parametrize(
    "value",
    [
        COND + "fibromyalgia",
        f"<{COND}fibromyalgia>",
        "cond:fibromyalgia",
        "COND:fibromyalgia",
        "fibromyalgia",
        "Fibromyalgia",
        "  FIBROMYALGIA ",
        "fibromyalgia syndrome",
        "Fibromyalgia-Syndrome",
        "FMS",
        "fms",
        "MeSH:D005356",
        "mesh:D005356",
        "MESH:d005356",
        "http://id.nlm.nih.gov/mesh/D005356",
        "DOID:631",
        "doid:631",
        "obo:DOID_631",
        "http://purl.obolibrary.org/obo/DOID_631",
        "MONDO:0005546",
    ],
)
def test_every_accepted_form_names_fibromyalgia(resolver: TermResolver, value: str) -> None:
    assert resolver.resolve(value, CONDITION) == COND + "fibromyalgia"


def test_synonyms_and_spellings_of_other_terms(resolver: TermResolver) -> None:
    assert resolver.resolve("Tai Ji") == MOD + "tai-chi"
    assert resolver.resolve("tai-chi") == MOD + "tai-chi"
    assert resolver.resolve("kinesiophobia", PATHOLOGY) == PATH + "fear-of-movement"
    assert resolver.resolve("HP:4000009", PATHOLOGY) == PATH + "fear-of-movement"
    assert resolver.resolve("knee-osteoarthritis", CONDITION) == COND + "knee-osteoarthritis"
    assert resolver.resolve("knee OA", CONDITION) == COND + "knee-osteoarthritis"
    # a closeMatch code still finds its term when nothing matches it exactly
    assert resolver.resolve("MeSH:D059352", CONDITION) == COND + "chronic-musculoskeletal-pain"


def test_sources_are_found_through_their_subclasses(resolver: TermResolver) -> None:
    assert resolver.resolve("Busch 2007", SOURCE) == PREFIXES["src"] + "busch-2007"
    assert resolver.resolve("src:geneen-2017", SOURCE) == PREFIXES["src"] + "geneen-2017"


def test_the_expected_kind_settles_a_shared_label(resolver: TermResolver) -> None:
    assert resolver.resolve("disability", OUTCOME) == OUT + "disability"
    assert resolver.resolve("Disability", PATHOLOGY) == PATH + "disability"
    with pytest.raises(UnknownTerm) as err:
        resolver.resolve("disability", parameter="term")
    assert err.value.reason == "ambiguous term"
    assert err.value.parameter == "term"
    assert sorted(err.value.suggestions) == ["out:disability", "path:disability"]


def test_a_term_of_another_kind_is_refused(resolver: TermResolver) -> None:
    with pytest.raises(UnknownTerm) as err:
        resolver.resolve("aerobic exercise", CONDITION, "condition")
    assert "mod:aerobic-exercise is not a cmp:Condition" in str(err.value)
    with pytest.raises(UnknownTerm):
        resolver.resolve(MOD + "exercise", CONDITION)
    with pytest.raises(UnknownTerm):
        resolver.resolve("mod:exercise", OUTCOME)


def test_unknown_values_get_close_labels_as_suggestions(resolver: TermResolver) -> None:
    with pytest.raises(UnknownTerm) as err:
        resolver.resolve("fibromyalga", CONDITION, "condition")
    assert err.value.value == "fibromyalga"
    assert err.value.parameter == "condition"
    assert err.value.suggestions[0] == "fibromyalgia"
    assert "did you mean 'fibromyalgia'" in str(err.value)
    # suggestions respect the kind: an outcome label is never offered for a condition
    with pytest.raises(UnknownTerm) as err:
        resolver.resolve("pain severty", CONDITION)
    assert "pain severity" not in err.value.suggestions


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        COND + "no-such-condition",
        "cond:no-such-condition",
        "MeSH:D000000",
        "DOID:0",
        "unknownprefix:fibromyalgia",
        "fibromyalgia> } UNION { ?s ?p ?o",
        "<" + COND + "fibromyalgia> . ?x ?y ?z",
    ],
)
def test_values_that_name_nothing_are_unknown(resolver: TermResolver, value: str) -> None:
    with pytest.raises(UnknownTerm):
        resolver.resolve(value, CONDITION)


def test_unknown_term_is_a_value_error(resolver: TermResolver) -> None:
    with pytest.raises(ValueError):
        resolver.resolve("nothing like a term", CONDITION)


def test_lookups_use_the_index_not_the_store() -> None:
    store = load_store({"asserted": [FIXTURE]})
    resolver = TermResolver.from_store(store)
    store.clear()
    assert resolver.resolve("FMS", CONDITION) == COND + "fibromyalgia"
    assert resolver.label(COND + "fibromyalgia") == "fibromyalgia"


def test_choices_lists_the_terms_of_a_kind(resolver: TermResolver) -> None:
    assert resolver.choices(CONDITION) == sorted(
        COND + name
        for name in (
            "chronic-pain",
            "chronic-musculoskeletal-pain",
            "fibromyalgia",
            "osteoarthritis",
            "knee-osteoarthritis",
            "hip-osteoarthritis",
        )
    )


def test_normalise_ignores_case_hyphens_and_spacing() -> None:
    assert normalise("  Tai-Chi   Chuan ") == "tai chi chuan"
    assert normalise("pain_severity") == "pain severity"


def test_non_string_values_are_refused(resolver: TermResolver) -> None:
    with pytest.raises(UnknownTerm):
        resolver.resolve(42, CONDITION)  # type: ignore[arg-type]


def test_shipped_ontology_codes_and_synonyms() -> None:
    # the ontology as shipped, codes as vocabularies.md lists them
    resolver = TermResolver.from_store(load_store({"ontology": knowledge_files()["ontology"]}))
    assert resolver.resolve("MeSH:D005356", CONDITION) == COND + "fibromyalgia"
    assert resolver.resolve("DOID:631", CONDITION) == COND + "fibromyalgia"
    assert resolver.resolve("Tai Ji", CMP + "ExerciseModality") == MOD + "tai-chi"
    assert resolver.resolve("kinesiophobia", PATHOLOGY) == PATH + "fear-of-movement"
    assert resolver.resolve("disability", OUTCOME) == OUT + "disability"
    assert resolver.resolve("disability", PATHOLOGY) == PATH + "disability"
    assert resolver.resolve("pain", OUTCOME) == OUT + "pain-severity"
