"""The worker pool driven from an event loop (`run_async`), as the HTTP front drives it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator

import pytest
from conftest import one_triple_store

from service.store.backends import Call, Dataset, EmbeddedStore, QueryJob, StoreError
from service.store.pool import Limits, PoolBusy, WorkerPool, WorkerTimeout


def interval(seconds: float) -> tuple[list[float], bytes]:
    """In the worker: when it started and ended this job, and which process ran it."""
    started = time.time()
    time.sleep(seconds)
    return [started, time.time()], str(os.getpid()).encode()


def _handle(job: Call) -> tuple[object, bytes]:
    return job.function(*job.args)


@pytest.fixture(scope="module")
def store() -> Iterator[EmbeddedStore]:
    with one_triple_store("async", workers=2, memory_mb=256) as embedded:
        yield embedded


def test_independent_jobs_run_in_both_workers_at_once():
    pool = WorkerPool(_handle, 2)
    try:

        async def both() -> list[tuple[object, bytes]]:
            jobs = [pool.run_async(Call(interval, (0.5,)), 10) for _ in range(2)]
            return list(await asyncio.gather(*jobs))

        (first, pid1), (second, pid2) = asyncio.run(both())
        assert pid1 != pid2  # two processes ...
        assert first[0] < second[1] and second[0] < first[1]  # ... whose jobs overlapped
    finally:
        pool.close()


def test_a_third_job_waits_for_a_free_worker_and_busy_is_reported_at_the_deadline():
    pool = WorkerPool(_handle, 1)
    try:

        async def queued() -> list[object]:
            long = pool.run_async(Call(interval, (0.6,)), 10)
            short = pool.run_async(Call(interval, (0.0,)), 0.2)  # cannot get the worker in time
            after = pool.run_async(Call(interval, (0.0,)), 10)  # waits, then runs
            return list(await asyncio.gather(long, short, after, return_exceptions=True))

        long, short, after = asyncio.run(queued())
        assert isinstance(short, PoolBusy)
        assert isinstance(long, tuple) and isinstance(after, tuple)
        assert after[0][0] >= long[0][1]  # it ran once the long job had finished
    finally:
        pool.close()


def test_async_query_answers_like_the_blocking_path(store: EmbeddedStore):
    job = QueryJob("SELECT * { ?s ?p ?o }", None, Dataset(), "text/csv", 10)
    blocking = store.execute(job, 10)
    answered = asyncio.run(store.execute_async(job, 10))
    assert answered == blocking and b"urn:a" in answered.body


def test_async_timeout_stops_the_job_and_replaces_its_worker(store: EmbeddedStore):
    before = store.workers_replaced
    runaway = QueryJob(
        "SELECT (COUNT(*) AS ?n) { VALUES ?a { 1 2 3 4 5 6 7 8 9 10 } "
        + " ".join(f"VALUES ?x{i} {{ {' '.join(str(k) for k in range(40))} }}" for i in range(8))
        + " }",
        None,
        Dataset(),
        "text/csv",
        10,
    )
    with pytest.raises(StoreError) as err:
        asyncio.run(store.execute_async(runaway, 0.5))
    assert err.value.status == 503 and "0.5 s limit" in err.value.message
    assert store.workers_replaced == before + 1
    job = QueryJob("ASK { ?s ?p ?o }", None, Dataset(), "text/csv", 10)
    assert asyncio.run(store.execute_async(job, 10)).body.strip().endswith(b"true")


def test_a_worker_never_sends_a_pickle_back():
    # The reply header is JSON: an object that only pickle could carry is an error in the
    # worker, reported as such, and the worker stays usable.
    pool = WorkerPool(_handle, 1)
    try:
        with pytest.raises(Exception, match="not JSON serializable"):
            pool.run(Call(_unpicklable_header, ()), 10)
        assert pool.run(Call(interval, (0.0,)), 10)[1].isdigit()
    finally:
        pool.close()


def _unpicklable_header() -> tuple[object, bytes]:
    return {1, 2}, b""


def pid() -> tuple[int, bytes]:
    return os.getpid(), b""


def policy_after(seconds: float) -> tuple[list[int], bytes]:
    """In the worker: its scheduling policy and process, after `seconds` of work."""
    time.sleep(seconds)
    return [os.sched_getscheduler(0), os.getpid()], b""


def test_a_job_runs_as_batch_work_only_while_others_are_in_flight():
    # Before: every job ran as SCHED_BATCH. Now a job alone in flight runs as an ordinary
    # task (woken at once, as Oxigraph's threads are), and one sent while another runs waits
    # for the tick instead of preempting the event loop (service.store.pool._schedule).
    pool = WorkerPool(_handle, 2)
    try:

        async def pair() -> list[tuple[list[int], bytes]]:
            alone = pool.run_async(Call(policy_after, (0.0,)), 10)  # sent with none in flight
            crowded = pool.run_async(Call(policy_after, (0.3,)), 10)  # sent while one is
            return list(await asyncio.gather(alone, crowded))

        (first, _), (second, _) = asyncio.run(pair())
        assert first[0] == os.SCHED_OTHER and second[0] == os.SCHED_BATCH
        # The crowded job's worker answered last, so it takes the next job (last in, first
        # out); alone again, that job runs as an ordinary task.
        again = pool.run(Call(policy_after, (0.0,)), 10)[0]
        assert again == [os.SCHED_OTHER, second[1]]
        assert os.sched_getscheduler(0) != os.SCHED_BATCH  # the server itself is untouched
    finally:
        pool.close()


def test_the_worker_that_just_answered_takes_the_next_job():
    # Last in, first out: one client's queries keep landing on one warm worker.
    pool = WorkerPool(_handle, 3)
    try:
        first = pool.run(Call(pid), 10)[0]
        assert all(asyncio.run(pool.run_async(Call(pid), 10))[0] == first for _ in range(3))
        assert all(pool.run(Call(pid), 10)[0] == first for _ in range(3))
    finally:
        pool.close()


def echo(value: int) -> tuple[int, bytes]:
    return value, b""


def test_a_worker_used_from_the_loop_and_from_a_thread_gives_each_its_own_reply():
    # The loop's reader stays on a worker's socket between its jobs; a reply to a thread's
    # job (`run`) must still reach that thread, and the loop's next job its own reply.
    pool = WorkerPool(_handle, 1)
    try:

        async def alternate() -> list[int]:
            loop = asyncio.get_running_loop()
            seen = []
            for k in range(3):
                seen.append((await pool.run_async(Call(echo, (2 * k,)), 10))[0])
                blocking = await loop.run_in_executor(None, pool.run, Call(echo, (2 * k + 1,)), 5)
                seen.append(blocking[0])
            return seen

        assert asyncio.run(alternate()) == [0, 1, 2, 3, 4, 5]
    finally:
        pool.close()


def test_a_worker_killed_while_idle_under_the_loops_reader_is_replaced():
    pool = WorkerPool(_handle, 1)
    try:

        async def around_a_kill() -> list[int]:
            first, _ = await pool.run_async(Call(pid), 10)
            os.kill(first, 9)
            time.sleep(0.2)  # dead before the next job is sent
            answers = [(await pool.run_async(Call(pid), 10))[0] for _ in range(3)]
            return [first, *answers]

        first, *after = asyncio.run(around_a_kill())
        assert len(set(after)) == 1 and after[0] != first  # one new worker answers them all
        assert pool.replaced == 1
    finally:
        pool.close()


def test_a_query_job_crosses_to_the_worker_with_every_field():
    # A QueryJob travels as a tuple of its fields (service.store.backends._to_wire): every
    # field, none at its default, must come back as it was.
    import pyoxigraph as ox

    from service.store.backends import _from_wire, _to_wire

    job = QueryJob(
        "SELECT * { ?s ?p ?o }", "SELECT", Dataset(("urn:g1",), ()), "text/csv", 7,
        {"s": ox.NamedNode("urn:s")}, "http://example.org/sparql", "text/turtle",
        ("no solutions here", "no graphs here"),
    )  # fmt: skip
    assert _from_wire(_to_wire(job)) == job
    assert {f.name for f in dataclasses.fields(QueryJob)} == {
        "query", "form", "dataset", "media_type", "row_cap", "substitutions", "base_iri",
        "graph_media_type", "refusals",
    }  # a new field must be added to the wire too  # fmt: skip


def busy_interval(seconds: float) -> tuple[list[float], bytes]:
    """In the worker: spend `seconds` of CPU (not sleep: the pool learns CPU time)."""
    started = time.time()
    spent = time.thread_time()
    while time.thread_time() - spent < seconds:
        pass
    return [started, time.time()], b""


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_heavy_jobs_wait_for_a_lane_once_their_cost_is_known():
    pool = WorkerPool(_handle, 3, Limits(memory_bytes=None, heavy_cpu_s=0.05, heavy_lanes=1))
    heavy = Call(busy_interval, (0.3,))
    try:

        async def twice() -> list[tuple[object, bytes]]:
            return list(await asyncio.gather(*(pool.run_async(heavy, 20) for _ in range(2))))

        # Never seen: light, so both take a worker at once and run side by side.
        (first, _), (second, _) = asyncio.run(twice())
        assert _overlap(first, second)  # type: ignore[arg-type]
        # Now known to cost 0.3 s of CPU: one lane, so one after the other.
        (first, _), (second, _) = asyncio.run(twice())
        assert not _overlap(first, second)  # type: ignore[arg-type]
    finally:
        pool.close()


def test_light_jobs_do_not_wait_behind_a_heavy_one_in_its_lane():
    pool = WorkerPool(_handle, 3, Limits(memory_bytes=None, heavy_cpu_s=0.05, heavy_lanes=1))
    heavy, light = Call(busy_interval, (0.3,)), Call(interval, (0.2,))
    try:
        asyncio.run(pool.run_async(heavy, 20))  # learnt: heavy
        asyncio.run(pool.run_async(light, 20))  # learnt: light (sleeping costs no CPU)

        async def mixed() -> list[tuple[object, bytes]]:
            jobs = [pool.run_async(heavy, 20), pool.run_async(heavy, 20), pool.run_async(light, 20)]
            return list(await asyncio.gather(*jobs))

        (one, _), (two, _), (quick, _) = asyncio.run(mixed())
        assert not _overlap(one, two)  # type: ignore[arg-type]
        assert _overlap(quick, one)  # type: ignore[arg-type]  # beside the first heavy one
    finally:
        pool.close()


def test_a_timed_out_job_is_heavy_next_time_and_waits_for_its_lane_within_its_deadline():
    pool = WorkerPool(_handle, 3, Limits(memory_bytes=None, heavy_cpu_s=0.05, heavy_lanes=1))
    runaway = Call(busy_interval, (30.0,))
    try:
        with pytest.raises(WorkerTimeout):
            asyncio.run(pool.run_async(runaway, 0.3))

        async def two_runaways() -> list[object]:
            jobs = [pool.run_async(runaway, 0.8), pool.run_async(runaway, 0.3)]
            return list(await asyncio.gather(*jobs, return_exceptions=True))

        first, second = asyncio.run(two_runaways())
        # The first has the lane and is stopped at its deadline; the second's deadline passes
        # while it waits for the lane, though two workers are idle.
        assert isinstance(first, WorkerTimeout) and isinstance(second, PoolBusy)
        assert pool.run(Call(interval, (0.0,)), 10)[1]  # the pool still answers
    finally:
        pool.close()
