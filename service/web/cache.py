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
        # Computed for every /sparql request: one hash over the fields (a tuple's repr keeps
        # None, () and each IRI apart), not `digest(repr(self))`, whose dataclass repr and
        # per-part updates cost more than the hash.
        text = f"{self.build_id}\0{self.query}\0{self.media_type}\0{self.dataset.default!r}"
        text += f"\0{self.dataset.named!r}"
        tag = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f'"{tag}"'

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
    """A thread-safe LRU bounded in bytes; an entry larger than `largest` (by default a
    quarter: one huge answer must not flush everything else) is never stored. `max_bytes=0`
    stores nothing."""

    def __init__(self, max_bytes: int, largest: int | None = None) -> None:
        self.max_bytes = max(0, max_bytes)
        self.largest = self.max_bytes // 4 if largest is None else min(largest, self.max_bytes)
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
        if self.max_bytes <= 0 or size > self.largest:
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
    """Whole /sparql responses, replayed for a request with the same bytes.

    The answer cache above still parses the request and negotiates for every hit; for the same
    bytes in (method, query string, content type, body, Accept) the same bytes go out, so the
    HTTP front (service.web.httpd) replays the stored header block and body without doing
    either. Conditional requests are never replayed (they are answered 304). Keyed by digest:
    a 1 MB request costs a 64-character key.

    Any response that fits the budget is kept, however large: the largest answers are the
    expensive ones (seconds to evaluate), the ones an operator most expects a cache to hold;
    the answer cache's quarter rule kept every answer over 16 MB out of both.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lru: ByteLRU[tuple[bytes, bytes]] = ByteLRU(max_bytes, largest=max_bytes)
        self.hits = 0

    @staticmethod
    def key(method: str, query_string: str, content_type: str, body: bytes, accept: str) -> str:
        return digest(method, query_string, content_type, body, accept)

    def get(self, key: str) -> tuple[bytes, bytes] | None:
        """(header lines, body) of the stored 200 response."""
        stored = self._lru.get(key)
        if stored is not None:
            self.hits += 1
        return stored

    def put(self, key: str, head: bytes, body: bytes) -> None:
        self._lru.put(key, (head, body), len(key) + len(head) + len(body))
