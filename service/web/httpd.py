"""The HTTP server: waitress, with a deadline for a request's header and strict line endings.

Why waitress, and what is added to it. waitress reads every connection on one asyncore loop
and hands complete requests to its thread pool, so an idle or slow client costs a socket, not
a thread (a thread-per-connection server such as gunicorn's sync worker is stopped by as many
slow clients as it has workers). Two gaps remain, and both are closed here:

- Slowloris. `channel_timeout` is an *inactivity* timeout: a client that sends one header line
  every few seconds never trips it and holds its connection for ever, and past
  `connection_limit` (100 by default) waitress stops accepting. So every connection gets a
  deadline to *complete* its request header (`header_timeout`, counted from the first byte of
  the request); the server's periodic maintenance closes those that miss it, and the
  connection limit is raised so a burst of slow clients cannot fill it before they are cut.
- Bare LF. waitress (rightly, since 2.1) only ends a header at CRLF CRLF, so a request written
  with bare LF line endings waits for an end that never comes. Such a request now gets an
  immediate 400 saying why.
"""

from __future__ import annotations

import re
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import BadRequest

_BARE_LF = re.compile(rb"(?<!\r)\n")


class StrictRequestParser(HTTPRequestParser):
    """A bare LF inside the request header is a 400, not a wait for CRLF CRLF."""

    def received(self, data: bytes) -> int:
        if self.body_rcv is None and not getattr(self, "completed", False):
            head = self.header_plus + data
            end = head.find(b"\r\n\r\n")
            if _BARE_LF.search(head if end < 0 else head[:end]):
                self.parse_header(b"GET / HTTP/1.0\r\n")
                self.error = BadRequest(
                    "header lines must end with CRLF (bare LF line endings are not accepted)"
                )
                self.completed = True
                return len(data)
        return super().received(data)


class DeadlineChannel(HTTPChannel):
    """Remembers when the request whose header is still arriving started."""

    parser_class = StrictRequestParser
    header_started: float | None = None

    def received(self, data: bytes) -> bool:
        if data and self.request is None and self.header_started is None:
            self.header_started = time.time()
        result = super().received(data)
        if self.request is None or self.request.headers_finished:
            # Complete, or only a body still to come: the header deadline no longer applies.
            self.header_started = None
        return result


class DeadlineServer(TcpWSGIServer):
    channel_class = DeadlineChannel
    header_timeout = 10.0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        cutoff = now - self.header_timeout
        for channel in list(self.active_channels.values()):
            started = getattr(channel, "header_started", None)
            if started is not None and started < cutoff and not channel.requests:
                channel.will_close = True


def make_server(
    app: Any,
    host: str,
    port: int,
    threads: int,
    header_timeout: float,
    channel_timeout: float,
    connection_limit: int,
) -> DeadlineServer:
    """A waitress server for `app` on one TCP address, with the deadlines above."""
    adj = Adjustments(
        host=host,
        port=port,
        threads=threads,
        ident="cmpkg",
        channel_timeout=int(max(1, channel_timeout)),
        connection_limit=connection_limit,
        # Maintenance is what enforces both timeouts: run it every second, not every 30 s.
        cleanup_interval=1,
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    server = DeadlineServer(app, map={}, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])
    server.header_timeout = header_timeout
    return server
