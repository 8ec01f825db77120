"""The one loader: a file parsed straight into triples, and a broken file named with its line."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest

from service.kb.sources import RDFSyntaxError, parse_file, parse_triples

GOOD = (
    "@prefix cmp: <https://w3id.org/cmpkg/vocab/> .\n"
    "<https://w3id.org/cmpkg/claim/a> cmp:estimate 0.5 ;\n"
    '    cmp:label "a"@en .\n'
)


def test_parse_triples_gives_the_statements_of_parse_file(tmp_path: Path):
    path = tmp_path / "a.ttl"
    path.write_text(GOOD)
    expected = [q.triple for q in parse_file(path)]
    assert len(expected) == 2
    assert parse_triples(path) == expected
    assert parse_triples(path, path.read_bytes()) == expected  # from bytes already read
    assert all(isinstance(t, ox.Triple) for t in expected)


@pytest.mark.parametrize("from_bytes", [False, True])
def test_a_syntax_error_names_the_file_and_line(tmp_path: Path, from_bytes: bool):
    path = tmp_path / "broken.ttl"
    path.write_text(GOOD + "\n\nthis is not turtle .\n")
    with pytest.raises(RDFSyntaxError) as err:
        parse_triples(path, path.read_bytes() if from_bytes else None)
    assert err.value.path == path
    assert err.value.line == 6
    assert "broken.ttl, line 6" in str(err.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(RDFSyntaxError) as err:
        parse_triples(tmp_path / "gone.ttl")
    assert "gone.ttl" in str(err.value)
