"""The HTTP server under slow and malformed clients (a real `cmpkg serve`, loopback only)."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVICE_FLAGS, http, start_service, stop

SLOW_CLIENTS = 200  # twice waitress's default connection limit
# A line more often than the deadline, so only a deadline on the whole header (not per line)
# cuts the slow clients off.
LINE_EVERY = 2.5  # seconds between the header lines a slow client sends
HEADER_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def service(artifact: Path, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("logs") / "http-server.log"
    base, process = start_service(
        "--artifact", str(artifact), "--header-timeout", str(HEADER_TIMEOUT), *SERVICE_FLAGS,
        log=log,
    )  # fmt: skip
    yield base
    stop(process)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def answered_within(base: str, seconds: float) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=seconds) as response:
            return response.status == 200
    except OSError:
        return False


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def test_slowloris_does_not_stop_answers(service: str):
    port = port_of(service)
    slow = []
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        slow.append(sock)
    try:
        started = time.monotonic()
        next_line = started + LINE_EVERY
        misses = 0
        probes = 0
        while time.monotonic() - started < HEADER_TIMEOUT + 4:
            if time.monotonic() >= next_line:
                for sock in slow:
                    with contextlib.suppress(OSError):  # already cut off by the server
                        sock.sendall(b"X-Slow: still-typing\r\n")
                next_line += LINE_EVERY
            probes += 1
            misses += not answered_within(service, 3.0)
            time.sleep(0.5)
        assert probes > 10 and misses == 0, f"{misses} of {probes} requests got no answer"
        # Past the header deadline every slow client has been disconnected.
        assert sum(closed_by_server(sock) for sock in slow) == SLOW_CLIENTS
    finally:
        for sock in slow:
            sock.close()


def test_bare_lf_line_endings_get_a_400_not_a_hang(service: str):
    with socket.create_connection(("127.0.0.1", port_of(service)), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n")
        started = time.monotonic()
        reply = b""
        while chunk := sock.recv(4096):  # the server closes the connection after the 400
            reply += chunk
    assert time.monotonic() - started < 5
    assert reply.startswith(b"HTTP/1.1 400") or reply.startswith(b"HTTP/1.0 400"), reply[:100]
    assert b"CRLF" in reply


@pytest.mark.parametrize("path", ["/sparql", "/query", "/api/queries"])
def test_trace_is_405_with_allow(service: str, path: str):
    status, headers, _ = http(service + path, method="TRACE")
    assert status == 405
    allowed = {m.strip() for m in headers["allow"].split(",")}
    assert "GET" in allowed and "TRACE" not in allowed
    assert not {"PUT", "DELETE", "PATCH"} & allowed  # read-only: never advertised
