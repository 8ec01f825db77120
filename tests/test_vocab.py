"""One CURIE function, one entity href, one SPARQL prologue, one disclaimer (service/vocab.py)."""

from __future__ import annotations

import pyoxigraph as ox
import pytest

from service import vocab
from service.kb import sources, validation
from service.prescribe import engine
from service.query import jsonld
from service.query.terms import TermResolver, UnknownTerm
from service.vocab import NS, PREFIXES, curie

# A table whose shorter namespace comes first: the old query/terms._curie took the first
# namespace an IRI starts with, so it wrote ex:vocab/Thing where ev:Thing is meant.
NESTED = {"ex": "http://example.org/", "ev": "http://example.org/vocab/"}


@pytest.mark.parametrize("table", [NESTED, dict(reversed(NESTED.items()))])
def test_the_longest_namespace_wins_whatever_the_table_order(table: dict[str, str]) -> None:
    assert curie("http://example.org/vocab/Thing", table) == "ev:Thing"
    assert curie("http://example.org/Other", table) == "ex:Other"
    assert curie("http://example.org/vocab/Thing", table, jsonld=True) == "ev:Thing"


def test_prefixed_names_and_compact_iris_differ_only_in_the_local_part() -> None:
    deep = "http://example.org/vocab/a/b"
    assert curie(deep, NESTED) is None  # '/' cannot stand in a SPARQL prefixed name
    assert curie(deep, NESTED, jsonld=True) == "ev:a/b"
    assert curie("http://example.org/vocab/", NESTED, jsonld=True) == "ex:vocab/"
    assert curie("http://example.org///x", NESTED, jsonld=True) is None  # reads as an IRI
    assert curie("urn:x:y", NESTED) is None


def test_every_compactor_is_the_one_function() -> None:
    comp = jsonld.Compactor({"@version": 1.1, **NESTED})
    assert comp.iri("http://example.org/vocab/Thing") == "ev:Thing"
    assert comp.iri("urn:x") == "urn:x"
    iri = PREFIXES["cond"] + "fibromyalgia"
    assert validation.short(iri) == curie(iri) == "cond:fibromyalgia"
    assert validation.short("urn:x") == "<urn:x>"
    assert sources.curie is vocab.curie


def test_term_errors_name_terms_by_their_curie() -> None:
    cond = PREFIXES["cond"]
    kind = PREFIXES["cmp"] + "Condition"
    resolver = TermResolver(
        [(cond + "a", "pain", 0), (cond + "b", "pain", 0)],
        [],
        [(cond + "a", kind), (cond + "b", kind)],
    )
    with pytest.raises(UnknownTerm) as err:
        resolver.resolve("pain", None, "condition")
    assert set(err.value.suggestions) == {"cond:a", "cond:b"}


def test_entity_href_keeps_our_iris_on_this_server() -> None:
    assert vocab.entity_href(NS + "condition/fibromyalgia") == "/cmpkg/condition/fibromyalgia"
    assert vocab.entity_href("http://id.nlm.nih.gov/mesh/D005356").startswith("http://id.nlm")


def test_the_prologue_declares_every_prefix_once_and_parses() -> None:
    prologue = vocab.sparql_prefixes()
    assert prologue.count("PREFIX ") == len(PREFIXES)
    result = ox.Store().query(prologue + "ASK { cond:x a cmp:Condition }")
    assert isinstance(result, ox.QueryBoolean) and not bool(result)


def test_one_disclaimer_everywhere() -> None:
    from service.web import pages

    assert jsonld.DISCLAIMER is engine.DISCLAIMER is pages.DISCLAIMER is vocab.DISCLAIMER
