"""A pool of forked worker processes whose work can really be stopped.

A pyoxigraph query running inside Rust cannot be interrupted from Python, so each query runs in
a worker process forked after the store is loaded (the data is shared copy-on-write). When a
query overruns its deadline the worker is killed and replaced; the other workers keep serving.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


class WorkerTimeout(Exception):
    """The job overran its deadline and its worker was killed."""


class PoolBusy(Exception):
    """No worker became free before the deadline."""


class WorkerCrashed(Exception):
    """The worker died while running a job (e.g. out of memory)."""


@dataclass
class _Worker:
    process: Any
    conn: Connection


def _serve(conn: Connection, handler: Callable[[Any], Any]) -> None:
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send((True, handler(job)))
        except Exception as err:  # a failed job must not take the worker down
            conn.send((False, err))


class WorkerPool:
    """`run(job, timeout)` evaluates `handler(job)` in a worker and returns its result."""

    def __init__(self, handler: Callable[[Any], Any], size: int) -> None:
        self._handler = handler
        self._ctx = mp.get_context("fork")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._spawn_lock = threading.Lock()
        self._closed = False
        self.size = max(1, size)
        self.replaced = 0  # workers killed at a deadline or crashed, for /readyz
        for _ in range(self.size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        # One fork at a time: forking while another thread forks can copy a held lock.
        with self._spawn_lock:
            parent, child = self._ctx.Pipe()
            process = self._ctx.Process(target=_serve, args=(child, self._handler), daemon=True)
            process.start()
            child.close()
            return _Worker(process, parent)

    def _discard(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join()
        worker.conn.close()
        self.replaced += 1
        if not self._closed:
            self._idle.put(self._spawn())

    def run(self, job: Any, timeout: float) -> Any:
        try:
            worker = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise PoolBusy("every query worker is busy") from None
        try:
            worker.conn.send(job)
            if not worker.conn.poll(timeout):
                self._discard(worker)
                raise WorkerTimeout(f"query stopped after {timeout:g} s")
            ok, value = worker.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._discard(worker)
            raise WorkerCrashed("the query worker died") from None
        self._idle.put(worker)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            worker.process.kill()
            worker.process.join()
            worker.conn.close()
