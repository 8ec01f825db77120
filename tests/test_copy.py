"""No sentence of the knowledge base is copied from the seeds or the reference notes.

Labels, definitions, rationales and reported results are in the project's own words
(docs/CONVENTIONS.md). A run of COPY_RUN or more words that a literal shares with
`../shared/seeds/*.txt` or `../shared/reference/*.md` is a copied sentence, unless the literal is
a citation or a title quoted as published (the properties in VERBATIM). Words are compared
case-insensitively on letters and digits only, so punctuation, hyphens and line breaks do not
hide a copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pyoxigraph as ox
import pytest
from test_data_traceability import shared_dir

from service.kb.sources import PREFIXES, knowledge_files, load_triples

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "copy"
COPY_RUN = 10
# Text reproduced as published on purpose: bibliographic citations and quoted titles. Rule
# queries are code, not prose.
VERBATIM = {
    PREFIXES["cmp"] + "citation",
    PREFIXES["dcterms"] + "title",
    PREFIXES["sh"] + "construct",
}
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def runs(tokens: list[str], n: int = COPY_RUN) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def reference_runs() -> set[tuple[str, ...]]:
    shared = shared_dir()
    texts = sorted((shared / "seeds").glob("*.txt")) + sorted((shared / "reference").glob("*.md"))
    found: set[tuple[str, ...]] = set()
    for path in texts:
        found |= runs(words(path.read_text(encoding="utf-8")))
    return found


def copied(triples: Iterable[ox.Triple], reference: set[tuple[str, ...]]) -> list[str]:
    """Each literal that shares a run of COPY_RUN words with the references, with that run."""
    hits = []
    for t in triples:
        if not isinstance(t.object, ox.Literal) or t.predicate.value in VERBATIM:
            continue
        shared = sorted(runs(words(t.object.value)) & reference)
        if shared:
            subject = t.subject.value if not isinstance(t.subject, ox.Triple) else str(t.subject)
            hits.append(f"{subject} {t.predicate.value}: ... {' '.join(shared[0])} ...")
    return hits


@pytest.fixture(scope="module")
def reference() -> set[tuple[str, ...]]:
    return reference_runs()


def test_the_knowledge_base_copies_no_run_of_words(reference: set[tuple[str, ...]]) -> None:
    files = knowledge_files(ROOT)
    rules = sorted((ROOT / "ontology" / "rules").glob("*.ttl"))
    triples = load_triples(files["asserted"] + files["ontology"] + rules)
    hits = copied(triples, reference)
    assert not hits, (
        f"literals sharing {COPY_RUN} or more words with the seeds or notes (rewrite them in our "
        "own words):\n" + "\n".join(hits)
    )


def test_a_copied_sentence_is_caught(reference: set[tuple[str, ...]]) -> None:
    # The fixture's reported result repeats, with different punctuation and case, eleven words
    # of the Geneen 2017 seed abstract.
    hits = copied(load_triples([FIXTURES / "copied-sentence.ttl"]), reference)
    assert [h.split(" ")[0] for h in hits] == [PREFIXES["claim"] + "copy-fixture-copied"]


def test_a_paraphrase_and_a_quoted_citation_pass(reference: set[tuple[str, ...]]) -> None:
    # Nine shared words in a row, and a citation copied as published: neither is a copy.
    assert copied(load_triples([FIXTURES / "paraphrase.ttl"]), reference) == []
