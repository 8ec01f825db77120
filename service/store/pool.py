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
A job past its deadline has its worker killed; a worker that dies is replaced (on a background
thread, so no caller waits for a fork); the caller gets an exception saying which limit tripped.

The wire, one socket pair per worker: a job goes down pickled (the server trusts itself); a
reply comes back as a 13-byte prefix (state, header length, payload length, the job's CPU
time), a JSON header and the answer bytes, sent raw. The server never unpickles anything a
worker sends, so a worker that a query managed to subvert still cannot make the server run
code, and the answer is copied once on its way (kernel to the bytes object we serve). A job
can be run from a thread (`run`, blocking) or from the server's event loop (`run_async`,
which waits for the worker's socket with `loop.add_reader`, so no thread sits between the
loop and the worker).

Heavy jobs take a lane (`run_async`). Each job's bytes are remembered with the CPU time its
worker last spent on it (a timed-out job with its whole timeout). A job that cost more than
`Limits.heavy_cpu_s` waits for one of `Limits.heavy_lanes` lanes (one per CPU by default)
before it takes a worker; any other job takes a worker at once. Measured at 1M triples with
16 clients and 16 workers: when every worker could run a heavy query at once, sixteen of them
shared two cores and the server got 0.57-0.68x Oxigraph's throughput; with the lanes, 1.34x,
and the small questions' p50 went from 16-20 ms to 5.0 ms, because they no longer queue
behind the heavy ones for the CPU. A job first seen counts as light: what a query costs is
learned from running it, not guessed from its text. The cost a worker reports steers only
this choice, so a subverted worker could at most get its own jobs scheduled as light.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import multiprocessing as mp
import os
import pickle
import queue
import resource
import select
import signal
import socket
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
DEFAULT_MEMORY = 1024 * 1024 * 1024  # bytes a worker may add to what it shares with the server
JOB_STACK = 256 * 1024 * 1024  # virtual; only the pages a deep query touches become resident
START_TIMEOUT = 30.0

# A job handler returns (header, payload): the header must be JSON (str, int, list, dict ...).
Handler = Callable[[Any], tuple[Any, bytes]]
# A worker's reply as read: state, JSON header, payload, CPU seconds its thread spent.
_Reply = tuple[int, Any, bytes, float]
COSTS_KEPT = 10_000  # jobs whose CPU cost is remembered (the least recently run go first)

# Length of the pickled job; 1 when other jobs were in flight as it was sent (see _schedule).
_JOB = struct.Struct("!IB")
_REPLY = struct.Struct("!BIII")  # state, header length, payload length, job CPU (us)
READY, OK, ERROR, MEMORY, REFUSED = range(5)
MAX_HEADER = 1024 * 1024  # a worker's JSON header; more means a broken (or subverted) worker
# The first read of a reply (most replies are whole in it; a longer one is then read straight
# into a buffer of its size). Under glibc's mmap threshold, so no read maps and unmaps memory.
READ_CHUNK = 64 * 1024
UNWATCH_TIMEOUT = 1.0  # seconds another thread waits for the loop to drop a worker's reader


class WorkerTimeout(Exception):
    """The job overran its deadline and its worker was killed."""


class PoolBusy(Exception):
    """No worker became free before the deadline."""


class WorkerCrashed(Exception):
    """The worker died while running a job."""


class WorkerOutOfMemory(WorkerCrashed):
    """The job needed more memory (or stack) than a worker may have."""


class WorkerError(Exception):
    """The job raised in the worker; its type and message, as the worker reported them."""


class SandboxUnavailable(RuntimeError):
    """A worker could not leave the network: the pool does not start without that."""


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = DEFAULT_MEMORY  # None: no cap (never in `cmpkg serve`)
    stack_bytes: int = JOB_STACK
    # A job whose last run took its worker more CPU than this is heavy (see the module doc).
    # 20 ms: above every small named question (at most a few ms), below the heavy ones at 100k.
    heavy_cpu_s: float = 0.02
    heavy_lanes: int = field(default_factory=_cpus)  # heavy jobs evaluated at once


