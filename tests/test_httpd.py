"""The HTTP front (service.web.httpd) byte by byte: framing, limits, the hot path's replays.

Against the session's real `cmpkg serve` (loopback), except the connection limit, which an
in-process server with a small limit shows without opening 1,000 sockets.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pyoxigraph as ox
import pytest
from conftest import http

from service.store.backends import EmbeddedStore
from service.web import create_app, state
from service.web.httpd import make_server

ASK = "ASK { ?s ?p ?o }"


def exchange(base: str, data: bytes, until: int = 1, timeout: float = 10) -> bytes:
    """Send raw bytes; read until `until` responses' worth of data arrived or the server
    closed (responses are counted by their status lines)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        deadline = time.monotonic() + timeout
        while reply.count(b"HTTP/1.1 ") < until or not _complete(reply):
            if time.monotonic() > deadline:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def _complete(reply: bytes) -> bool:
    """Whether the last response in `reply` has all of its Content-Length body."""
    head_end = reply.rfind(b"\r\n\r\n")
    start = reply.rfind(b"HTTP/1.1 ")
    if head_end < start:
        return False
    head = reply[start:head_end].lower()
    if b"content-length:" not in head:
        return True
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    return len(reply) - (head_end + 4) >= length


def get_line(query: str, extra: str = "") -> bytes:
    target = "/sparql?" + urlencode({"query": query})
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def test_pipelined_requests_are_answered_in_order(server: str):
    first, second = f"{ASK} # pipelined 1", "ASK { <urn:none> ?p ?o } # pipelined 2"
    reply = exchange(server, get_line(first) + get_line(second) + get_line(first), until=3)
    bodies = [part for part in reply.split(b"HTTP/1.1 200 OK")[1:]]
    assert len(bodies) == 3
    assert [b"true" in b for b in bodies] == [True, False, True]


def test_a_chunked_body_is_decoded(server: str):
    query = f"{ASK} # chunked".encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (query[:5], query[5:])) + b"0\r\n\r\n"
    head = (
        b"POST /sparql HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/sparql-query\r\nAccept: application/sparql-results+json\r\n\r\n"
    )
    reply = exchange(server, head + chunks)
    assert reply.startswith(b"HTTP/1.1 200") and b'"boolean":true' in reply


def test_expect_100_continue_is_answered_before_the_body(server: str):
    host, port = server.removeprefix("http://").rsplit(":", 1)
    body = f"{ASK} # expect".encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /sparql HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/sparql-query\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_body_over_the_limit_is_413_before_it_is_sent(server: str):
    # The service runs with --max-body 65536; the body itself never follows.
    head = (
        b"POST /sparql HTTP/1.1\r\nHost: t\r\nContent-Type: application/sparql-query\r\n"
        b"Content-Length: 10000000\r\n\r\n"
    )
    reply = exchange(server, head)
    assert reply.startswith(b"HTTP/1.1 413") and b"65536 bytes" in reply
    assert b"Connection: close" in reply


def test_a_chunked_body_over_the_limit_is_413(server: str):
    chunk = b"#" * 40_000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    head = (
        b"POST /sparql HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/sparql-query\r\n\r\n"
    )
    reply = exchange(server, head + body)
    assert reply.startswith(b"HTTP/1.1 413")


def test_a_huge_header_is_431(server: str):
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"X-Pad: " + b"a" * 300_000 + b"\r\n\r\n"
    assert exchange(server, head).startswith(b"HTTP/1.1 431")


def test_malformed_request_line_is_400_with_the_reason(server: str):
    reply = exchange(server, b"GET /healthz HTTP/9.9.9\r\nHost: t\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in reply


def test_a_repeated_request_is_replayed_with_the_same_bytes(server: str):
    url = server + "/sparql?" + urlencode({"query": f"{ASK} # replayed"})
    first = http(url, headers={"Accept": "text/csv"})
    again = http(url, headers={"Accept": "text/csv"})
    assert first[0] == again[0] == 200 and first[2] == again[2]
    assert {k: v for k, v in first[1].items() if k != "date"} == {
        k: v for k, v in again[1].items() if k != "date"
    }
    assert again[1]["content-security-policy"] and again[1]["access-control-allow-origin"]
    # The same query asked for another format is another answer, not a replay of this one.
    other = http(url, headers={"Accept": "application/sparql-results+json"})
    assert other[0] == 200 and other[1]["etag"] != first[1]["etag"]


def test_percent_encoded_paths_reach_flask(server: str):
    status, _, _ = http(server + "/" + quote("healthz"))
    assert status == 200
    status, _, body = http(server + "/%68ealthz")  # /healthz, spelled with an escape
    assert status == 200 and b"ok" in body


# --- in process: the connection limit --------------------------------------------------------


@pytest.fixture(scope="module")
def small_front() -> Iterator[tuple[str, object]]:
    store = ox.Store()
    store.add(ox.Quad(ox.NamedNode("urn:a"), ox.NamedNode("urn:b"), ox.NamedNode("urn:c")))
    embedded = EmbeddedStore(store, "front", workers=1)
    app = create_app(embedded, {"PUBLIC_BASE_URL": None})
    front = make_server(app, "127.0.0.1", 0, 2, 2.0, 30.0, connection_limit=3)
    thread = threading.Thread(target=front.run, kwargs={"handle_signals": False})
    thread.start()
    try:
        yield f"http://127.0.0.1:{front.port}", front
    finally:
        front.stop()
        thread.join(timeout=10)
        front.close()
        state(app).close()


def test_past_the_connection_limit_new_connections_wait(small_front):
    base, front = small_front
    port = int(base.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.3)
        assert front.open == 3 and not front.accepting
        # A fourth client waits in the backlog, and is served once one of the three leaves.
        answered: list[int] = []
        waiter = threading.Thread(target=lambda: answered.append(http(base + "/healthz")[0]))
        waiter.start()
        time.sleep(0.5)
        assert answered == []
        idle.pop().close()
        waiter.join(timeout=10)
        assert answered == [200]
    finally:
        for sock in idle:
            sock.close()


def test_the_header_deadline_closes_a_slow_client(small_front):
    base, _ = small_front
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # and nothing more
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server's sweep after the 2 s deadline
        assert time.monotonic() - started < 8
