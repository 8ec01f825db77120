"""The answer cache, ETags and the structured access log."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from conftest import http

from service.store.backends import Dataset
from service.store.results import Answer
from service.web.cache import ENTRY_OVERHEAD, AnswerCache, CacheKey, ResponseMemo, etag_matches


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
    # Every entry is counted with its key and a fixed overhead (keys used to be free), so the
    # budget is expressed in entries of this exact size: four fit, the fifth evicts one.
    answers = {q: Answer("text/csv", b"x" * 90) for q in ("a", "b", "c", "d", "e")}
    entry = 90 + len("text/csv") + key("a").size() + ENTRY_OVERHEAD
    cache = AnswerCache(max_bytes=4 * entry + entry // 2)
    for q in ("a", "b", "c", "d"):
        cache.put(key(q), answers[q])
    assert cache.get(key("a")) is not None  # "a" is now the most recently used
    cache.put(key("e"), answers["e"])  # five entries > budget: "b" goes
    assert cache.get(key("b")) is None
    assert all(cache.get(key(q)) is not None for q in ("a", "c", "d", "e"))
    assert cache.bytes <= cache.max_bytes
    cache.put(key("huge"), Answer("text/csv", b"x" * entry))  # over a quarter: never stored
    assert cache.get(key("huge")) is None


def test_the_memo_keeps_any_response_that_fits_its_budget():
    # The largest answers are the expensive ones: unlike the answer cache, the response memo
    # keeps one of three quarters of its budget; what does not fit at all is never stored.
    memo = ResponseMemo(max_bytes=2000)
    key_a, key_b = (
        ResponseMemo.key("GET", "a", "", b"", ""),
        ResponseMemo.key("GET", "b", "", b"", ""),
    )
    memo.put(key_a, b"h", b"x" * 1500)
    assert memo.get(key_a) == (b"h", b"x" * 1500)
    memo.put(key_b, b"h", b"x" * 2000)  # with its key and overhead, over the budget
    assert memo.get(key_b) is None and memo.get(key_a) is not None


def test_long_keys_count_against_the_budget():
    cache = AnswerCache(max_bytes=64 * 1024)
    for i in range(50):  # each key is 10 kB of query text and the answer is tiny
        cache.put(key(f"# {i}\n" + "x" * 10_000), Answer("text/csv", b"1"))
    assert cache.bytes <= 64 * 1024 and len(cache) < 10


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

    def entries() -> list[dict]:
        lines = [
            json.loads(line) for line in server_log.read_text().splitlines() if line.startswith("{")
        ]
        return [e for e in lines if e.get("path") == "/sparql" and e["status"] == 200]

    # The server logs a request once its answer is written, so the line can trail the answer
    # by a moment on a busy machine: wait for it (a bounded wait; it fails if it never comes).
    deadline = time.monotonic() + 5
    while not any(e["cache"] == "replay" for e in entries()) and time.monotonic() < deadline:
        time.sleep(0.05)
    sparql = entries()
    assert sparql
    for entry in sparql:
        assert entry["method"] in ("GET", "POST") and entry["ms"] >= 0
    assert any(entry["cache"] == "replay" for entry in sparql)
