"""The job store a job home names: a folder (results/jobstore.py), or keys under an
object-store URL such as s3://bucket/prefix (results/objectjobs.py). Callers get
stores here, so the two kinds share one interface, `JobStore`."""

from __future__ import annotations

from batchops.results.jobstore import JobStore, batchops_home
from batchops.results.objectjobs import ObjectJobStore, is_remote_home


def _kind(home: str | None) -> type[JobStore]:
    return ObjectJobStore if is_remote_home(home or batchops_home()) else JobStore


def job_store(job_id: str, home: str | None = None) -> JobStore:
    """A job's store (which may not exist yet)."""
    return _kind(home)(job_id, home)


def create_job_store(job_id: str, home: str | None = None) -> JobStore:
    """Make a new job's store; refuses one that exists."""
    return _kind(home).create(job_id, home)


def open_job_store(job_id: str, home: str | None = None) -> JobStore:
    """An existing job's store, or JobNotFoundError."""
    return _kind(home).open(job_id, home)


def job_ids(home: str | None = None) -> list[str]:
    """The ids of every job in the home."""
    home = home or batchops_home()
    return ObjectJobStore.ids_in(home) if is_remote_home(home) else JobStore.all_ids(home)


__all__ = ["create_job_store", "job_ids", "job_store", "open_job_store"]
