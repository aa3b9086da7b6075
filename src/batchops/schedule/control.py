"""Control of existing jobs, as `aws s3control` does it: confirm or cancel, change the
priority, tag. Control commands never write job.json under a running job: they write
control.json, which the running process reads about once a second; a job nobody runs is
changed directly, under its lock.

A job whose process died (kill -9, a reboot) in a running status (Preparing, Active,
Pausing, Completing, Failing, Cancelling) is described as it truly is: Paused, with a
StatusUpdateReason naming the status it stopped in and the `batchops resume` command.
A running status is only reported while the job's lock is held by a live process.
"""

from __future__ import annotations

from typing import Any

from batchops.model.errors import BatchopsError, JobStateError, SpecError
from batchops.model.spec import JOB_TAG_LIMIT, MODEL_TEXT_MAX, check_tag_set, fit_text
from batchops.model.status import (
    CANCELLED,
    COMPLETING,
    FAILING,
    PAUSED,
    READY,
    RUNNING,
    SUSPENDED,
    TERMINAL,
    check_transition,
)
from batchops.results.jobstore import JobStore, now_iso
from batchops.results.stores import job_ids, job_store
from batchops.schedule.failpoints import failpoint


def update_job_status(store: JobStore, requested: str, reason: str | None = None) -> dict:
    """Ready confirms a Suspended job; Cancelled stops a job wherever it runs."""
    if requested not in (READY, CANCELLED):
        raise SpecError("--requested-job-status must be Ready or Cancelled")
    if reason and len(reason) > MODEL_TEXT_MAX:
        raise SpecError(f"--status-update-reason is {len(reason)} characters; S3 allows at "
                        f"most {MODEL_TEXT_MAX}")
    job = store.read()["Job"]
    status = job["Status"]
    if status in TERMINAL:
        raise JobStateError(f"job {store.job_id} is already {status}")
    if requested == CANCELLED and status in (COMPLETING, FAILING):
        raise JobStateError(f"job {store.job_id} is {status}: every task ran and its report "
                            f"is being published; it cannot be cancelled now (if its process "
                            f"stopped, `batchops resume {store.job_id}` finishes it)")
    if requested == READY:
        if status != SUSPENDED:
            raise JobStateError(f"job {store.job_id} is {status}; only a Suspended job can be "
                                "confirmed")
        failpoint(store.dir, "confirming")
        if not store.try_lock():
            raise JobStateError(f"job {store.job_id} is busy; try again")
        try:
            doc = store.read()  # again, under the lock: it may have been cancelled since
            status = doc["Job"]["Status"]
            if status != SUSPENDED or store.control().get("RequestedStatus") == CANCELLED:
                raise JobStateError(f"job {store.job_id} is "
                                    f"{'being cancelled' if status == SUSPENDED else status}; "
                                    "only a Suspended job can be confirmed")
            check_transition(status, READY)
            doc["Job"]["Status"] = READY
            doc["Job"]["StatusUpdateReason"] = reason or "confirmed"
            store.write(doc)
            store.log("confirmed", reason=reason)
        finally:
            store.unlock()
        return {"JobId": store.job_id, "Status": READY,
                "StatusUpdateReason": doc["Job"]["StatusUpdateReason"]}
    failpoint(store.dir, "cancel-asked")
    store.update_control(RequestedStatus=CANCELLED,
                         StatusUpdateReason=reason or "cancelled by request")
    store.log("cancel-requested", reason=reason)
    if store.try_lock():  # nobody runs it: cancel it here and now
        try:
            from batchops.schedule.coordinator import JobRun

            doc = store.read()  # under the lock: the process running it may have just
            now = doc["Job"]["Status"]  # ended it (cancelled, as asked, or otherwise)
            if now in TERMINAL and now != CANCELLED:
                raise JobStateError(f"job {store.job_id} is already {now}")
            if now != CANCELLED:
                doc = JobRun(store).cancel_idle(reason or "cancelled by request")
        finally:
            store.unlock()
        return {"JobId": store.job_id, "Status": doc["Job"]["Status"],
                "StatusUpdateReason": doc["Job"].get("StatusUpdateReason", "")}
    return {"JobId": store.job_id, "Status": "Cancelling",
            "StatusUpdateReason": reason or "cancelled by request"}


