"""Answers cached in process: the served KG only changes with a new build.

Keys carry the build id, so a new build never serves an old answer; ETags are derived from the
same key, so a client's conditional GET can be answered 304 without evaluating anything.
Both caches are `ByteLRU`s (cachetools, sized in bytes): every entry is counted with its key,
and a query or request body is kept only as its SHA-256, so a megabyte of query text costs
32 bytes of key, and memory stays bounded however many distinct queries arrive.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

from service.store.backends import Dataset
from service.store.results import Answer

V = TypeVar("V")
ENTRY_OVERHEAD = 256  # bytes per entry for the objects around key and value


def normalize(query: str) -> str:
    # Only outer whitespace: inner whitespace may sit inside string literals.
    return query.strip()


def digest(*parts: bytes | str) -> str:
    """A fixed-size stand-in for arbitrarily long request text."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    build_id: str
    query: str  # the query text or its digest (the /sparql blueprint passes the digest)
    dataset: Dataset
    media_type: str

    def etag(self) -> str:
        return f'"{digest(repr(self))[:32]}"'

    def size(self) -> int:
        graphs = (self.dataset.default or ()) + (self.dataset.named or ())
        return len(self.build_id) + len(self.query) + len(self.media_type) + sum(map(len, graphs))


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in candidates


class ByteLRU(Generic[V]):
    """A thread-safe LRU bounded in bytes; an entry larger than a quarter is never stored
    (one huge answer must not flush everything else). `max_bytes=0` stores nothing."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self._items: LRUCache[Hashable, tuple[V, int]] = LRUCache(
            maxsize=max(1, self.max_bytes), getsizeof=lambda entry: entry[1]
        )
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            entry = self._items.get(key)
        return None if entry is None else entry[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        size += ENTRY_OVERHEAD
        if self.max_bytes <= 0 or size > self.max_bytes // 4:
            return
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, size)

    @property
    def bytes(self) -> int:
        with self._lock:
            return int(self._items.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class AnswerCache:
    """Answers by CacheKey; `max_bytes=0` disables it (for uncached measurements)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._lru: ByteLRU[Answer] = ByteLRU(max_bytes)
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> Answer | None:
        answer = self._lru.get(key)
        if answer is None:
            self.misses += 1
        else:
            self.hits += 1
        return answer

    def put(self, key: CacheKey, answer: Answer) -> None:
        self._lru.put(key, answer, len(answer.body) + len(answer.media_type) + key.size())

    @property
    def bytes(self) -> int:
        return self._lru.bytes

    def __len__(self) -> int:
        return len(self._lru)


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
        self._lru: ByteLRU[tuple[str, list, bytes]] = ByteLRU(max_bytes)
        self.hits = 0

    def __call__(self, environ, start_response):
        import time

        started = time.perf_counter()
        key = self._key(environ)
        if key is None:
            return self.app(environ, start_response)
        stored = self._lru.get(key)
        if stored is not None:
            self.hits += 1
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

    def _key(self, environ) -> str | None:
        """The digest of what makes the response, or None for a request we never replay."""
        import io

        if (
            self.max_bytes <= 0
            or environ.get("PATH_INFO") != "/sparql"
            or environ.get("REQUEST_METHOD") not in ("GET", "POST")
            or "HTTP_IF_NONE_MATCH" in environ
        ):
            return None
        body = b""
        if environ["REQUEST_METHOD"] == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return None
            if length <= 0 or length > self.max_body:
                return None
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)  # Flask reads it again on a miss
        return digest(
            environ["REQUEST_METHOD"],
            environ.get("QUERY_STRING", ""),
            environ.get("CONTENT_TYPE", ""),
            body,
            environ.get("HTTP_ACCEPT", ""),
        )

    def _put(self, key: str, value: tuple[str, list, bytes]) -> None:
        status, headers, payload = value
        size = len(key) + len(status) + len(payload) + sum(len(n) + len(v) for n, v in headers)
        self._lru.put(key, value, size)