@dataclass
class _Worker:
    process: Any
    sock: socket.socket  # our end, non-blocking
    # The event loop whose reader is on `sock`, and the reply it waits for (see _Watch).
    watched: asyncio.AbstractEventLoop | None = None
    waiting: tuple[asyncio.Future[_Reply], _Inbox] | None = None


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
    """Close every descriptor the fork copied except stdio and our socket: the server's
    listening socket (else a dead server's workers would hold its port), its event loop and
    the other workers' sockets (else a worker would never see its server's end close, and would
    outlive it)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    os.closerange(3, keep)
    os.closerange(keep + 1, limit if limit != resource.RLIM_INFINITY else 1 << 20)


# --- the worker's side --------------------------------------------------------------------------


def _reply(
    sock: socket.socket, state: int, header: Any = None, payload: bytes = b"", cpu_s: float = 0.0
) -> None:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    cpu_us = min(int(cpu_s * 1e6), 2**32 - 1)
    parts: list[memoryview] = [
        memoryview(_REPLY.pack(state, len(head), len(payload), cpu_us) + head),
        memoryview(payload),
    ]
    while parts:  # sendmsg may send less than everything
        sent = sock.sendmsg(parts)
        while parts and sent >= len(parts[0]):
            sent -= len(parts[0])
            parts.pop(0)
        if parts and sent:
            parts[0] = parts[0][sent:]


def _read_job(sock: socket.socket) -> tuple[Any, bool]:
    """The next job and whether others were in flight when it was sent; EOFError when the
    server's end is closed. One `recv` takes the whole of a usual job (the server sends the
    next one only after this one's reply, so nothing else can be in the buffer)."""
    data = sock.recv(READ_CHUNK)
    while 0 < len(data) < _JOB.size:
        data += sock.recv(READ_CHUNK)
    if len(data) < _JOB.size:
        raise EOFError
    size, crowded = _JOB.unpack_from(data)
    end = _JOB.size + size
    if len(data) < end:
        rest = sock.recv(end - len(data), socket.MSG_WAITALL)
        if len(data) + len(rest) < end:
            raise EOFError
        data += rest
    return pickle.loads(memoryview(data)[_JOB.size : end]), bool(crowded)


def _serve(sock: socket.socket, handler: Handler, limits: Limits) -> None:
    _close_inherited(sock.fileno())
    try:
        leave_network()
    except SandboxUnavailable as err:
        _reply(sock, REFUSED, str(err))
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is not ours to handle
    # A worker over its memory cap should die at once: with backtraces on, Rust spends seconds
    # symbolising one before it aborts. A write to this worker's own C environment, which Rust
    # reads at that moment (nothing here reads the environment).
    os.putenv("RUST_BACKTRACE", "0")
    threading.stack_size(limits.stack_bytes)
    runner = threading.Thread(target=_loop, args=(sock, handler, limits), name="job")
    runner.start()
    runner.join()


def _schedule(batch: bool) -> None:
    """This job thread as batch work for the Linux scheduler, or as an ordinary task.

    Every query passes through the server's one event loop twice (request in, answer out),
    while a worker only runs its own. When other queries are in flight, a worker woken by its
    job as an ordinary task preempted the loop in the middle of its send (a third of the
    loop's time under 16 clients went there), and the loop waited behind busy workers for
    each request: then SCHED_BATCH, which keeps the worker's share of the CPU but lets it wait
    for the next tick instead of preempting on wake-up. When the query is the only one in
    flight there is no loop work to protect, and on a machine busy with other work that wait
    for the tick was most of a small query's latency (2.3-2.9 ms per query at load average
    4-5, 10k named queries): then an ordinary task, woken at once as Oxigraph's threads are.
    The server says which with each job (`_JOB`); the thread's policy follows the last job.
    """
    policy = os.SCHED_BATCH if batch else os.SCHED_OTHER
    # Not Linux, or refused: ordinary scheduling still works.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, policy, os.sched_param(0))


