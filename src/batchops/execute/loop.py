"""The per-task loop, written once, and its sync driver.

`TaskLoop.steps` is the one loop every task of every chunk goes through: take the next
task from the chunk's native state (`ChunkRun`), wait for the rate limit, run it,
classify a failure (storage/outcomes.classify: retry after a backoff or the store's
Retry-After, fail the task for good, or stop the job), count throttling for AIMD, and
record the result for the chunk's report. It does no I/O itself: it is a generator
that *asks* its driver to act, h11-style:

    yields an int i    run task i, then send back (exception or None, result message)
    yields a float s   sleep s seconds, then send back None

Two drivers run it: `TaskLoop.run_sync` on the calling thread (local folders and memory
stores, whose calls are cheap and CPU-bound: obstore's sync API costs about 1.5 µs a
call against 70-90 µs through the async bridge), and `execute.pool.Executor` on a
uvloop event loop (remote stores), where a fixed pool of coroutines each drive it.
This module imports no asyncio: a worker whose job touches only in-process stores never
starts an event loop.

An operation that can run a whole chunk in one call (the native local-folder copy)
does so first (`Operation.run_chunk_sync`); its per-task results then go through the
same loop, so retries and classification are the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchops._scheduler import Aimd, ChunkRun, RateLimiter, RetryPolicy
from batchops.model.chunk import Chunk
from batchops.model.errors import JobFatalError
from batchops.model.spec import WorkerConfig
from batchops.operations import get_operation
from batchops.operations.base import Operation
from batchops.operations.dryrun import DryRunOperation
from batchops.results.report import write_chunk
from batchops.results.stores import job_store
from batchops.storage.locations import Resolver
from batchops.storage.outcomes import Outcome, classify

#: Seconds a pool slot above the AIMD limit waits before it looks again.
PARK_SECONDS = 0.05

#: What a step sends back after running a task: (the exception it raised or None, the
#: result message or None).
TaskResult = tuple[BaseException | None, str | None]
Steps = Generator[int | float, TaskResult | None, None]


@dataclass(slots=True)
class ChunkState:
    """A chunk being run: its native task state and what its tasks reported."""

    chunk: Chunk
    run: ChunkRun
    failures: dict[int, Outcome] = field(default_factory=dict)
    messages: dict[int, str] = field(default_factory=dict)
    finishing: bool = False
    throttled: int = 0
    on_thread: bool = False  # driven by run_sync on a thread, not by the pool


def _as_result(value: Any) -> TaskResult:
    """An entry of `run_chunk_sync`'s list as a step result."""
    if value is None or isinstance(value, str):
        return None, value
    if isinstance(value, BaseException):
        return value, None
    raise TypeError(f"run_chunk_sync returned {type(value).__name__}, not None, str or "
                    "an exception")


