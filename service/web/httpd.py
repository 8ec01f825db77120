"""The HTTP server: one asyncio event loop; /sparql answered on it, every other route by Flask.

Why. Measured on the old server (waitress + Flask): an uncached trivial query cost about
3.6 ms against Oxigraph's 0.23 ms. waitress reads every request on its asyncore thread and
hands it to a task thread and back, and each hand-off waits for the GIL; Flask's request
machinery, the response memo and the pool's blocking pipe added the rest. Here a query
request never leaves the event loop: it is parsed (httptools, the llhttp parser), the one
endpoint logic of service.web.sparql decides (errors, 304, cached answers), and a query that
must be evaluated goes to a sandboxed worker whose socket the loop waits on
(`WorkerPool.run_async`). A repeated identical request is replayed from the response memo.
Every other route (pages, API, FHIR, the service description, CORS preflights, HEAD) runs
in Flask on a thread pool, as before.

What the server itself guarantees (tests/test_http_server.py and the hardening tests):
- slowloris: a connection must complete its request header within `header_timeout` of the
  request's first byte, and may sit idle between requests for `idle_timeout`; a sweep every
  second closes those that overstay. An idle or slow client costs a socket, never a thread;
  past `connection_limit` open connections a new one is closed at once.
- strict framing: bare LF line endings (and any other malformed request) get a 400 that says
  why; headers are capped at MAX_HEADER_BYTES (431), bodies at the app's MAX_CONTENT_LENGTH
  (413, before the body is read); chunked bodies are decoded and bounded the same way;
  `Expect: 100-continue` is answered.
- a worker is still the only place a query is parsed or evaluated, with its timeout and
  memory cap (service.store.pool); the loop never blocks on one.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import httptools
import uvloop
from flask import Flask

from service.store.backends import StoreError
from service.web import common_headers, public_base, state
from service.web.cache import ResponseMemo
from service.web.ops import access_log, log_request
from service.web.protocol import body_too_large
from service.web.sparql import Describe, Incoming, Pending, Reply, failure, finish, prepare

log = logging.getLogger("cmpkg.serve")


def json_event(event: str, error: str) -> str:
    return json.dumps({"event": event, "error": error[:500]})


MAX_HEADER_BYTES = 256 * 1024  # request line and header fields together (waitress's default)
BACKLOG = 1024
SWEEP_EVERY = 1.0  # seconds between deadline checks
LARGE_BODY = 64 * 1024  # above this a body is written on its own instead of copied after the head
NO_BODY_STATUS = {204, 304}
MAX_PIPELINED = 16  # requests read ahead of the one being answered before reading pauses
BARE_LF = "header lines must end with CRLF (bare LF line endings are not accepted)"


@dataclass
class Request:
    method: str
    path: str  # as sent (percent-encoded)
    query: str
    headers: dict[str, str]  # names lower-cased; repeated fields joined with ", "
    body: bytes
    version: str
    keep_alive: bool
    memo_key: str | None = None  # set by HttpServer.replay: the miss then stores under it


class _Refused(Exception):
    """A request the server answers itself, before the app sees it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@functools.cache  # a handful of statuses, written on every response
def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