def update_job_priority(store: JobStore, priority: int) -> dict[str, Any]:
    if not 0 <= priority <= 2147483647:
        raise SpecError("--priority must be a whole number from 0 to 2147483647")
    store.read()
    store.update_control(Priority=priority)
    if store.try_lock():
        try:
            doc = store.read()
            doc["Job"]["Priority"] = priority
            store.write(doc)
        finally:
            store.unlock()
    store.log("priority", priority=priority)
    return {"JobId": store.job_id, "Priority": priority}


def job_tags(store: JobStore) -> list[dict[str, str]]:
    control = store.control()
    if "Tags" in control:
        return list(control["Tags"])
    return list(store.read()["Batchops"].get("tags") or [])


def put_job_tagging(store: JobStore, tags: Any) -> None:
    store.update_control(Tags=check_tag_set(tags, "--tags", JOB_TAG_LIMIT, "job"))


def delete_job_tagging(store: JobStore) -> None:
    store.read()
    store.update_control(Tags=[])


def effective_priority(store: JobStore, job: dict[str, Any]) -> int:
    return int(store.control().get("Priority", job.get("Priority", 0)))


__all__ = ["update_job_status", "update_job_priority", "job_tags", "put_job_tagging",
           "delete_job_tagging", "effective_priority", "now_iso"]


def describe(store: JobStore) -> dict[str, Any]:
    """DescribeJob's output: `{"Job": JobDescriptor}`."""
    job = store.read()["Job"]
    if job["Status"] in RUNNING and not store.is_locked():
        job = store.read()["Job"]  # again: it may have ended while we looked at the lock
        if job["Status"] in RUNNING:
            job["StatusUpdateReason"] = (
                f"not running: the process running it stopped while {job['Status']}; "
                f"run `batchops resume {store.job_id}`")
            job["Status"] = PAUSED
    control = store.control()
    if "Priority" in control:
        job["Priority"] = control["Priority"]
    if "StatusUpdateReason" in job:  # ours can be longer (a path, the resume command)
        job["StatusUpdateReason"] = fit_text(job["StatusUpdateReason"])
    for failure in job.get("FailureReasons") or ():  # jobs failed by an older batchops
        failure["FailureReason"] = fit_text(failure.get("FailureReason", ""))
    return {"Job": job}


def list_entry(job: dict[str, Any]) -> dict[str, Any]:
    """A job's JobListDescriptor (ListJobs' entry) from its JobDescriptor."""
    entry: dict[str, Any] = {k: job[k] for k in (
        "JobId", "Description", "Priority", "Status", "CreationTime", "TerminationDate",
        "ProgressSummary") if k in job}
    entry["Operation"] = next(iter(job["Operation"]))
    return entry


def list_jobs(home: str | None = None, statuses: tuple[str, ...] = (),
              max_results: int | None = None, next_token: str | None = None) -> dict[str, Any]:
    """ListJobs' output: `{"Jobs": [JobListDescriptor...], "NextToken"?}`, newest first."""
    out = []
    for job_id in job_ids(home):
        try:
            job = describe(job_store(job_id, home))["Job"]
        except BatchopsError:
            continue
        if statuses and job["Status"] not in statuses:
            continue
        out.append(list_entry(job))
    out.sort(key=lambda j: (j["CreationTime"], j["JobId"]), reverse=True)
    start = 0
    if next_token:
        try:
            start = int(next_token)
        except ValueError:
            raise SpecError(f"--next-token {next_token!r} is not a token from list-jobs") \
                from None
    if max_results is not None and max_results < 1:
        raise SpecError("--max-results must be at least 1")
    end = len(out) if max_results is None else start + max_results
    result: dict[str, Any] = {"Jobs": out[start:end]}
    if end < len(out):
        result["NextToken"] = str(end)
    return result

