"""The answer cache, ETags and the structured access log."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from conftest import http

from service.store.results import Answer
from service.store.safety import Dataset
from service.web.cache import AnswerCache, CacheKey, etag_matches


def key(query: str, build: str = "b1", media: str = "text/csv") -> CacheKey:
    return CacheKey(build, query, Dataset(), media)


def test_etag_depends_on_build_query_dataset_and_format():
    base = key("ASK {}")
    assert base.etag() == key("ASK {}").etag()
    assert base.etag() != key("ASK {}", build="b2").etag()
    assert base.etag() != key("ASK { ?s ?p ?o }").etag()
    assert base.etag() != key("ASK {}", media="application/sparql-results+json").etag()
    assert base.etag() != CacheKey("b1", "ASK {}", Dataset((), ()), "text/csv").etag()


def test_if_none_match_forms():
    tag = key("ASK {}").etag()
    assert etag_matches(tag, tag)
    assert etag_matches(f'"other", W/{tag}', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"other"', tag)
    assert not etag_matches(None, tag)


def test_cache_is_bounded_and_least_recently_used_goes_first():
    cache = AnswerCache(max_bytes=400)
    answers = {q: Answer("text/csv", b"x" * 90) for q in ("a", "b", "c", "d", "e")}
    for q in ("a", "b", "c", "d"):
        cache.put(key(q), answers[q])
    assert cache.get(key("a")) is not None  # "a" is now the most recently used
    cache.put(key("e"), answers["e"])  # 450 bytes > 400: "b" goes
    assert cache.get(key("b")) is None
    assert all(cache.get(key(q)) is not None for q in ("a", "c", "d", "e"))
    cache.put(key("huge"), Answer("text/csv", b"x" * 200))  # over a quarter: never stored
    assert cache.get(key("huge")) is None


def test_disabled_cache_stores_nothing():
    cache = AnswerCache(max_bytes=0)
    cache.put(key("a"), Answer("text/csv", b"1"))
    assert cache.get(key("a")) is None


def test_access_log_has_one_json_line_per_request(server, server_log):
    marker = "access-log-test"
    query = f"ASK {{ ?s ?p ?o }} # {marker}"
    url = f"{server}/sparql?" + urlencode({"query": query})
    assert http(url)[0] == 200
    assert http(url)[0] == 200  # the repeat is replayed from memory, and logged too
    lines = [
        json.loads(line) for line in server_log.read_text().splitlines() if line.startswith("{")
    ]
    sparql = [entry for entry in lines if entry.get("path") == "/sparql" and entry["status"] == 200]
    assert sparql, lines[-5:]
    for entry in sparql:
        assert entry["method"] in ("GET", "POST") and entry["ms"] >= 0
    assert any(entry["cache"] == "replay" for entry in sparql)
