"""The per-task loop, written once (execute/loop.py), under both of its drivers.

The same cases run through the sync driver (`TaskLoop.run_sync`) and the async driver
(`execute.pool.Executor` on uvloop), as uvloop runs one TCP suite over uvloop and
asyncio. The operation here is a scripted stand-in for a store: each task fails with
the listed exceptions, in order, then succeeds; it patches no client.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from batchops.execute.loop import ChunkState, TaskLoop
from batchops.execute.pool import Executor
from batchops.model.chunk import Chunk
from batchops.model.errors import JobFatalError
from batchops.model.spec import WorkerConfig
from batchops.operations.base import Operation
from batchops.results.jobstore import JobStore
from batchops.storage.outcomes import TaskError


class Scripted(Operation):
    """Task i raises script[i][0], then script[i][1], ..., then succeeds."""

    amazon_name = "BatchopsTestScripted"
    alias = "test-scripted"

    def __init__(self, script: dict[int, list[BaseException]], hang: bool = False) -> None:
        super().__init__({}, None)  # type: ignore[arg-type]
        self.script = {i: list(v) for i, v in script.items()}
        self.calls: list[int] = []
        self.hang = hang

    def sync_capable(self, chunk: Chunk) -> bool:
        return True

    def _step(self, i: int) -> str | None:
        self.calls.append(i)
        pending = self.script.get(i)
        if pending:
            raise pending.pop(0)
        return None if i % 2 else f"ok {i}"

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        return self._step(i)

    async def run(self, chunk: Chunk, i: int) -> str | None:
        if self.hang:
            await asyncio.sleep(3600)
        await asyncio.sleep(0)
        return self._step(i)


def _chunk(n: int) -> Chunk:
    keys = [f"k{i}" for i in range(n)]
    return Chunk(0, 0, ["b"] * n, keys, [None] * n, keys)


def _config(tmp_path: Any, **kw: Any) -> WorkerConfig:
    base = dict(job_id="j", home=str(tmp_path), operation="noop", params={}, bucket_map=(),
                concurrency=4, max_attempts=3, report_scope="AllTasks")
    return WorkerConfig(**(base | kw))


def _sync(loop: TaskLoop, st: ChunkState) -> None:
    loop.run_sync(st)


def _async(loop: TaskLoop, st: ChunkState) -> None:
    async def main() -> None:
        done: list[dict[str, Any]] = []
        ex = Executor(loop.cfg, done.append, base=loop)
        ex.runs.append(st)
        ex.start()
        ex._wake.set()
        while not (st.run.finished or ex.fatal):
            await asyncio.sleep(0.001)
        await ex.close()
        if ex.fatal:
            raise ex.fatal

    uvloop.run(main())


DRIVERS: dict[str, Callable[[TaskLoop, ChunkState], None]] = {"sync": _sync, "async": _async}


def _loop(tmp_path: Any, op: Operation, **kw: Any) -> TaskLoop:
    JobStore.create("j", str(tmp_path))  # where a finished chunk's report parts go
    loop = TaskLoop(_config(tmp_path, **kw))
    loop.op = op
    loop.policy = type(loop.policy)(kw.get("max_attempts", 3), 0.001, 0.002)
    return loop


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_task_runs_once_and_messages_are_kept(tmp_path, driver) -> None:
    op = Scripted({})
    loop = _loop(tmp_path, op)
    st = loop.state(_chunk(50))
    DRIVERS[driver](loop, st)
    assert sorted(op.calls) == list(range(50))
    assert (st.run.succeeded, st.run.failed) == (50, 0)
    assert st.messages == {i: f"ok {i}" for i in range(0, 50, 2)}


@pytest.mark.parametrize("driver", DRIVERS)
def test_retryable_failures_are_retried_then_succeed(tmp_path, driver) -> None:
    slow = TaskError(503, "SlowDown", "Please reduce your request rate.", retryable=True)
    op = Scripted({3: [slow, slow], 7: [TimeoutError("timed out")]})
    loop = _loop(tmp_path, op)
    st = loop.state(_chunk(10))
    DRIVERS[driver](loop, st)
    assert (st.run.succeeded, st.run.failed, st.run.retries) == (10, 0, 3)
    assert op.calls.count(3) == 3 and op.calls.count(7) == 2
    assert st.throttled == 2  # SlowDown counts for AIMD; a timeout does not


@pytest.mark.parametrize("driver", DRIVERS)
def test_retries_stop_at_max_attempts_and_the_last_error_is_reported(tmp_path, driver) -> None:
    err = TaskError(500, "InternalError", "boom", retryable=True)
    op = Scripted({1: [err, err, err, err]})
    loop = _loop(tmp_path, op, max_attempts=3)
    st = loop.state(_chunk(3))
    DRIVERS[driver](loop, st)
    assert op.calls.count(1) == 3
    assert st.run.failed == 1 and st.failures[1].error_code == "InternalError"


@pytest.mark.parametrize("driver", DRIVERS)
def test_permanent_failures_are_tried_once(tmp_path, driver) -> None:
    op = Scripted({0: [TaskError(404, "NoSuchKey", "The specified key does not exist.")]})
    loop = _loop(tmp_path, op)
    st = loop.state(_chunk(2))
    DRIVERS[driver](loop, st)
    assert op.calls.count(0) == 1
    assert (st.failures[0].http_status, st.failures[0].error_code) == (404, "NoSuchKey")


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_full_disk_stops_the_job_instead_of_failing_rows(tmp_path, driver) -> None:
    op = Scripted({2: [OSError(errno.ENOSPC, "No space left on device")]})
    loop = _loop(tmp_path, op)
    st = loop.state(_chunk(5))
    with pytest.raises(JobFatalError):
        DRIVERS[driver](loop, st)
    assert 2 not in st.failures


def test_the_async_driver_times_a_hung_task_out(tmp_path) -> None:
    op = Scripted({}, hang=True)
    loop = _loop(tmp_path, op, task_timeout=0.2, max_attempts=2)
    st = loop.state(_chunk(1))
    started = time.monotonic()
    _async(loop, st)
    assert st.run.failed == 1 and st.failures[0].retryable
    assert time.monotonic() - started < 60  # not the hour the call would take


def test_a_whole_chunk_call_feeds_the_same_loop(tmp_path) -> None:
    """Results of `run_chunk_sync` go through the loop: a retryable failure there is
    retried task by task through `run_sync`."""

    class Batched(Scripted):
        def run_chunk_sync(self, chunk: Chunk, indices: list[int]) -> list[Any] | None:
            return [TaskError(500, "InternalError", "x", retryable=True) if i == 1 else
                    f"batch {i}" for i in indices]

    op = Batched({})
    loop = _loop(tmp_path, op)
    st = loop.state(_chunk(3))
    loop.run_sync(st)
    assert op.calls == [1]  # only the failed task ran again, one by one
    assert (st.run.succeeded, st.run.retries) == (3, 1)
    assert st.messages == {0: "batch 0", 2: "batch 2"}


def test_a_cancel_starts_no_task_that_was_taken_but_not_run(tmp_path) -> None:
    op = Scripted({})
    loop = _loop(tmp_path, op)
    st = loop.state(_chunk(4))
    taken = [st.run.take() for _ in range(4)]
    steps = loop.steps(st, 0, taken=taken)
    assert next(steps) == 0
    st.run.close()
    with pytest.raises(StopIteration):
        steps.send((None, None))
    assert st.run.done_indices() == [0]


def test_noop_per_task_runs_every_task_through_the_loop(tmp_path) -> None:
    """`{"BatchopsNoop": {"PerTask": true}}`: each task is taken, run and recorded by the
    per-task loop (the "runner ceiling" figure); plain noop succeeds a chunk as a whole."""
    from batchops.operations.noop import NoopOperation

    JobStore.create("j", str(tmp_path))
    whole = TaskLoop(_config(tmp_path))
    per_task = TaskLoop(_config(tmp_path, params={"PerTask": True}))
    assert whole.no_task_work() and not per_task.no_task_work()
    assert isinstance(per_task.op, NoopOperation) and not per_task.needs_loop(_chunk(1))
    calls: list[int] = []
    run = per_task.op.run_sync
    per_task.op.run_sync = lambda chunk, i: calls.append(i) or run(chunk, i)  # type: ignore
    st = per_task.state(_chunk(50))
    per_task.run_sync(st)
    assert calls == list(range(50))
    assert st.run.finished and st.run.succeeded == 50 and not st.failures


def test_noop_refuses_members_it_does_not_know() -> None:
    from batchops.model.errors import SpecError
    from batchops.operations.noop import NoopOperation

    assert NoopOperation.validate({"PerTask": True}, None) == {"PerTask": True}  # type: ignore
    assert NoopOperation.validate({}, None) == {}  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="PerTask"):
        NoopOperation.validate({"PerTsk": True}, None)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="true or false"):
        NoopOperation.validate({"PerTask": "yes"}, None)  # type: ignore[arg-type]
