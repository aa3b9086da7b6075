"""The server's work: jobs prepared in the background, and a pool of runners.

CreateJob answers as soon as the job exists (job.json, status New): its preparing pass
(reading the manifest, counting tasks, checks) runs on a thread of its own, under the
job's lock, and ends Ready, Suspended or Failed as `batchops create-job` does.

The pool is N runners of `batchops runner` (schedule/queue.py's `run_jobs`) on threads,
choosing from the server's index instead of reading the store: the N best runnable jobs
run, highest priority first. Jobs that were running when a server stopped (even by
kill -9: their locks died with it) are runnable again, and are resumed by the next
server on the same job store.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from batchops.model.errors import BatchopsError
from batchops.model.spec import JobOptions
from batchops.results.jobstore import JobStore
from batchops.schedule.create import create_job
from batchops.schedule.queue import run_jobs
from batchops.serve.index import JobIndex

#: Seconds an idle runner waits before it looks for work again.
POLL = 0.2
#: Seconds a runner waits after a job stopped on a fault (store unreachable, ...)
#: before it picks again.
FAULT_PAUSE = 5.0


class RunnerPool:
    """`runners` threads running the job store's jobs, best first."""

    def __init__(self, index: JobIndex, runners: int, stop: threading.Event,
                 home: str | None = None,
                 on_job: Callable[[str, dict[str, Any]], None] | None = None,
                 on_store: Callable[[JobStore], None] | None = None) -> None:
        self.index = index
        # Sees every store through which this server changes a job (--notify watches).
        self.on_store = on_store
        self.size = runners
        self.stop = stop
        self.home = home
        self.on_job = on_job
        self._threads: list[threading.Thread] = []
        self._busy = [False] * runners

    # -- creating ------------------------------------------------------------------------

    def create(self, opts: JobOptions) -> str:
        """Create a job and return its id once job.json exists; prepare it on a thread.

        Bad input found before the job exists raises here (BadInputError); found while
        preparing, it fails the job (Failed, with FailureReasons), as create-job does."""
        made = threading.Event()
        result: dict[str, Any] = {}

        def on_created(store: JobStore) -> None:
            if self.on_store is not None:
                self.on_store(store)
            result["id"] = store.job_id
            self.index.add(store.job_id)
            made.set()

        def prepare() -> None:
            try:
                store = create_job(opts, self.home, on_created=on_created)
                result.setdefault("id", store.job_id)  # an earlier job of the same token
            except BaseException as exc:  # noqa: BLE001 - handed to the request, or logged
                result["error"] = exc
                if "id" in result and not isinstance(exc, BatchopsError):
                    print(f"batchops serve: preparing job {result['id']} failed: "
                          f"{type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                if "id" in result:
                    self.index.add(result["id"])
                made.set()

        threading.Thread(target=prepare, name="batchops-prepare", daemon=True).start()
        made.wait()
        if "id" not in result:
            raise result["error"]
        return str(result["id"])

    # -- running -------------------------------------------------------------------------

    def idle(self) -> int:
        return self._busy.count(False)

    def _runner(self, slot: int) -> None:
        def pick() -> list[tuple[int, str, str]]:
            # Called before each pick (an empty answer: this runner will sleep) and, while
            # a job runs, to look for a better one (then the runner is busy already).
            jobs = self.index.runnable()
            self._busy[slot] = bool(jobs)
            return jobs

        while not self.stop.is_set():
            try:
                run_jobs(self.home, watch=True, poll=POLL, on_job=self.on_job,
                         stop=self.stop.is_set, stop_event=self.stop, runnable=pick,
                         idle=self.idle, on_store=self.on_store)
            except Exception as exc:  # noqa: BLE001 - a runner outlives any one job's bug
                print(f"batchops serve: runner {slot}: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
            # run_jobs returns when a job stopped on a fault (or we are stopping).
            self._busy[slot] = False
            self.stop.wait(FAULT_PAUSE)

    def start(self) -> None:
        for slot in range(self.size):
            t = threading.Thread(target=self._runner, args=(slot,), daemon=True,
                                 name=f"batchops-runner-{slot}")
            t.start()
            self._threads.append(t)

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the runners to stop (the stop event is set: their jobs pause)."""
        for t in self._threads:
            t.join(timeout)


__all__ = ["RunnerPool"]
