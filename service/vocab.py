"""The project's names: namespaces and prefixes, and the one way each is written out.

Every layer (kb, store, query, prescribe, web) writes IRIs as CURIEs, links to entity pages,
declares SPARQL prefixes and shows the disclaimer; each of those has exactly one definition
here, so two pages can never disagree on how an IRI is shortened or what the service is for.
This module imports nothing from the project: it sits below every layer.
"""

from __future__ import annotations

from collections.abc import Mapping

NS = "https://w3id.org/cmpkg/"

PREFIXES: dict[str, str] = {
    "cmp": NS + "vocab/",
    "cond": NS + "condition/",
    "mod": NS + "modality/",
    "path": NS + "pathology/",
    "princ": NS + "principle/",
    "mech": NS + "mechanism/",
    "phen": NS + "phenomenon/",
    "site": NS + "site/",
    "out": NS + "outcome/",
    "comp": NS + "comparator/",
    "measure": NS + "measure/",
    "cert": NS + "certainty/",
    "dom": NS + "certainty-domain/",
    "strength": NS + "strength/",
    "status": NS + "status/",
    "report": NS + "reporting/",
    "ae": NS + "adverse-event/",
    "src": NS + "source/",
    "claim": NS + "claim/",
    "finding": NS + "finding/",
    "rec": NS + "recommendation/",
    "rule": NS + "rule/",
    "graph": NS + "graph/",
    "dir": NS + "direction/",
    "sig": NS + "significance/",
    "therapy": NS + "therapy/",
    # nodes the build and the prescription mint (rules' output, derivation records, shapes)
    "body": NS + "body/",
    "concl": NS + "conclusion/",
    "rating-down": NS + "rating-down/",
    "caution": NS + "caution/",
    "prescription-component": NS + "prescription-component/",
    "derivation": NS + "derivation/",
    "presentation": NS + "presentation/",
    "shape": NS + "shape/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "dcterms": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "sh": "http://www.w3.org/ns/shacl#",
    "pico": "http://data.cochrane.org/ontologies/pico/",
    "obo": "http://purl.obolibrary.org/obo/",
    "mesh": "http://id.nlm.nih.gov/mesh/",
}

# Shown on every page, answer and error document (API body, X-Disclaimer header, pages' footer,
# prescription summary): the product brief's line, in one wording.
# XSD's numeric datatypes: JSON numbers in plain JSON answers, and the datatypes a store
# parses into values (SHACL's ill-typed check relies on that).
NUMERIC_DATATYPES = frozenset(
    PREFIXES["xsd"] + name
    for name in (
        "decimal",
        "integer",
        "double",
        "float",
        "long",
        "int",
        "short",
        "byte",
        "nonNegativeInteger",
        "positiveInteger",
        "nonPositiveInteger",
        "negativeInteger",
        "unsignedLong",
        "unsignedInt",
        "unsignedShort",
        "unsignedByte",
    )
)

DISCLAIMER = (
    "Decision support for clinicians and guideline authors. Not advice to patients: "
    "read the certainty and the source of every figure before using it."
)

# Where an entity page of this server lives: https://w3id.org/cmpkg/x is served at /cmpkg/x.
ENTITY_PATH = "/cmpkg/"


def curie(iri: str, prefixes: Mapping[str, str] = PREFIXES, *, jsonld: bool = False) -> str | None:
    """The IRI under the longest namespace it starts with, as `prefix:local`, or None.

    Two syntaxes, one matching rule. A SPARQL/Turtle prefixed name (the default) cannot
    have '/' or '#' in its local part, so such IRIs get None. A JSON-LD compact IRI
    (`jsonld=True`) may, but its local part must be non-empty and must not make it read as an
    absolute IRI (`//...`, or a scheme-like first segment); of the namespaces that allow a
    valid local part, the longest wins.
    """
    matching = sorted(
        (p for p, base in prefixes.items() if iri.startswith(base)),
        key=lambda p: len(prefixes[p]),
        reverse=True,
    )
    if not jsonld:
        # a shorter namespace leaves a longer local part, with the same '/' or '#' in it
        matching = matching[:1]
    for prefix in matching:
        local = iri[len(prefixes[prefix]) :]
        if _valid_local(local, jsonld):
            return f"{prefix}:{local}"
    return None


def _valid_local(local: str, jsonld: bool) -> bool:
    if jsonld:
        return bool(local) and not local.startswith("//") and ":" not in local.split("/")[0]
    return "/" not in local and "#" not in local


def expand_curie(text: str, prefixes: Mapping[str, str] = PREFIXES) -> str | None:
    """The IRI a prefixed name stands for, or None when its prefix is not ours."""
    prefix, sep, local = text.partition(":")
    return prefixes[prefix] + local if sep and prefix in prefixes else None


def entity_href(iri: str) -> str:
    """Our IRIs link to their page on this server (so the link works behind a w3id redirect
    and offline); others link out."""
    return ENTITY_PATH + iri[len(NS) :] if iri.startswith(NS) else iri


def sparql_prefixes(prefixes: Mapping[str, str] = PREFIXES) -> str:
    """PREFIX declarations for every project prefix, for queries written in code."""
    return "".join(f"PREFIX {p}: <{iri}>\n" for p, iri in prefixes.items())
