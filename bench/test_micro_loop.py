"""Micro benchmark of the per-task loop's own cost (execute/loop.py), before and after
it was written once with two drivers.

Run: `pytest bench/test_micro_loop.py --benchmark-enable`. Both sides run 10,000 tasks of
one chunk through the same native ChunkRun, the same classify() and an operation whose
call does nothing, so what is timed is the loop itself, per task:
- `test_task_loop_sync_driver`: today's loop (`TaskLoop.run_sync`: the generator
  `steps()` driven by the sync driver);
- `test_task_loop_before_baseline`: the sync loop as it was before (the while-loop of
  `tasks.TaskRunner._sync_tasks`, commit 4758368), reproduced here as the baseline.
The ratio of the two is the price (or gain) of writing the loop once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from batchops._scheduler import Aimd, ChunkRun, RetryPolicy
from batchops.execute.loop import ChunkState, TaskLoop
from batchops.model.chunk import Chunk
from batchops.model.spec import WorkerConfig
from batchops.operations.base import Operation
from batchops.storage.outcomes import Outcome, classify

N = 10_000


class Nothing(Operation):
    amazon_name = "BatchopsBenchNothing"
    alias = "bench-nothing"

    def __init__(self) -> None:
        super().__init__({}, None)  # type: ignore[arg-type]

    def sync_capable(self, chunk: Chunk) -> bool:
        return True

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        return None


def _chunk() -> Chunk:
    keys = [f"k{i}" for i in range(N)]
    return Chunk(0, 0, ["b"] * N, keys, [None] * N, keys)


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> TaskLoop:  # type: ignore[no-untyped-def]
    cfg = WorkerConfig(job_id="j", home=str(tmp_path_factory.mktemp("home")), operation="noop",
                       params={}, bucket_map=(), concurrency=1, max_attempts=5,
                       report_scope="AllTasks")
    task_loop = TaskLoop(cfg)
    task_loop.op = Nothing()
    return task_loop


def _before(policy: RetryPolicy, aimd: Aimd, op: Operation, chunk: Chunk) -> int:
    """The sync loop as it was (tasks.TaskRunner._sync_tasks), with no rate limit."""
    failures: dict[int, Outcome] = {}
    messages: dict[int, str] = {}
    run, run_task = ChunkRun(len(chunk), policy), op.run_sync
    limiter: Any = None
    clock = time.monotonic
    while (i := run.take()) >= 0:
        while True:
            if limiter is not None:
                wait = limiter.reserve(1.0, clock())
                if wait > 0:
                    time.sleep(wait)
            try:
                message = run_task(chunk, i)
            except Exception as exc:  # noqa: BLE001
                outcome = classify(exc)
                if outcome.throttled:
                    aimd.on_throttle(clock())
                delay = run.fail(i, outcome.retryable)
                if delay >= 0:
                    time.sleep(max(delay, outcome.retry_after))
                    continue
                failures[i] = outcome
            else:
                run.succeed(i)
                if message is not None:
                    messages[i] = message
            break
    return run.succeeded


@pytest.mark.benchmark(group="task loop, 10k tasks of a no-op call")
def test_task_loop_sync_driver(benchmark, loop) -> None:  # type: ignore[no-untyped-def]
    chunk = _chunk()

    def once() -> int:
        st = ChunkState(chunk, ChunkRun(N, loop.policy))
        loop.run_sync(st)
        return st.run.succeeded

    assert benchmark(once) == N


@pytest.mark.benchmark(group="task loop, 10k tasks of a no-op call")
def test_task_loop_before_baseline(benchmark, loop) -> None:  # type: ignore[no-untyped-def]
    chunk = _chunk()
    assert benchmark(lambda: _before(loop.policy, loop.aimd, loop.op, chunk)) == N