class TaskLoop:
    """A worker's operation, stores, retry policy and limits (built once), the per-task
    loop over them, and its sync driver."""

    def __init__(self, cfg: WorkerConfig, preset_stores: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.store = job_store(cfg.job_id, cfg.home)
        self.resolver = Resolver(cfg.bucket_map, preset_stores, cfg.concurrency, cfg.aws)
        op = get_operation(cfg.operation)(cfg.params, self.resolver, cfg.job_id)
        # A dry run checks each source is there (and does nothing else).
        self.op = DryRunOperation(op) if cfg.dry_run and not op.no_task_work else op
        self.policy = RetryPolicy(cfg.max_attempts)
        self.aimd = Aimd(max(1, cfg.concurrency))
        self.ops_limit = RateLimiter(cfg.max_ops_per_second) if cfg.max_ops_per_second else None
        # A tenth of a second of burst: large objects go into debt and wait it off.
        self.op.bytes_limiter = (RateLimiter(cfg.max_bytes_per_second)
                                 if cfg.max_bytes_per_second else None)
        # make_durable and the report writes of chunks finishing on several threads.
        self._finish_lock = threading.Lock()

    def state(self, chunk: Chunk) -> ChunkState:
        return ChunkState(chunk, ChunkRun(len(chunk), self.policy))

    def no_task_work(self) -> bool:
        """Operations like `noop`: a chunk succeeds as a whole."""
        return self.op.no_task_work

    def needs_loop(self, chunk: Chunk) -> bool:
        """Whether `chunk` must run on the event loop (remote stores)."""
        return not (self.no_task_work() or self.op.sync_capable(chunk))

    # -- the loop ------------------------------------------------------------------------

    def steps(self, st: ChunkState, slot: int = 0, taken: Sequence[int] | None = None,
              results: Sequence[Any] | None = None, adaptive: bool = False) -> Steps:
        """The per-task loop over chunk `st` (see the module docstring for what it yields).

        It takes tasks until the chunk has none left to start (several drivers may run
        it over one chunk at once: `take()` hands each task out once). `slot`: the
        pool coroutine driving it; slots at or above the AIMD limit wait, and with
        `adaptive` each success lets the limit grow back (AIMD). `taken` and
        `results`: tasks already taken and run once in one call (`run_chunk_sync`),
        whose first attempt is `results[k]`.

        Raises JobFatalError when a failure stops the job.
        """
        run, aimd, limiter, clock = st.run, self.aimd, self.ops_limit, time.monotonic
        pending = iter(taken) if taken is not None else None
        first = iter(results) if results is not None else None
        while True:
            if slot and slot >= aimd.allowed:  # adaptive concurrency: this slot waits
                if run.closed or run.started >= run.size:
                    return  # nothing left here to wait for
                yield PARK_SECONDS
                continue
            if pending is None:
                i = run.take()
            elif first is None and run.closed:
                return  # a cancel: tasks taken but not yet run do not start
            else:
                i = next(pending, -1)
            if i < 0:
                return
            result = _as_result(next(first)) if first is not None else None
            while True:
                if result is None:
                    if limiter is not None:
                        wait = limiter.reserve(1.0, clock())
                        if wait > 0.0:
                            yield wait
                    result = yield i
                    assert result is not None, "a driver sends a result for every task"
                exc, message = result
                result = None
                if exc is None:
                    run.succeed(i)
                    if adaptive:
                        aimd.on_success()
                    if message is not None:
                        st.messages[i] = message
                    break
                outcome = classify(exc)  # a bug in batchops raises here, loudly
                if outcome.throttled:
                    aimd.on_throttle(clock())
                    st.throttled += 1
                delay = run.fail(i, outcome.retryable)
                if delay >= 0.0:
                    yield max(delay, outcome.retry_after)
                    continue
                if outcome.fatal:  # (an unreachable endpoint: once its retries are spent)
                    raise JobFatalError(outcome.message)
                st.failures[i] = outcome
                break

    # -- the sync driver -------------------------------------------------------------

    def run_sync(self, st: ChunkState) -> None:
        """Run every task of `st` on this thread (the chunk must not need the loop)."""
        if self.no_task_work():
            st.run.succeed_all()
            return
        try:
            self._drive_sync(st, *self._whole_chunk(st))
        finally:
            self.op.sync_chunk_done()

    def _whole_chunk(self, st: ChunkState) -> tuple[list[int] | None, list[Any] | None]:
        """Take every task and run them in one call, when the operation can."""
        run = st.run
        if type(self.op).run_chunk_sync is Operation.run_chunk_sync:
            return None, None  # the operation runs task by task
        if self.ops_limit is not None or run.started or run.closed:
            return None, None  # a rate limit paces task by task
        taken = []
        while (i := run.take()) >= 0:
            taken.append(i)
        results = self.op.run_chunk_sync(st.chunk, taken)
        if results is not None and len(results) != len(taken):
            raise RuntimeError(f"run_chunk_sync returned {len(results)} results for "
                               f"{len(taken)} tasks")
        return taken, results

    def _drive_sync(self, st: ChunkState, taken: list[int] | None,
                    results: list[Any] | None) -> None:
        call, chunk, sleep = self.op.run_sync, st.chunk, time.sleep
        steps = self.steps(st, 0, taken, results)
        try:
            step = next(steps)
            while True:
                if type(step) is int:
                    try:
                        result: TaskResult = (None, call(chunk, step))
                    except Exception as exc:  # noqa: BLE001 - the loop classifies it
                        result = (exc, None)
                    step = steps.send(result)
                else:
                    sleep(step)
                    step = steps.send(None)
        except StopIteration:
            pass

    # -- results -----------------------------------------------------------------------

    def finish(self, st: ChunkState) -> dict[str, Any] | None:
        """Make the chunk's data durable, then write its report parts and marker (durable
        on return); returns the marker, plus how hard the store pushed back while it ran
        and the bytes moved since the last marker (not part of the checkpoint).

        A chunk closed by a cancel reports the tasks that ran (None if none did)."""
        only = None
        if st.run.closed and not st.run.finished:
            only = st.run.done_indices()
            if not only:
                return None
        with self._finish_lock:
            if st.run.succeeded and not self.cfg.dry_run:
                self.op.make_durable()
            marker = write_chunk(self.store, st.chunk, st.failures, st.messages,
                                 self.cfg.report_scope, self.cfg.dry_run, only)
        return dict(marker, retries=st.run.retries, throttled=st.throttled,
                    concurrency=self.aimd.allowed, bytes=self.op.take_bytes())


__all__ = ["ChunkState", "TaskLoop", "PARK_SECONDS"]
