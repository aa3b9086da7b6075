"""`batchops runner`: run the job store's jobs in priority order, as Amazon's service does.

The highest-priority runnable job runs first (oldest first among equals). When a job of
higher priority becomes Ready while another is Active, the running one goes Pausing →
Paused and is resumed once nothing of higher priority is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from batchops.model.errors import BatchopsError, JobLockedError
from batchops.model.spec import AwsSettings
from batchops.model.status import NEW, PAUSED, RESUMABLE
from batchops.results.jobstore import JobStore
from batchops.results.stores import job_ids, job_store
from batchops.schedule.control import effective_priority
from batchops.schedule.coordinator import run_job

#: Ready jobs, and every status a stop can leave (a job whose `create-job` died while
#: Preparing is prepared again); a job some live process holds is skipped.
RUNNABLE = RESUMABLE | {NEW}


def runnable_jobs(home: str | None = None) -> list[tuple[int, str, str]]:
    """(priority, creation time, job id) of every job a runner may pick, best first."""
    out = []
    for job_id in job_ids(home):
        store = job_store(job_id, home)
        try:
            job = store.read()["Job"]
        except BatchopsError:
            continue
        if job["Status"] not in RUNNABLE or store.is_locked():
            continue
        out.append((effective_priority(store, job), job["CreationTime"], job_id))
    out.sort(key=lambda j: (-j[0], j[1]))
    return out


def run_jobs(home: str | None = None, watch: bool = False, poll: float = 1.0,
             on_job: Callable[[str, dict[str, Any]], None] | None = None,
             stop: Callable[[], bool] = lambda: False,
             stop_event: threading.Event | None = None, engine: str = "local",
             ray_address: str | None = None, aws: AwsSettings | None = None,
             runnable: Callable[[], list[tuple[int, str, str]]] | None = None,
             idle: Callable[[], int] = lambda: 0,
             on_store: Callable[[JobStore], None] | None = None) -> list[str]:
    """Run jobs until none is left (or forever with `watch`), or until `stop()`; returns
    the ids run. `stop_event` is handed to the running job (set: it pauses soon).

    One of several runners of a pool (`batchops serve`) gets the pool's `runnable` (the
    jobs to pick, best first, as `runnable_jobs`) and `idle` (how many runners of the
    pool have nothing to run: they take the best waiting jobs, so a running job yields
    only to a better one that no idle runner will take). `on_store` sees each job's
    store before it runs (--notify watches it)."""
    pick = runnable or (lambda: runnable_jobs(home))
    ran: list[str] = []
    broken: set[str] = set()  # jobs that cannot run (changed manifest, ...): not retried
    while not stop():
        jobs = [j for j in pick() if j[2] not in broken]
        if not jobs:
            if not watch:
                break
            time.sleep(poll)
            continue
        priority, _, job_id = jobs[0]
        store = job_store(job_id, home)
        if on_store is not None:
            on_store(store)

        def higher(current: str = job_id) -> str | None:
            now = job_store(current, home)
            mine = effective_priority(now, now.read()["Job"])
            better = [j for j in pick() if j[0] > mine and j[2] != current][idle():]
            return better[0][2] if better else None

        try:
            doc = run_job(store, should_yield=higher, stop=stop_event, engine=engine,
                          ray_address=ray_address, aws=aws)
        except JobLockedError:
            # Another runner took it between our look and our lock: it is that runner's
            # now, and no error of the job's.
            time.sleep(min(poll, 0.2))
            continue
        except BatchopsError as exc:
            broken.add(job_id)
            store.log("runner-error", error=str(exc))
            if on_job:
                on_job(job_id, {"Job": {"JobId": job_id, "Status": "Error",
                                        "StatusUpdateReason": str(exc)}})
            continue
        ran.append(job_id)
        if on_job:
            on_job(job_id, doc)
        if doc["Job"]["Status"] == PAUSED and "higher priority" not in \
                doc["Job"].get("StatusUpdateReason", ""):
            break  # interrupted (signal, store fault): stop the runner too
    return ran