def _loop(sock: socket.socket, handler: Handler, limits: Limits) -> None:
    if limits.memory_bytes is not None:
        cap = _mapped_bytes() + limits.memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    _reply(sock, READY)
    batch = False  # the policy the thread has (an ordinary task until told otherwise)
    while True:
        try:
            job, crowded = _read_job(sock)
        except (EOFError, OSError):
            return
        if crowded != batch:
            batch = crowded
            _schedule(batch)
        cpu = time.thread_time()
        try:
            header, payload = handler(job)
            head = json.dumps(header).encode()  # the server reads JSON, never a pickle
        except MemoryError:
            # The heap may be left fragmented; say why, then let the pool replace us.
            _reply(sock, MEMORY)
            return
        except Exception as err:  # a failed job must not take the worker down
            _reply(sock, ERROR, f"{type(err).__name__}: {err}")
            continue
        _reply(sock, OK, head, payload, time.thread_time() - cpu)


# --- the server's side --------------------------------------------------------------------------


class _Inbox:
    """Bytes from one worker until a whole reply is in: (state, header, payload, CPU s)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._view: memoryview | None = None  # the reply's buffer once its size is known
        self._filled = 0
        self._prefix: tuple[int, int, int, int] | None = None

    def feed(self, sock: socket.socket) -> _Reply | None:
        """Reads what the socket holds; the reply once complete. EOFError: the worker died."""
        while True:
            if self._view is None:
                chunk = sock.recv(READ_CHUNK)
                if not chunk:
                    raise EOFError
                self._data += chunk
                if len(self._data) < _REPLY.size:
                    continue
                _, hlen, plen, _ = self._prefix = _REPLY.unpack_from(self._data)
                if hlen > MAX_HEADER:
                    raise EOFError  # not a worker of ours speaking: treat it as dead
                total = _REPLY.size + hlen + plen
                buffer = bytearray(total)
                buffer[: len(self._data)] = self._data[:total]
                self._filled = min(len(self._data), total)
                self._view = memoryview(buffer)
            if self._filled >= len(self._view):
                return self._complete()
            got = sock.recv_into(self._view[self._filled :])
            if not got:
                raise EOFError
            self._filled += got

    def _complete(self) -> _Reply:
        assert self._view is not None and self._prefix is not None
        state, hlen, _, cpu_us = self._prefix
        start = _REPLY.size + hlen
        header = json.loads(bytes(self._view[_REPLY.size : start]))
        return state, header, bytes(self._view[start:]), cpu_us / 1e6


def _wait(sock: socket.socket, events: int, deadline: float) -> bool:
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))


def _send_some(sock: socket.socket, data: bytes) -> int:
    try:
        return sock.send(data)
    except BlockingIOError:
        return 0


def _send_blocking(sock: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            if not _wait(sock, select.POLLOUT, deadline):
                raise WorkerTimeout from None


def _receive_blocking(sock: socket.socket, deadline: float) -> _Reply:
    inbox = _Inbox()
    while True:
        if not _wait(sock, select.POLLIN, deadline):
            raise WorkerTimeout
        try:
            reply = inbox.feed(sock)
        except BlockingIOError:
            continue
        if reply is not None:
            return reply


async def _receive_async(worker: _Worker, deadline: float) -> _Reply:
    """The worker's reply, read by the loop as it arrives.

    The loop's reader stays on a worker's socket from its first event-loop job on, instead of
    being added and removed around every job: under uvloop that was five epoll_ctl calls, an
    ioctl and two Python-level transport lookups per query. A reply the loop is not waiting
    for (a thread's job: `run`) only makes the reader remove itself, reading nothing."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_Reply] = loop.create_future()
    worker.waiting = (done, _Inbox())
    if worker.watched is not loop:
        _unwatch(worker)  # a loop before this one (a test's asyncio.run): never two readers
        loop.add_reader(worker.sock.fileno(), _readable, worker, loop)
        worker.watched = loop

    def overdue() -> None:
        if not done.done():
            done.set_exception(WorkerTimeout())

    timer = loop.call_later(max(0.0, deadline - time.monotonic()), overdue)
    try:
        return await done
    finally:
        timer.cancel()
        worker.waiting = None


def _readable(worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
    waiting = worker.waiting
    if waiting is None or worker.watched is not loop:  # not this loop's reply to read
        loop.remove_reader(worker.sock.fileno())
        if worker.watched is loop:
            worker.watched = None
        return
    done, inbox = waiting
    if done.done():
        return
    try:
        reply = inbox.feed(worker.sock)
    except BlockingIOError:
        return
    except (EOFError, OSError):
        done.set_exception(EOFError())
        return
    if reply is not None:
        done.set_result(reply)


def _unwatch(worker: _Worker) -> None:
    """Take the loop's reader off the worker's socket, before the socket may be closed (a
    closed descriptor must not stay in the loop: its number is soon another socket's).
    On the loop itself at once; from another thread through the loop, waiting for it."""
    loop, worker.watched = worker.watched, None
    if loop is None or loop.is_closed():
        return
    fd = worker.sock.fileno()
    if fd < 0:
        return
    if asyncio._get_running_loop() is loop:
        loop.remove_reader(fd)
        return
    removed = threading.Event()

    def remove() -> None:
        loop.remove_reader(fd)
        removed.set()

    with contextlib.suppress(RuntimeError):  # closed meanwhile: its readers went with it
        loop.call_soon_threadsafe(remove)
        removed.wait(UNWATCH_TIMEOUT)  # a loop that no longer runs never answers


async def _enter(lane: asyncio.Semaphore, deadline: float) -> None:
    """Take one of the lanes by the deadline, or raise PoolBusy. Whatever ends the wait (the
    deadline, or the caller cancelled), a lane taken meanwhile is given back: none leaks."""
    taking = asyncio.ensure_future(lane.acquire())
    try:
        done, _ = await asyncio.wait({taking}, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        if not taking.done():
            taking.cancel()
    if taking in done:
        return
    with contextlib.suppress(asyncio.CancelledError):
        await taking
    if not taking.cancelled():
        lane.release()  # taken after all, as the wait ended
    raise PoolBusy("every lane for heavy queries stayed busy")


def _job_data(job: Any) -> bytes:
    return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)


def _job_message(data: bytes, crowded: bool) -> bytes:
    return _JOB.pack(len(data), crowded) + data


class WorkerPool:
    """`run(job, timeout)` evaluates `handler(job)` in a sandboxed worker: (header, payload);
    `run_async` does the same from an event loop."""

    def __init__(self, handler: Handler, size: int, limits: Limits | None = None) -> None:
        self._handler = handler
        self.limits = limits or Limits()
        self._ctx = mp.get_context("fork")
        # Last in, first out: the worker that just answered is taken again, with its caches
        # (CPU, allocator, page tables) warm; a first-in queue sent each query to the worker
        # idle longest, so with 16 workers every query ran on a cold one.
        self._idle: queue.Queue[_Worker] = queue.LifoQueue()
        # Event-loop callers waiting for a worker; a returned worker goes to them first.
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[_Worker]]] = deque()
        self._lock = threading.Lock()  # the idle queue and the waiters change together
        self._spawn_lock = threading.Lock()
        # Kills and forks happen here, off the caller's path (and one fork at a time).
        self._upkeep = ThreadPoolExecutor(1, thread_name_prefix="cmpkg-pool")
        self._closed = False
        self.size = max(1, size)
        self.replaced = 0  # workers killed at a deadline or crashed, for /readyz
        self.out_of_memory = 0
        self._costs: LRUCache[int, float] = LRUCache(COSTS_KEPT)  # job bytes' hash -> CPU s
        # One set of lanes per event loop (an asyncio semaphore belongs to the loop it is used on).
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        for _ in range(self.size):
            self._give(self._spawn())

    def _spawn(self) -> _Worker:
        # One fork at a time: forking while another thread forks can copy a held lock.
        with self._spawn_lock:
            parent, child = socket.socketpair()
            process = self._ctx.Process(
                target=_serve, args=(child, self._handler, self.limits), daemon=True
            )
            process.start()
            child.close()
        parent.setblocking(False)
        worker = _Worker(process, parent)
        try:
            state, message, *_ = _receive_blocking(parent, time.monotonic() + START_TIMEOUT)
        except WorkerTimeout:
            self._kill(worker)
            raise SandboxUnavailable("a query worker did not start") from None
        except (EOFError, OSError, ValueError):
            state, message = REFUSED, "a query worker died while starting"
        if state != READY:
            self._kill(worker)
            raise SandboxUnavailable(str(message))
        return worker

    @staticmethod
    def _kill(worker: _Worker) -> None:
        _unwatch(worker)
        worker.process.kill()
        worker.process.join()
        worker.sock.close()

    def _discard(self, worker: _Worker) -> Future[None]:
        """Count the worker as replaced now; kill it and fork its successor on the upkeep
        thread. A caller whose job failed waits for that (its client then finds the pool whole
        again, as before); the event loop itself never does."""
        self.replaced += 1
        return self._upkeep.submit(self._replace, worker)

    def _replace(self, worker: _Worker) -> None:
        self._kill(worker)
        if not self._closed:
            self._give(self._spawn())

    def _give(self, worker: _Worker) -> None:
        """A free worker: to the first event-loop caller still waiting, else to the queue."""
        with self._lock:
            while self._waiters:
                loop, future = self._waiters.popleft()
                if not future.done():
                    break
            else:
                self._idle.put(worker)
                return
        if asyncio._get_running_loop() is loop:
            loop.call_soon(self._deliver, future, worker)  # no wake-up write needed
        else:
            loop.call_soon_threadsafe(self._deliver, future, worker)

    def _deliver(self, future: asyncio.Future[_Worker], worker: _Worker) -> None:
        if future.done():  # its caller gave up meanwhile
            self._give(worker)
        else:
            future.set_result(worker)

    def _take(self, deadline: float) -> _Worker:
        while True:
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise PoolBusy("every query worker is busy") from None
            if worker.process.is_alive():
                return worker
            self._discard(worker)  # died while idle (killed from outside): not this job's fault

    async def _take_async(self, deadline: float) -> _Worker:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                try:
                    worker: _Worker | None = self._idle.get_nowait()
                except queue.Empty:
                    worker = None
                    future: asyncio.Future[_Worker] = loop.create_future()
                    self._waiters.append((loop, future))
            if worker is None:
                expired: list[bool] = []

                def expire(
                    future: asyncio.Future[_Worker] = future, expired: list[bool] = expired
                ) -> None:
                    expired.append(True)
                    future.cancel()

                timer = loop.call_later(max(0.0, deadline - time.monotonic()), expire)
                try:
                    worker = await future
                except asyncio.CancelledError:
                    if expired:
                        raise PoolBusy("every query worker is busy") from None
                    raise
                finally:
                    timer.cancel()
            if worker.process.is_alive():
                return worker
            self._discard(worker)

    def run(self, job: Any, timeout: float) -> tuple[Any, bytes]:
        deadline = time.monotonic() + timeout
        data = _job_data(job)
        for attempt in (1, 2):
            worker = self._take(deadline)
            message = _job_message(data, self._crowded())
            try:
                _send_blocking(worker.sock, message, deadline)
                reply = _receive_blocking(worker.sock, deadline)
            except WorkerTimeout:
                self._discard(worker).result()
                raise WorkerTimeout(f"query stopped after {timeout:g} s") from None
            except (EOFError, OSError):
                if self._died(worker, attempt):
                    continue
            if reply[0] == MEMORY:
                self._out_of_memory(worker).result()
                raise WorkerOutOfMemory(self._memory_message())
            return self._settle(worker, reply)
        raise WorkerCrashed("the query worker died twice")

    async def run_async(self, job: Any, timeout: float) -> tuple[Any, bytes]:
        """`run` for a caller on an event loop: the loop is never blocked on a worker. A job
        that was heavy when last run first waits for a lane (see the module doc)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        data = _job_data(job)
        key = hash(data)
        if self._costs.get(key, 0.0) <= self.limits.heavy_cpu_s:
            return await self._run_async(loop, data, key, timeout, deadline)
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = asyncio.Semaphore(max(1, self.limits.heavy_lanes))
        await _enter(lane, deadline)
        try:
            return await self._run_async(loop, data, key, timeout, deadline)
        finally:
            lane.release()

    async def _run_async(
        self, loop: asyncio.AbstractEventLoop, data: bytes, key: int, timeout: float,
        deadline: float,
    ) -> tuple[Any, bytes]:  # fmt: skip
        for attempt in (1, 2):
            worker = await self._take_async(deadline)
            message = _job_message(data, self._crowded())
            try:
                sent = _send_some(worker.sock, message)
                if sent < len(message):  # a big job: the rest as the socket drains
                    await loop.sock_sendall(worker.sock, memoryview(message)[sent:])
                reply = await _receive_async(worker, deadline)
            except WorkerTimeout:
                self._costs[key] = timeout  # at least that: heavy from now on
                _unwatch(worker)  # here, on the loop, rather than waited for by the upkeep
                await asyncio.wrap_future(self._discard(worker))
                raise WorkerTimeout(f"query stopped after {timeout:g} s") from None
            except (EOFError, OSError):
                _unwatch(worker)
                # Finding out how it died waits for the process: not on the loop.
                if await loop.run_in_executor(None, self._died, worker, attempt):
                    continue
            if reply[0] == MEMORY:
                _unwatch(worker)
                await asyncio.wrap_future(self._out_of_memory(worker))
                raise WorkerOutOfMemory(self._memory_message())
            self._costs[key] = reply[3]
            return self._settle(worker, reply)
        raise WorkerCrashed("the query worker died twice")

    def _crowded(self) -> bool:
        """Whether another job is in flight besides the one just given a worker (a worker
        being replaced counts too): its worker should then not preempt the loop (_schedule)."""
        return self.size - self._idle.qsize() > 1

    def _died(self, worker: _Worker, attempt: int) -> bool:
        """The worker's end closed mid-job: True to retry once, else the error to raise."""
        worker.process.join(timeout=1.0)
        code = worker.process.exitcode
        self._discard(worker).result()
        if code == -signal.SIGKILL and attempt == 1:
            return True  # killed from outside (an operator, the OOM killer): retry once
        if code in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS):
            self.out_of_memory += 1
            raise WorkerOutOfMemory(self._memory_message())
        raise WorkerCrashed(f"the query worker died (exit {code})")

    def _out_of_memory(self, worker: _Worker) -> Future[None]:
        """The worker said it ran out of memory; it exits by itself, the kill only makes sure."""
        self.out_of_memory += 1
        return self._discard(worker)

    def _settle(self, worker: _Worker, reply: _Reply) -> tuple[Any, bytes]:
        state, header, payload, _ = reply
        self._give(worker)
        if state == ERROR:
            raise WorkerError(str(header))
        if state != OK:
            raise WorkerCrashed(f"the query worker sent an unknown reply ({state})")
        return header, payload

    def _memory_message(self) -> str:
        limit = self.limits.memory_bytes
        size = f"{limit // (1024 * 1024)} MB" if limit else "its"
        return (
            f"query stopped: it needed more than the {size} memory limit of a query worker "
            "(or more stack than nesting allows); the worker was replaced"
        )

    def close(self) -> None:
        self._closed = True
        self._upkeep.shutdown(wait=True)
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            self._kill(worker)
