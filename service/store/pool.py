"""A pool of sandboxed worker processes whose work can really be stopped.

A pyoxigraph query running inside Rust cannot be interrupted from Python, so every untrusted
query (and every prescription) runs in a worker process forked after the store is loaded (the
data is shared copy-on-write). Each worker, before it takes its first job:
- leaves the network: `unshare(CLONE_NEWNET)` puts it in a network namespace of its own with
  no interface up, so no socket it opens reaches any address, loopback included. A namespace
  rather than a seccomp filter because it covers every way to the network at once (connect,
  sendto, io_uring, a library's own resolver) on any architecture, with one system call and
  no syscall table to keep; unprivileged it falls back to a user + network namespace. When
  neither is possible the worker refuses to start: the pool fails closed.
- caps its memory: RLIMIT_AS at what it has mapped after the fork plus `memory_bytes`, so a
  runaway allocation fails inside the worker (Rust aborts, Python raises MemoryError).
- runs its jobs on a thread with a large stack, because Oxigraph's parser and evaluator
  recurse; `service.store.query_check` bounds bracket nesting far below what this stack holds.
A job past its deadline has its worker killed; a worker that dies is replaced; the caller gets
an exception saying which limit tripped. Results come back as one pickled header plus the
answer bytes, sent raw, so the answer is copied once (kernel to the bytes object we serve).
"""

from __future__ import annotations

import ctypes
import errno
import multiprocessing as mp
import os
import queue
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
DEFAULT_MEMORY = 1024 * 1024 * 1024  # bytes a worker may add to what it shares with the server
JOB_STACK = 256 * 1024 * 1024  # virtual; only the pages a deep query touches become resident
START_TIMEOUT = 30.0

# A job handler returns (header, payload): the header is pickled, the payload sent raw.
Handler = Callable[[Any], tuple[Any, bytes]]


class WorkerTimeout(Exception):
    """The job overran its deadline and its worker was killed."""


class PoolBusy(Exception):
    """No worker became free before the deadline."""


class WorkerCrashed(Exception):
    """The worker died while running a job."""


class WorkerOutOfMemory(WorkerCrashed):
    """The job needed more memory (or stack) than a worker may have."""


class SandboxUnavailable(RuntimeError):
    """A worker could not leave the network: the pool does not start without that."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = DEFAULT_MEMORY  # None: no cap (never in `cmpkg serve`)
    stack_bytes: int = JOB_STACK


@dataclass
class _Worker:
    process: Any
    conn: Connection


def leave_network() -> None:
    """Put this process in a network namespace with no interfaces up (see module doc)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        return
    first = ctypes.get_errno()
    if first == errno.EPERM and libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return
    raise SandboxUnavailable(
        f"cannot isolate the query worker from the network: unshare failed "
        f"({os.strerror(first)}); run as root or enable unprivileged user namespaces"
    )


def _mapped_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _close_inherited(keep: int) -> None:
    """Close every descriptor the fork copied except stdio and our pipe: the server's listening
    socket (else a dead server's workers would hold its port) and the other workers' pipes
    (else a worker would never see its server's end close, and would outlive it)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    os.closerange(3, keep)
    os.closerange(keep + 1, limit if limit != resource.RLIM_INFINITY else 1 << 20)


def _serve(conn: Connection, handler: Handler, limits: Limits) -> None:
    _close_inherited(conn.fileno())
    try:
        leave_network()
    except SandboxUnavailable as err:
        conn.send(("refused", str(err)))
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is not ours to handle
    # A worker over its memory cap should die at once: with backtraces on, Rust spends seconds
    # symbolising one before it aborts. A write to this worker's own C environment, which Rust
    # reads at that moment (nothing here reads the environment).
    os.putenv("RUST_BACKTRACE", "0")
    threading.stack_size(limits.stack_bytes)
    runner = threading.Thread(target=_loop, args=(conn, handler, limits), name="job")
    runner.start()
    runner.join()


def _loop(conn: Connection, handler: Handler, limits: Limits) -> None:
    if limits.memory_bytes is not None:
        cap = _mapped_bytes() + limits.memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            header, payload = handler(job)
        except MemoryError:
            # The heap may be left fragmented; say why, then let the pool replace us.
            conn.send(("memory", None))
            return
        except Exception as err:  # a failed job must not take the worker down
            conn.send(("error", err))
            continue
        conn.send(("ok", header))
        conn.send_bytes(payload)


class WorkerPool:
    """`run(job, timeout)` evaluates `handler(job)` in a sandboxed worker: (header, payload)."""

    def __init__(self, handler: Handler, size: int, limits: Limits | None = None) -> None:
        self._handler = handler
        self.limits = limits or Limits()
        self._ctx = mp.get_context("fork")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._spawn_lock = threading.Lock()
        self._closed = False
        self.size = max(1, size)
        self.replaced = 0  # workers killed at a deadline or crashed, for /readyz
        self.out_of_memory = 0
        for _ in range(self.size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        # One fork at a time: forking while another thread forks can copy a held lock.
        with self._spawn_lock:
            parent, child = self._ctx.Pipe()
            process = self._ctx.Process(
                target=_serve, args=(child, self._handler, self.limits), daemon=True
            )
            process.start()
            child.close()
        worker = _Worker(process, parent)
        if not parent.poll(START_TIMEOUT):
            self._kill(worker)
            raise SandboxUnavailable("a query worker did not start")
        try:
            state, message = parent.recv()
        except (EOFError, OSError):
            state, message = "refused", "a query worker died while starting"
        if state != "ready":
            self._kill(worker)
            raise SandboxUnavailable(message)
        return worker

    @staticmethod
    def _kill(worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join()
        worker.conn.close()

    def _discard(self, worker: _Worker) -> None:
        self._kill(worker)
        self.replaced += 1
        if not self._closed:
            self._idle.put(self._spawn())

    def _take(self, deadline: float) -> _Worker:
        while True:
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise PoolBusy("every query worker is busy") from None
            if worker.process.is_alive():
                return worker
            self._discard(worker)  # died while idle (killed from outside): not this job's fault

    def run(self, job: Any, timeout: float) -> tuple[Any, bytes]:
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            worker = self._take(deadline)
            try:
                worker.conn.send(job)
                if not worker.conn.poll(max(0.0, deadline - time.monotonic())):
                    self._discard(worker)
                    raise WorkerTimeout(f"query stopped after {timeout:g} s")
                state, header = worker.conn.recv()
                payload = worker.conn.recv_bytes() if state == "ok" else b""
            except (EOFError, OSError):
                worker.process.join(timeout=1.0)
                code = worker.process.exitcode
                self._discard(worker)
                if code == -signal.SIGKILL and attempt == 1:
                    continue  # killed from outside (an operator, the OOM killer): retry once
                if code in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS):
                    self.out_of_memory += 1
                    raise WorkerOutOfMemory(self._memory_message()) from None
                raise WorkerCrashed(f"the query worker died (exit {code})") from None
            if state == "memory":
                worker.process.join(timeout=1.0)
                self._discard(worker)
                self.out_of_memory += 1
                raise WorkerOutOfMemory(self._memory_message())
            self._idle.put(worker)
            if state == "error":
                raise header
            return header, payload
        raise WorkerCrashed("the query worker died twice")

    def _memory_message(self) -> str:
        limit = self.limits.memory_bytes
        size = f"{limit // (1024 * 1024)} MB" if limit else "its"
        return (
            f"query stopped: it needed more than the {size} memory limit of a query worker "
            "(or more stack than nesting allows); the worker was replaced"
        )

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            self._kill(worker)
