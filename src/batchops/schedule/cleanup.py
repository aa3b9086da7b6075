"""Removing jobs: `delete-job` (one job) and `prune` (every finished job older than an
age, in the given statuses). A job folder (or object-store prefix) is removed only
under the job's lock, taken here: a running job (its lock held by a live process, or
its lease unexpired) is never removed, and nothing can start it while it is removed.
Both kinds of job store (results/jobstore.py, results/objectjobs.py) do it through
the same interface."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from batchops.model.errors import BatchopsError, JobLockedError, SpecError
from batchops.model.status import STATUSES, TERMINAL
from batchops.results.jobstore import JobStore
from batchops.results.stores import job_ids, open_job_store

_UNITS = MappingProxyType({"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400})


def parse_age(text: str, flag: str = "--older-than") -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `45s` as a duration."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not m:
        raise SpecError(f"{flag} {text!r}: expected a number and a unit (s, m, h, d or w), "
                        "e.g. 30d")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_statuses(text: str, flag: str = "--status") -> frozenset[str]:
    """A comma-separated list of finished statuses (Complete,Cancelled,Failed)."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in STATUSES:
            raise SpecError(f"{flag}: {name!r} is not a job status ({', '.join(STATUSES)})")
        if name not in TERMINAL:
            raise SpecError(f"{flag}: {name} jobs are not finished and are never pruned "
                            f"(give some of {', '.join(sorted(TERMINAL))}; delete-job "
                            "removes one unfinished job that is not running)")
    if not names:
        raise SpecError(f"{flag} needs at least one status, e.g. Complete,Cancelled,Failed")
    return frozenset(names)


def delete_job(store: JobStore) -> None:
    """Remove the job's folder or prefix, under its lock (JobLockedError: running)."""
    if not store.try_lock():
        raise JobLockedError(f"job {store.job_id} is running; stop it first (Ctrl-C, or "
                             "update-job-status --requested-job-status Cancelled), then "
                             "delete it")
    try:
        store.destroy()
    finally:
        store.unlock()


def _finished_at(job: dict[str, object]) -> datetime | None:
    stamp = job.get("TerminationDate") or job.get("CreationTime")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def prunable(older_than: timedelta, statuses: Iterable[str], home: str | None = None,
             now: datetime | None = None) -> list[str]:
    """The ids of the jobs in `statuses` that finished (else were created) more than
    `older_than` ago."""
    wanted = frozenset(statuses)
    cutoff = (now or datetime.now(UTC)) - older_than
    found = []
    for job_id in sorted(job_ids(home)):
        try:
            job = open_job_store(job_id, home).read()["Job"]
        except BatchopsError:
            continue  # removed meanwhile, or unreadable: not ours to judge
        when = _finished_at(job)
        if job.get("Status") in wanted and when is not None and when <= cutoff:
            found.append(job_id)
    return found


def prune(older_than: timedelta, statuses: Iterable[str], home: str | None = None,
          now: datetime | None = None) -> tuple[list[str], list[str]]:
    """Delete the `prunable` jobs. Returns (the ids deleted, the ids left alone because
    a process holds them)."""
    deleted, busy = [], []
    for job_id in prunable(older_than, statuses, home, now):
        try:
            delete_job(open_job_store(job_id, home))
        except JobLockedError:
            busy.append(job_id)
        except BatchopsError:
            continue  # removed meanwhile
        else:
            deleted.append(job_id)
    return deleted, busy


__all__ = ["delete_job", "parse_age", "parse_statuses", "prunable", "prune"]
