"""Answers cached in process: the served KG only changes with a new build.

Keys carry the build id, so a new build never serves an old answer; ETags are derived from the
same key, so a client's conditional GET can be answered 304 without evaluating anything.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from service.store.results import Answer
from service.store.safety import Dataset


def normalize(query: str) -> str:
    # Only outer whitespace: inner whitespace may sit inside string literals.
    return query.strip()


@dataclass(frozen=True)
class CacheKey:
    build_id: str
    query: str
    dataset: Dataset
    media_type: str

    def etag(self) -> str:
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:32]
        return f'"{digest}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in candidates


class AnswerCache:
    """A byte-bounded LRU of answers; `max_bytes=0` disables it (for uncached measurements)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[CacheKey, Answer] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> Answer | None:
        with self._lock:
            answer = self._items.get(key)
            if answer is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return answer

    def put(self, key: CacheKey, answer: Answer) -> None:
        size = len(answer.body)
        if size > self.max_bytes // 4:  # one huge answer must not flush everything else
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = answer
            self._size += size
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= len(old.body)

    def __len__(self) -> int:
        return len(self._items)


class ResponseMemo:
    """WSGI middleware answering a repeated identical /sparql request from memory.

    The answer cache above still runs Flask, request parsing and negotiation for every hit;
    for the same bytes in (method, query string, body, Accept) the same bytes go out, so this
    replays the stored 200 response without entering Flask at all. Conditional requests pass
    through (Flask answers them 304).
    """

    def __init__(self, app, max_bytes: int, max_body: int, log=None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_body = max_body
        self.log = log  # callable(environ, status_code, nbytes, started) for the access log
        self._items: OrderedDict[tuple, tuple[str, list, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0

    def __call__(self, environ, start_response):
        import io
        import time

        if (
            self.max_bytes <= 0
            or environ.get("PATH_INFO") != "/sparql"
            or environ.get("REQUEST_METHOD") not in ("GET", "POST")
            or "HTTP_IF_NONE_MATCH" in environ
        ):
            return self.app(environ, start_response)
        started = time.perf_counter()
        body = b""
        if environ["REQUEST_METHOD"] == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return self.app(environ, start_response)
            if length <= 0 or length > self.max_body:
                return self.app(environ, start_response)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
        key = (
            environ["REQUEST_METHOD"],
            environ.get("QUERY_STRING", ""),
            environ.get("CONTENT_TYPE", ""),
            body,
            environ.get("HTTP_ACCEPT", ""),
        )
        with self._lock:
            stored = self._items.get(key)
            if stored is not None:
                self._items.move_to_end(key)
                self.hits += 1
        if stored is not None:
            status, headers, payload = stored
            start_response(status, headers)
            if self.log is not None:
                self.log(environ, int(status[:3]), len(payload), started)
            return [payload]
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        chunks = self.app(environ, capture)
        try:
            payload = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        status = captured.get("status", "")
        headers = captured.get("headers", [])
        if status.startswith("200") and any(name.lower() == "etag" for name, _ in headers):
            self._put(key, (status, list(headers), payload))
        return [payload]

    def _put(self, key: tuple, value: tuple[str, list, bytes]) -> None:
        size = len(value[2]) + len(key[1]) + len(key[3])
        if size > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._size += size
            while self._size > self.max_bytes:
                old_key, old = self._items.popitem(last=False)
                self._size -= len(old[2]) + len(old_key[1]) + len(old_key[3])
