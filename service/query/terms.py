"""Turn what a person types for a query parameter into one of our IRIs.

Accepted forms, tried in this order: a full IRI we hold, a CURIE with a project prefix
(`cond:fibromyalgia`), an external code or IRI that a term matches (`MeSH:D005356`,
`DOID:631`, `http://id.nlm.nih.gov/mesh/D005356`), a label or synonym (case-insensitive,
hyphens and spaces alike), and finally a bare local name (`knee-osteoarthritis`).
The index is built once per store: one query for the terms, none per lookup.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyoxigraph as ox

from service.kb.sources import PREFIXES

OBO = "http://purl.obolibrary.org/obo/"
MESH = "http://id.nlm.nih.gov/mesh/"
RDFS = PREFIXES["rdfs"]
SKOS = PREFIXES["skos"]

# Labels first: a synonym must never shadow another term's preferred label.
_LABEL_RANK = {
    RDFS + "label": 0,
    SKOS + "prefLabel": 0,
    SKOS + "altLabel": 1,
}
_MATCH_RANK = {SKOS + "exactMatch": 0, SKOS + "closeMatch": 1}

_INDEX_QUERY = f"""
SELECT ?s ?p ?o WHERE {{
  ?s ?p ?o .
  VALUES ?p {{ {" ".join(f"<{p}>" for p in [*_LABEL_RANK, *_MATCH_RANK])} }}
}}
"""
# Every typed subject with all its classes, so "a condition" also finds punned subclasses and
# "a source" finds systematic reviews.
_TYPE_QUERY = f"""
SELECT DISTINCT ?s ?t WHERE {{
  ?s a ?direct . ?direct <{RDFS}subClassOf>* ?t .
  FILTER(isIRI(?s) && isIRI(?t))
}}
"""

_CURIE = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*):([^\s/][^\s]*)$")


def normalise(text: str) -> str:
    """The comparison key of a label: case, hyphens, underscores and spacing do not matter."""
    return " ".join(re.sub(r"[-_\s]+", " ", text).casefold().split())


@dataclass
class UnknownTerm(ValueError):
    """A parameter value that names none of our terms (of the expected kind)."""

    value: str
    parameter: str = ""
    suggestions: list[str] = field(default_factory=list)
    reason: str = "unknown term"

    def __str__(self) -> str:
        where = f" for parameter {self.parameter!r}" if self.parameter else ""
        text = f"{self.reason}{where}: {self.value!r}"
        if self.suggestions:
            text += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        return text


class TermResolver:
    """An in-memory index of the terms of one store."""

    def __init__(
        self,
        labels: Iterable[tuple[str, str, int]],
        matches: Iterable[tuple[str, str, int]],
        types: Iterable[tuple[str, str]],
    ) -> None:
        self._types: dict[str, set[str]] = defaultdict(set)
        for iri, type_iri in types:
            self._types[iri].add(type_iri)
        # key -> {iri: best rank}; display label per iri for suggestions and messages
        self._labels: dict[str, dict[str, int]] = defaultdict(dict)
        self._display: dict[str, str] = {}
        display_rank: dict[str, int] = {}
        for iri, label, rank in labels:
            key = normalise(label)
            if not key:
                continue
            seen = self._labels[key].get(iri)
            self._labels[key][iri] = rank if seen is None else min(seen, rank)
            if rank < display_rank.get(iri, 99):
                display_rank[iri] = rank
                self._display[iri] = label
        self._matches: dict[str, dict[str, int]] = defaultdict(dict)
        for iri, external, rank in matches:
            seen = self._matches[external].get(iri)
            self._matches[external][iri] = rank if seen is None else min(seen, rank)
        self._local: dict[str, set[str]] = defaultdict(set)
        for iri in self._types:
            self._local[normalise(_local_name(iri))].add(iri)

    @classmethod
    def from_store(cls, store: ox.Store) -> TermResolver:
        rows = [
            (row["s"], row["p"].value, row["o"])
            for row in store.query(_INDEX_QUERY, use_default_graph_as_union=True)
            if isinstance(row["s"], ox.NamedNode)
        ]
        labels = [
            (s.value, o.value, _LABEL_RANK[p])
            for s, p, o in rows
            if p in _LABEL_RANK and isinstance(o, ox.Literal)
        ]
        matches = [
            (s.value, o.value, _MATCH_RANK[p])
            for s, p, o in rows
            if p in _MATCH_RANK and isinstance(o, ox.NamedNode)
        ]
        types = [
            (row["s"].value, row["t"].value)
            for row in store.query(_TYPE_QUERY, use_default_graph_as_union=True)
        ]
        return cls(labels, matches, types)

    # -- lookups ------------------------------------------------------------------------------

    def is_a(self, iri: str, type_iri: str | None) -> bool:
        return iri in self._types and (type_iri is None or type_iri in self._types[iri])

    def label(self, iri: str) -> str | None:
        return self._display.get(iri)

    def choices(self, type_iri: str | None = None) -> list[str]:
        """Every IRI of a kind, sorted: what a form can offer for a parameter."""
        return sorted(iri for iri in self._types if self.is_a(iri, type_iri))

    def resolve(self, value: str, type_iri: str | None = None, parameter: str = "") -> str:
        """The one IRI `value` names among terms of `type_iri`; UnknownTerm otherwise."""
        if not isinstance(value, str):
            raise UnknownTerm(repr(value), parameter, [], "not a string")
        text = value.strip()
        if not text:
            raise UnknownTerm(value, parameter, [], "empty value")
        for candidates in self._candidates(text):
            fitting = {iri: r for iri, r in candidates.items() if self.is_a(iri, type_iri)}
            if not fitting:
                continue
            best = min(fitting.values())
            winners = sorted(iri for iri, r in fitting.items() if r == best)
            if len(winners) == 1:
                return winners[0]
            raise UnknownTerm(
                value, parameter, [self._curie(iri) for iri in winners], "ambiguous term"
            )
        known = {iri for found in self._candidates(text) for iri in found}
        wrong_kind = sorted(known & self._types.keys())
        if wrong_kind and type_iri:
            raise UnknownTerm(
                value,
                parameter,
                self.suggest(text, type_iri),
                f"{self._curie(wrong_kind[0])} is not a {self._curie(type_iri)}",
            )
        raise UnknownTerm(value, parameter, self.suggest(text, type_iri))

    def suggest(self, text: str, type_iri: str | None = None, n: int = 5) -> list[str]:
        """Labels of the right kind that look most like `text` (for error messages)."""
        keys = {
            key: iri
            for key, iris in self._labels.items()
            for iri in iris
            if self.is_a(iri, type_iri)
        }
        close = difflib.get_close_matches(normalise(text), list(keys), n=n, cutoff=0.6)
        found: list[str] = []
        for key in close:
            label = self._display.get(keys[key], key)
            if label not in found:
                found.append(label)
        return found

    # -- internals ----------------------------------------------------------------------------

    def _candidates(self, text: str) -> Iterable[dict[str, int]]:
        """Candidate IRIs (with a rank, lower is better) for each accepted form, in order."""
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1].strip()
        if text in self._types:
            yield {text: 0}
        for external in _external_iris(text):
            if external in self._types:
                yield {external: 0}
            if external in self._matches:
                yield self._matches[external]
        key = normalise(text)
        if key in self._labels:
            yield self._labels[key]
        if key in self._local:
            yield dict.fromkeys(self._local[key], 0)

    def _curie(self, iri: str) -> str:
        for prefix, base in PREFIXES.items():
            if iri.startswith(base) and len(iri) > len(base):
                return f"{prefix}:{iri[len(base) :]}"
        return iri


def _local_name(iri: str) -> str:
    return re.split(r"[/#]", iri)[-1]


def _external_iris(text: str) -> list[str]:
    """The IRIs a CURIE or code may stand for: project prefixes, MeSH and OBO styles."""
    found = []
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        found.append(text)
    match = _CURIE.match(text)
    if match and "://" not in text:
        prefix, local = match.groups()
        lower = prefix.lower()
        if lower in PREFIXES and lower not in ("obo", "mesh"):
            found.append(PREFIXES[lower] + local)
            found.append(PREFIXES[lower] + local.lower())
        elif lower == "mesh":
            found.append(MESH + local.upper())
        elif lower == "obo":
            found.append(OBO + local)
        else:
            # OBO Foundry style: DOID:631 -> obo:DOID_631 (prefix upper case by convention)
            found.append(f"{OBO}{prefix.upper()}_{local}")
    return list(dict.fromkeys(found))