def _head(headers: list[tuple[str, str]]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1")


def _with_common_headers(headers: list[tuple[str, str]], html: bool) -> list[tuple[str, str]]:
    """The app-wide headers (service.web.common_headers) the route did not set itself."""
    present = {name.lower() for name, _ in headers}
    extra = [(n, v) for n, v in common_headers(html).items() if n.lower() not in present]
    return headers + extra


class Connection(asyncio.Protocol):
    """One client connection: requests parsed in order and answered one at a time."""

    def __init__(self, front: HttpServer) -> None:
        self.front = front
        self.loop = front.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.pending: deque[Request] = deque()
        self.busy = False
        self.reading = True
        self.closed = False
        self.final: tuple[int, str] | None = None  # the error that ends this connection
        self.header_started: float | None = None
        self.last_active = self.loop.time()
        self._start_message()

    # --- parser callbacks (httptools) ---
    def _start_message(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.refused: _Refused | None = None

    def on_message_begin(self) -> None:
        self._start_message()
        self.header_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > MAX_HEADER_BYTES:
            self.refused = _Refused(431, f"request header over {MAX_HEADER_BYTES} bytes")
            raise self.refused

    def on_headers_complete(self) -> None:
        self.header_started = None  # only a body may follow: the header deadline is met
        length = self.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.front.max_body:
            self.refused = _Refused(413, body_too_large(self.front.max_body))
            raise self.refused
        expect = self.headers.get("expect", "")
        if expect.lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.front.max_body:
            self.refused = _Refused(413, body_too_large(self.front.max_body))
            raise self.refused
        self.body.append(body)

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self.url) if self.url else None
        path = url.path.decode("latin-1") if url and url.path else "/"
        query = url.query.decode("latin-1") if url and url.query else ""
        self.pending.append(
            Request(
                self.parser.get_method().decode("ascii", "replace"),
                path,
                query,
                self.headers,
                b"".join(self.body),
                self.parser.get_http_version(),
                self.parser.should_keep_alive(),
            )
        )

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP stream transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        self.front.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.front.connections.discard(self)
        self.front.connection_closed()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.final is not None:
            return
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # We speak HTTP/1.1 only: answer the request as it is, then close.
            if self.pending:
                self.pending[-1].keep_alive = False
        except httptools.HttpParserCallbackError:
            refused = self.refused or _Refused(400, "malformed HTTP request")
            self._refuse(refused.status, refused.message)
            return
        except httptools.HttpParserError as err:
            text = str(err)
            bare_lf = "CR" in text or "LF" in text
            self._refuse(400, BARE_LF if bare_lf else f"malformed HTTP request: {text}")
            return
        if len(self.pending) > MAX_PIPELINED and self.transport is not None:
            self.reading = False  # answered one at a time: a client far ahead waits
            self.transport.pause_reading()
        self._next()

    # --- answering ---
    def _next(self) -> None:
        if self.busy or self.closed:
            return
        if not self.pending:
            if self.final is not None:  # after the requests before it, in order
                status, message = self.final
                reply = failure(status, message, "text/plain")
                head = _head(_with_common_headers(reply.headers, False))
                self.write(reply.status, head, reply.body, keep_alive=False)
            return
        self.busy = True
        request = self.pending.popleft()
        if request.path == "/sparql" and request.method in ("GET", "POST"):
            if self.front.replay(self, request):  # answered at once: no task, no await
                return
            task = self.loop.create_task(self.front.answer_query(self, request))
        else:
            task = self.loop.create_task(self.front.answer_with_app(self, request))
        task.add_done_callback(self._failed_task)

    def _failed_task(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("request failed", exc_info=task.exception())
            if self.busy and not self.closed:
                self.busy = False
                self.pending.clear()
                self._refuse(500, "internal server error")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` without the app, after the requests already read, then close: the
        rest of the stream cannot be read as requests."""
        self.final = (status, message)
        if self.transport is not None:
            self.reading = False
            self.transport.pause_reading()
        self._next()

    def write(
        self, status: int, head: bytes, body: bytes, keep_alive: bool, send_body: bool = True
    ) -> None:
        """Send one response (the app's header lines in `head`) and take the next request."""
        if self.closed or self.transport is None:
            return
        lines = [_status_line(status), b"Server: cmpkg\r\n", self.front.date_line()]
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        if status not in NO_BODY_STATUS and status >= 200:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines += [head, b"\r\n"]
        out = b"".join(lines)
        if not send_body or status in NO_BODY_STATUS:
            self.transport.write(out)
        elif len(body) > LARGE_BODY:
            self.transport.write(out)
            self.transport.write(body)
        else:
            self.transport.write(out + body)
        self.busy = False
        if not keep_alive:
            self.closed = True
            self.front.connections.discard(self)
            self.transport.close()
            return
        self.last_active = self.loop.time()
        if not self.reading and len(self.pending) <= MAX_PIPELINED:
            self.reading = True
            self.transport.resume_reading()
        self._next()

    def overdue(self, now: float) -> bool:
        """Past the header deadline, or idle past the keep-alive timeout."""
        if self.busy:
            return False
        if self.header_started is not None:
            return now - self.header_started > self.front.header_timeout
        return now - self.last_active > self.front.idle_timeout


class HttpServer:
    """The service on one TCP address; `run` serves until SIGTERM/SIGINT, `close` frees it."""

    def __init__(
        self,
        app: Flask,
        host: str,
        port: int,
        threads: int,
        header_timeout: float,
        idle_timeout: float,
        connection_limit: int,
    ) -> None:
        self.app = app
        self.service = state(app)
        self.config = app.config
        self.max_body = int(app.config["MAX_CONTENT_LENGTH"])
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.connection_limit = connection_limit
        self.socket = socket.create_server(
            (host, port),
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            backlog=BACKLOG,
        )
        self.host, self.port = host, self.socket.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.endpoint = (public_base(app.config) or f"http://{shown}:{self.port}") + "/sparql"
        self.executor = ThreadPoolExecutor(max(1, threads), thread_name_prefix="cmpkg-http")
        self.loop = uvloop.new_event_loop()
        self.data_head = _head(list(common_headers(False).items()))
        self.connections: set[Connection] = set()
        self.open = 0  # accepted and not yet closed (the limit counts these)
        self.accepting = False
        self._date = (0, b"")

    def date_line(self) -> bytes:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode("ascii"))
        return self._date[1]

    # --- the hot path ---
    @staticmethod
    def _memo_key(request: Request, memo: ResponseMemo) -> str | None:
        """What a replayable request is remembered by; None for one that never is."""
        if "if-none-match" in request.headers or memo.max_bytes <= 0:
            return None  # a conditional request is answered 304 or evaluated, never replayed
        headers = request.headers
        return ResponseMemo.key(
            request.method, request.query, headers.get("content-type", ""), request.body,
            headers.get("accept", ""),
        )  # fmt: skip

    def replay(self, conn: Connection, request: Request) -> bool:
        """Answer a request seen before from the response memo; False when it was not."""
        started = time.perf_counter()
        memo = self.service.memo
        key = request.memo_key = self._memo_key(request, memo)
        stored = memo.get(key) if key is not None else None
        if stored is None:
            return False
        conn.write(200, stored[0], stored[1], request.keep_alive)
        self._log(request, conn, 200, len(stored[1]), started, "replay")
        return True

    async def answer_query(self, conn: Connection, request: Request) -> None:
        started = time.perf_counter()
        accept = request.headers.get("accept")
        content_type = request.headers.get("content-type")
        if_none_match = request.headers.get("if-none-match")
        memo = self.service.memo  # this build's: a swap brings an empty one
        key = request.memo_key  # from `replay`, which every /sparql request passes first
        store = self.service.pin()
        try:
            incoming = Incoming(
                request.method, content_type, request.query, request.body, accept,
                if_none_match, self.endpoint,
            )  # fmt: skip
            outcome = prepare(incoming, store, self.service.cache, self.config)
            if isinstance(outcome, Describe):
                await self.answer_with_app(conn, request)
                return
            if isinstance(outcome, Pending):
                outcome = await self._evaluate(store, outcome, accept)
        finally:
            self.service.release(store)
        if outcome.status in (200, 304):  # our own header names only: the common ones follow
            head = _head(outcome.headers) + self.data_head
        else:
            head = _head(_with_common_headers(outcome.headers, False))
        if key is not None and outcome.status == 200 and outcome.cache != "not-modified":
            memo.put(key, head, outcome.body)
        conn.write(outcome.status, head, outcome.body, request.keep_alive)
        self._log(request, conn, outcome.status, len(outcome.body), started, outcome.cache)

    async def _evaluate(self, store: Any, pending: Pending, accept: str | None) -> Reply:
        execute_async = getattr(store, "execute_async", None)
        try:
            if execute_async is not None:
                answer = await execute_async(pending.job, pending.timeout)
            else:  # a remote store: its client library blocks, so a thread waits for it
                answer = await self.loop.run_in_executor(
                    self.executor, store.execute, pending.job, pending.timeout
                )
        except StoreError as err:
            return failure(err.status, err.message, accept)
        return finish(pending, answer)

    # --- everything else: the Flask app, on a thread ---
    async def answer_with_app(self, conn: Connection, request: Request) -> None:
        status, headers, body = await self.loop.run_in_executor(
            self.executor, self._call_app, request, conn.peer
        )
        keep_alive = request.keep_alive and not any(
            n.lower() == "connection" and v.lower() == "close" for n, v in headers
        )
        kept = [(n, v) for n, v in headers if n.lower() not in ("content-length", "connection")]
        if request.method == "HEAD":  # the app's length of the body it did not send
            kept += [(n, v) for n, v in headers if n.lower() == "content-length"]
        conn.write(status, _head(kept), body, keep_alive, send_body=request.method != "HEAD")

    def _call_app(self, request: Request, peer: tuple[str, int]) -> tuple[int, list, bytes]:
        environ = self._environ(request, peer)
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info and captured:
                raise exc_info[1].with_traceback(exc_info[2])
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        result = self.app(environ, start_response)
        try:
            chunks.extend(chunk for chunk in result if chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(captured["status"][:3]), list(captured["headers"]), b"".join(chunks)

    def _environ(self, request: Request, peer: tuple[str, int]) -> dict[str, Any]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(request.path).decode("latin-1"),
            "QUERY_STRING": request.query,
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": f"HTTP/{request.version}",
            "REMOTE_ADDR": peer[0],
            "REMOTE_PORT": str(peer[1]),
            "CONTENT_LENGTH": str(len(request.body)),  # chunked bodies arrive decoded
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(request.body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers.items():
            if "_" in name:
                # As waitress does: `X_Forwarded_For` must not pose as `X-Forwarded-For`.
                continue
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ[key] = value
            elif key not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                key = "HTTP_" + key
                environ[key] = value
        return environ

    def _log(
        self, request: Request, conn: Connection, status: int, nbytes: int, started: float,
        cache: str | None,
    ) -> None:  # fmt: skip
        if access_log.isEnabledFor(logging.INFO):
            log_request(request.method, request.path, status, nbytes, started, cache, conn.peer[0])

    # --- accepting, up to the connection limit ---
    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, so reading is not starved
            if self.open >= self.connection_limit:
                # As waitress does: stop accepting; the kernel's backlog holds the rest.
                self._listen(False)
                return
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # out of descriptors, a reset before accept: keep serving
                log.warning(json_event("accept-failed", str(err)))
                return
            sock.setblocking(False)
            self.open += 1
            self.loop.create_task(self._connect(sock))

    async def _connect(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: Connection(self), sock)
        except OSError:
            sock.close()
            self.connection_closed()

    def connection_closed(self) -> None:
        self.open -= 1
        if not self.accepting and self.open < self.connection_limit:
            self._listen(True)

    def _listen(self, on: bool) -> None:
        if on and not self.accepting and not self.loop.is_closed():
            self.loop.add_reader(self.socket.fileno(), self._accept)
        elif not on and self.accepting:
            self.loop.remove_reader(self.socket.fileno())
        self.accepting = on

    # --- lifecycle ---
    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in [c for c in self.connections if c.overdue(now)]:
            conn.closed = True
            self.connections.discard(conn)
            if conn.transport is not None:
                conn.transport.close()
        self.loop.call_later(SWEEP_EVERY, self._sweep)

    def run(self, handle_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (or `stop`); signals can only be taken on the main thread."""
        import signal

        asyncio.set_event_loop(self.loop)
        self.socket.setblocking(False)
        self._listen(True)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self.loop.stop)
        self.loop.call_later(SWEEP_EVERY, self._sweep)
        self.loop.run_forever()

    def stop(self) -> None:
        """From any thread: make `run` return."""
        self.loop.call_soon_threadsafe(self.loop.stop)

    def close(self) -> None:
        self._listen(False)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if not self.loop.is_closed():
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()
        self.socket.close()


def make_server(
    app: Flask,
    host: str,
    port: int,
    threads: int,
    header_timeout: float,
    channel_timeout: float,
    connection_limit: int,
) -> HttpServer:
    """The HTTP server for `app` on one TCP address, with the deadlines above."""
    return HttpServer(app, host, port, threads, header_timeout, channel_timeout, connection_limit)
