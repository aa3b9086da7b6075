"""The native scheduler core: task state, retries with backoff, chunk leases, counters."""

from __future__ import annotations

import pytest

from batchops._scheduler import ChunkRun, RetryPolicy, Scheduler


def test_take_hands_out_each_task_once() -> None:
    run = ChunkRun(4, RetryPolicy())
    assert [run.take() for _ in range(5)] == [0, 1, 2, 3, -1]


def test_retryable_failure_is_retried_until_max_attempts() -> None:
    run = ChunkRun(1, RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0, seed=7))
    i = run.take()
    d1, d2 = run.fail(i, True), run.fail(i, True)
    assert 0 <= d1 <= 0.1 and 0 <= d2 <= 0.2
    assert run.fail(i, True) == -1.0  # third attempt failed: given up
    assert (run.failed, run.succeeded, run.retries, run.finished) == (1, 0, 2, True)


def test_permanent_failure_is_never_retried() -> None:
    run = ChunkRun(1, RetryPolicy(max_attempts=5))
    i = run.take()
    assert run.fail(i, False) == -1.0
    assert run.attempts(i) == 1 and run.failed == 1


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.5, seed=3)
    samples = {n: max(policy.delay(n) for _ in range(2000)) for n in (1, 3, 10)}
    assert samples[1] <= 0.01 < samples[3] <= 0.04
    assert 0.4 < samples[10] <= 0.5
    assert min(policy.delay(4) for _ in range(2000)) < 0.01  # full jitter reaches 0


def test_state_only_moves_forward() -> None:
    run = ChunkRun(2, RetryPolicy())
    with pytest.raises(ValueError):
        run.succeed(0)  # not started
    i = run.take()
    run.succeed(i)
    with pytest.raises(ValueError):
        run.succeed(i)


def test_succeed_all_completes_the_rest() -> None:
    run = ChunkRun(5, RetryPolicy())
    run.take()
    run.succeed_all()
    assert run.succeeded == 4 and not run.finished
    run.succeed(0)
    assert run.finished


def test_scheduler_skips_done_and_requeues_released_chunks() -> None:
    s = Scheduler(5, 50)
    s.mark_done(1, 10, 0)
    leased = []
    for worker in ("a", "b"):
        for _ in range(2):
            c = s.next_chunk()
            s.lease(c, worker)
            leased.append(c)
    assert leased == [0, 2, 3, 4]
    assert s.next_chunk() == -1
    s.complete(0, 9, 1)
    assert s.release("b") == [3, 4]
    assert [s.next_chunk(), s.next_chunk(), s.next_chunk()] == [3, 4, -1]
    assert s.counters() == (19, 1) and s.chunks_done == 2 and not s.finished


def test_counters_include_running_chunks_and_threshold() -> None:
    s = Scheduler(3, 3000, failure_min_tasks=1000, failure_ratio=0.5)
    for _c in range(3):
        s.lease(s.next_chunk(), "w")
    s.progress(0, 400, 500)
    assert s.counters() == (400, 500) and not s.threshold_exceeded()  # < 1000 ran
    s.progress(1, 0, 200)
    assert s.threshold_exceeded()  # 1100 ran, 700 failed
    s.complete(0, 1000, 0)
    s.complete(1, 500, 500)
    assert s.counters() == (1500, 500) and not s.threshold_exceeded()


@pytest.mark.parametrize("index", [-1, 3, 10**12])
def test_chunk_indices_from_outside_are_checked(index: int) -> None:
    """A marker on disk naming chunk 10**12 must not write out of bounds (the core is
    built without bounds checks)."""
    sched = Scheduler(3, 30)
    for call in (lambda: sched.mark_done(index, 1, 0), lambda: sched.is_done(index),
                 lambda: sched.lease(index, 0)):
        with pytest.raises(IndexError, match="out of range"):
            call()
    assert sched.chunks_done == 0


@pytest.mark.parametrize("index", [-1, 2, 10**12])
def test_task_indices_are_checked(index: int) -> None:
    run = ChunkRun(2, RetryPolicy())
    run.take()
    for call in (lambda: run.succeed(index), lambda: run.fail(index, True),
                 lambda: run.state(index), lambda: run.attempts(index)):
        with pytest.raises(IndexError, match="out of range"):
            call()
    assert run.done == 0
