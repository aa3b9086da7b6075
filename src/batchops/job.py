"""The job model: creating a job, and describing and listing jobs in Amazon's shapes.

`job.json` holds `{"Job": <JobDescriptor>, "Batchops": <settings>}`. The `Job` member
uses the member names of the `s3control` API model (DescribeJob's JobDescriptor);
`Batchops` holds what Amazon's shape has no place for (the manifest digest, bucket
map, workers, chunk size). Neither ever holds a credential.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInputError, BatchopsError, ManifestError, SpecError
from .jobstore import JobStore, now_iso
from .manifest import CSV_FORMAT, ManifestInfo, prepare
from .operations import get_operation
from .report import SCOPES
from .stores import Resolver, normalise_url, split_location

# Amazon's job statuses.
NEW, PREPARING, SUSPENDED, READY, ACTIVE = "New", "Preparing", "Suspended", "Ready", "Active"
PAUSING, PAUSED, COMPLETING, COMPLETE = "Pausing", "Paused", "Completing", "Complete"
FAILING, FAILED, CANCELLING, CANCELLED = "Failing", "Failed", "Cancelling", "Cancelled"
TERMINAL = (COMPLETE, FAILED, CANCELLED)
RESUMABLE = (READY, ACTIVE, PAUSING, PAUSED, COMPLETING, FAILING, NEW, PREPARING)

DEFAULT_CHUNK_SIZE = 10_000
DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class JobOptions:
    """A job as requested (from the CLI or a create-job document), before preparing."""

    manifest: str
    operation: str
    params: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    report_scope: str = "AllTasks"
    report_enabled: bool = True
    chunk_size: int = DEFAULT_CHUNK_SIZE
    bucket_map: tuple[tuple[str, str], ...] = ()
    workers: int = 0  # 0: one per core
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = 5
    description: str = ""
    priority: int = 10
    failure_min_tasks: int = 1000
    failure_ratio: float = 0.5
    dry_run: bool = False
    confirmed: bool = False  # the user confirmed a destructive operation (--confirm-delete)

    def check(self) -> None:
        if self.chunk_size < 1:
            raise SpecError("--chunk-size must be at least 1")
        if self.workers < 0:
            raise SpecError("--workers must be 0 (one per core) or more")
        if self.concurrency < 1:
            raise SpecError("--concurrency must be at least 1")
        if self.max_attempts < 1:
            raise SpecError("--max-attempts must be at least 1")
        if self.report_scope not in SCOPES:
            raise SpecError(f"--report-scope must be one of {', '.join(SCOPES)}")
        if not 0 < self.failure_ratio <= 1:
            raise SpecError("the failure threshold ratio must be in (0, 1]")


def default_workers() -> int:
    return os.cpu_count() or 1


def _fetch_manifest(location: str, job_dir: str) -> str:
    """A local path for the manifest: remote manifests are copied into the job folder."""
    url = normalise_url(location, "--manifest")
    if "://" not in url:
        return os.path.abspath(location)
    if url.startswith("file://"):
        return url[len("file://"):]
    import obstore as obs

    from .stores import build_store

    loc = split_location(url)
    key = loc.prefix.rstrip("/")
    dest = os.path.join(job_dir, "manifest.source")
    try:
        result = obs.get(build_store(loc.root), key)
        with open(dest + ".tmp", "wb") as out:
            for block in result.stream():
                out.write(block)
        os.replace(dest + ".tmp", dest)
    except FileNotFoundError:
        raise BadInputError(f"--manifest {location}: no such object") from None
    except Exception as exc:  # noqa: BLE001 - one sentence for any store error
        from .errors import classify

        raise BadInputError(f"--manifest {location}: cannot read it "
                            f"({classify(exc).message})") from None
    return dest


def _report_spec(url: str, scope: str, enabled: bool) -> dict[str, Any]:
    loc = split_location(url)
    bucket = ("arn:aws:s3:::" + loc.root[len("s3://"):]) if loc.root.startswith("s3://") \
        else loc.root
    spec: dict[str, Any] = {"Bucket": bucket, "Format": "Report_CSV_20180820",
                            "Enabled": enabled, "ReportScope": scope}
    if loc.prefix:
        spec["Prefix"] = loc.prefix.rstrip("/")
    return spec


def create_job(opts: JobOptions, home: str | None = None) -> JobStore:
    """Create a job: validate, run the preparing pass, write job.json (status Ready).

    Bad input raises BadInputError; the job is then recorded as Failed with the reason
    (a whole job.json, nothing half-written), or not at all if the spec itself is bad.
    """
    opts.check()
    op = get_operation(opts.operation)
    resolver = Resolver(opts.bucket_map)
    params = op.validate(opts.params, resolver)
    if op.destructive and not (opts.dry_run or opts.confirmed):
        raise SpecError(f"{op.alias} removes objects for good: add --confirm-delete, or "
                        "--dry-run to list what would be deleted")
    job_id = str(uuid.uuid4())
    store = JobStore.create(job_id, home)
    report_url = normalise_url(opts.report, "--report") if opts.report else \
        "file://" + os.path.join(store.dir, "report")
    if "://" not in report_url:
        report_url = "s3://" + report_url
    job: dict[str, Any] = {
        "JobId": job_id,
        "ConfirmationRequired": False,
        "Description": opts.description,
        "Status": PREPARING,
        "Operation": op.amazon_spec(params),
        "Priority": opts.priority,
        "ProgressSummary": {"TotalNumberOfTasks": 0, "NumberOfTasksSucceeded": 0,
                            "NumberOfTasksFailed": 0,
                            "Timers": {"ElapsedTimeInActiveSeconds": 0}},
        "Report": _report_spec(report_url, opts.report_scope, opts.report_enabled),
        "CreationTime": now_iso(),
        "Manifest": {"Spec": {"Format": CSV_FORMAT, "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": opts.manifest, "ETag": ""}},
    }
    settings: dict[str, Any] = {
        "operation": op.alias, "params": params, "report_url": report_url,
        "chunk_size": opts.chunk_size, "bucket_map": [list(p) for p in opts.bucket_map],
        "workers": opts.workers, "concurrency": opts.concurrency,
        "max_attempts": opts.max_attempts, "failure_min_tasks": opts.failure_min_tasks,
        "failure_ratio": opts.failure_ratio, "dry_run": opts.dry_run, "manifest": None,
    }
    doc = {"Job": job, "Batchops": settings}
    try:
        store.write(doc)
        store.log("created", operation=op.alias, manifest=opts.manifest)
        path = _fetch_manifest(opts.manifest, store.dir)
        info = prepare(opts.manifest, path, store.dir)
        op.check_locations(params, [resolver.location(b) for b in info.buckets])
    except BadInputError as exc:
        fail_job(store, doc, "ManifestInvalid" if isinstance(exc, ManifestError)
                 else "InvalidJobSpec", str(exc))
        raise
    except BatchopsError:
        shutil.rmtree(store.dir, ignore_errors=True)
        raise
    settings["manifest"] = info.to_json()
    fields = ["Bucket", "Key"] + (["VersionId"] if info.columns >= 3 else [])
    job["Manifest"] = {"Spec": {"Format": CSV_FORMAT, "Fields": fields},
                       "Location": {"ObjectArn": opts.manifest, "ETag": info.digest}}
    job["ProgressSummary"]["TotalNumberOfTasks"] = info.total_tasks
    job["Status"] = READY
    store.write(doc)
    store.log("prepared", total_tasks=info.total_tasks, digest=info.digest)
    return store


def fail_job(store: JobStore, doc: dict[str, Any], code: str, reason: str) -> None:
    job = doc["Job"]
    job["Status"] = FAILED
    job["FailureReasons"] = [{"FailureCode": code, "FailureReason": reason[:1024]}]
    job["StatusUpdateReason"] = reason[:256]
    job["TerminationDate"] = now_iso()
    store.write(doc)
    store.log("failed", code=code, reason=reason)


def manifest_info(doc: dict[str, Any]) -> ManifestInfo:
    return ManifestInfo.from_json(doc["Batchops"]["manifest"])


def describe(store: JobStore) -> dict[str, Any]:
    """DescribeJob's output: `{"Job": JobDescriptor}`."""
    return {"Job": store.read()["Job"]}


def list_jobs(home: str | None = None, statuses: tuple[str, ...] = ()) -> dict[str, Any]:
    """ListJobs' output: `{"Jobs": [JobListDescriptor...]}`, newest first."""
    out = []
    for job_id in JobStore.all_ids(home):
        try:
            job = JobStore(job_id, home).read()["Job"]
        except BatchopsError:
            continue
        if statuses and job["Status"] not in statuses:
            continue
        entry = {k: job[k] for k in ("JobId", "Description", "Priority", "Status",
                                     "CreationTime", "TerminationDate", "ProgressSummary")
                 if k in job}
        entry["Operation"] = next(iter(job["Operation"]))
        out.append(entry)
    out.sort(key=lambda j: j["CreationTime"], reverse=True)
    return {"Jobs": out}
