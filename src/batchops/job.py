"""The job model: creating a job, and describing and listing jobs in Amazon's shapes.

`job.json` holds `{"Job": <JobDescriptor>, "Batchops": <settings>}`. The `Job` member
uses the member names of the `s3control` API model (DescribeJob's JobDescriptor);
`Batchops` holds what Amazon's shape has no place for (the manifest digest, bucket
map, workers, chunk size). Neither ever holds a credential.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from .chunk import auto_chunk_size
from .errors import BadInputError, BatchopsError, ManifestError, SpecError
from .inventory import INVENTORY_FORMAT, fetch_manifest_object, normalise_inventory
from .jobstore import JobStore, now_iso
from .listing import generate, validate_generator
from .manifest import CSV_FORMAT, ManifestInfo, prepare
from .operations import get_operation
from .report import SCOPES
from .stores import Resolver, normalise_url, preflight, split_location

# Amazon's job statuses.
NEW, PREPARING, SUSPENDED, READY, ACTIVE = "New", "Preparing", "Suspended", "Ready", "Active"
PAUSING, PAUSED, COMPLETING, COMPLETE = "Pausing", "Paused", "Completing", "Complete"
FAILING, FAILED, CANCELLING, CANCELLED = "Failing", "Failed", "Cancelling", "Cancelled"
TERMINAL = (COMPLETE, FAILED, CANCELLED)
RESUMABLE = (READY, ACTIVE, PAUSING, PAUSED, COMPLETING, FAILING, NEW, PREPARING)

DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class JobOptions:
    """A job as requested (from the CLI or a create-job document), before preparing."""

    manifest: str  # path or URL; "" when a manifest generator makes it
    operation: str
    params: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    report_scope: str = "AllTasks"
    report_enabled: bool = True
    chunk_size: int = 0  # 0: automatic (DEFAULT_CHUNK_SIZE, smaller for small manifests)
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
    confirmation_required: bool = False  # Amazon's ConfirmationRequired: start Suspended
    manifest_format: str = CSV_FORMAT  # or INVENTORY_FORMAT
    manifest_etag: str | None = None  # Manifest.Location.ETag: refuse another manifest
    manifest_version: str | None = None  # Manifest.Location.ObjectVersionId: read that one
    manifest_generator: dict[str, Any] | None = None  # S3JobManifestGenerator
    tags: tuple[tuple[str, str], ...] = ()
    client_request_token: str | None = None
    role_arn: str | None = None
    max_ops_per_second: float = 0.0
    max_bytes_per_second: float = 0.0

    def check(self) -> None:
        if self.chunk_size < 0:
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
        if self.manifest_format not in (CSV_FORMAT, INVENTORY_FORMAT):
            raise SpecError(f"Manifest.Spec.Format must be {CSV_FORMAT} or {INVENTORY_FORMAT}")
        if not self.manifest and not self.manifest_generator:
            raise SpecError("a job needs a manifest (--manifest) or a manifest generator")
        if self.max_ops_per_second < 0 or self.max_bytes_per_second < 0:
            raise SpecError("--max-ops-per-second and --max-bytes-per-second must be positive")
        if not 0 <= self.priority <= 2147483647:
            raise SpecError("Priority must be a whole number from 0 to 2147483647")
        if len(self.description) > MODEL_TEXT_MAX:
            raise SpecError(f"the job description (Description, --description) is "
                            f"{len(self.description)} characters; S3 allows at most "
                            f"{MODEL_TEXT_MAX}")
        if self.tags:
            from .lifecycle import JOB_TAG_LIMIT
            from .operations.base import check_tag_set

            check_tag_set([{"Key": k, "Value": v} for k, v in self.tags], "the job's Tags",
                          JOB_TAG_LIMIT, "job")

    def request_digest(self) -> str:
        """What makes two create-job requests "the same" (for ClientRequestToken)."""
        fields = {k: v for k, v in self.__dict__.items() if k != "client_request_token"}
        return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS,
                                           default=str)).hexdigest()


MODEL_TEXT_MAX = 256  # Description, StatusUpdateReason, FailureReason in s3control's model




def _fetch_manifest(location: str, job_dir: str, etag: str | None,
                    version: str | None = None) -> str:
    """A local path for the manifest: remote manifests are copied into the job folder.

    With `etag`, the manifest must still be that object (Amazon's Location.ETag check);
    with `version`, that version of the object is read (Location.ObjectVersionId).
    """
    url = normalise_url(location, "--manifest")
    if "://" not in url:
        url = "file://" + os.path.abspath(location)
    if url.startswith("file://"):
        if version:
            raise SpecError(f"--manifest {location}: a local file has no versions "
                            "(Manifest.Location.ObjectVersionId)")
        path = url[len("file://"):]
        if etag and os.path.isfile(path):
            with open(path, "rb") as f:
                md5 = hashlib.file_digest(f, "md5").hexdigest()
            if md5 != etag.strip('"'):
                raise ManifestError(location, None, f"its ETag (MD5) is {md5}, not the "
                                                    f"{etag} given in Manifest.Location.ETag")
        return path
    try:
        path, meta = fetch_manifest_object(url, os.path.join(job_dir, "manifest.source"),
                                           version)
    except FileNotFoundError:
        raise BadInputError(f"--manifest {location}: no such object") from None
    except Exception as exc:  # noqa: BLE001 - one sentence for any store error
        from .errors import classify

        raise BadInputError(f"--manifest {location}: cannot read it "
                            f"({classify(exc).message})") from None
    if etag and meta["ETag"] != etag.strip('"'):
        raise ManifestError(location, None, f"its ETag is {meta['ETag']}, not the {etag} "
                                            "given in Manifest.Location.ETag")
    return path


def _report_spec(url: str, scope: str, enabled: bool) -> dict[str, Any]:
    loc = split_location(url)
    bucket = ("arn:aws:s3:::" + loc.root[len("s3://"):]) if loc.root.startswith("s3://") \
        else loc.root
    spec: dict[str, Any] = {"Bucket": bucket, "Format": "Report_CSV_20180820",
                            "Enabled": enabled, "ReportScope": scope}
    if loc.prefix:
        spec["Prefix"] = loc.prefix.rstrip("/")
    return spec


def _manifest_arn(location: str) -> str:
    url = normalise_url(location, "--manifest")
    if url.startswith("s3://"):
        return "arn:aws:s3:::" + url[len("s3://"):]
    return url if "://" in url else "file://" + os.path.abspath(location)


def _claim_token(opts: JobOptions, home: str | None) -> str | None:
    """Idempotency: the job id already created for this token and request, if any."""
    if not opts.client_request_token:
        return None
    from .jobstore import batchops_home, makedirs

    folder = os.path.join(home or batchops_home(), "tokens")
    makedirs(folder)
    name = hashlib.sha256(opts.client_request_token.encode()).hexdigest()
    path = os.path.join(folder, name + ".json")
    try:
        with open(path, "rb") as f:
            seen = orjson.loads(f.read())
    except FileNotFoundError:
        return None
    if seen["request"] != opts.request_digest():
        raise SpecError("ClientRequestToken was already used for a different create-job "
                        "request; use a new token")
    job_dir = os.path.join(home or batchops_home(), "jobs", seen["job_id"])
    return str(seen["job_id"]) if os.path.isdir(job_dir) else None


def _record_token(opts: JobOptions, home: str | None, job_id: str) -> None:
    if not opts.client_request_token:
        return
    from .jobstore import atomic_write, batchops_home

    name = hashlib.sha256(opts.client_request_token.encode()).hexdigest()
    atomic_write(os.path.join(home or batchops_home(), "tokens", name + ".json"),
                 orjson.dumps({"job_id": job_id, "request": opts.request_digest()}))


def create_job(opts: JobOptions, home: str | None = None) -> JobStore:
    """Create a job: validate, run the preparing pass, write job.json.

    The job ends Ready, or Suspended when confirmation is required. Bad input raises
    BadInputError; the job is then recorded as Failed with the reason (a whole
    job.json, nothing half-written), or not at all if the spec itself is bad.
    A repeated ClientRequestToken with the same request returns the same job.
    """
    opts.check()
    op = get_operation(opts.operation)
    resolver = Resolver(opts.bucket_map)
    params = op.validate(opts.params, resolver)
    if op.destructive and not (opts.dry_run or opts.confirmed or opts.confirmation_required):
        raise SpecError(f"{op.alias} removes objects for good: add --confirm-delete, or "
                        "--dry-run to list what would be deleted")
    generator = validate_generator(opts.manifest_generator) if opts.manifest_generator \
        else None
    existing = _claim_token(opts, home)
    if existing:
        return JobStore.open(existing, home)
    job_id = str(uuid.uuid4())
    store = JobStore.create(job_id, home)
    report_url = normalise_url(opts.report, "--report") if opts.report else \
        "file://" + os.path.join(store.dir, "report")
    if "://" not in report_url:
        report_url = "s3://" + report_url
    manifest_arn = _manifest_arn(opts.manifest) if opts.manifest else ""
    job: dict[str, Any] = {
        "JobId": job_id,
        "JobArn": f"arn:aws:s3:local:000000000000:job/{job_id}",
        "ConfirmationRequired": opts.confirmation_required,
        "Status": NEW,
        "Operation": op.amazon_spec(params),
        "Priority": opts.priority,
        "ProgressSummary": {"TotalNumberOfTasks": 0, "NumberOfTasksSucceeded": 0,
                            "NumberOfTasksFailed": 0,
                            "Timers": {"ElapsedTimeInActiveSeconds": 0}},
        "Report": _report_spec(report_url, opts.report_scope, opts.report_enabled),
        "CreationTime": now_iso(),
    }
    if opts.description:
        job["Description"] = opts.description
    if opts.role_arn:
        job["RoleArn"] = opts.role_arn
    if generator:
        job["ManifestGenerator"] = {"S3JobManifestGenerator": opts.manifest_generator}
    else:
        job["Manifest"] = {"Spec": {"Format": opts.manifest_format,
                                    "Fields": ["Bucket", "Key"]},
                           "Location": {"ObjectArn": manifest_arn,
                                        "ETag": opts.manifest_etag or "pending"}}
        if opts.manifest_version:
            job["Manifest"]["Location"]["ObjectVersionId"] = opts.manifest_version
    settings: dict[str, Any] = {
        "operation": op.alias, "params": params, "report_url": report_url,
        "chunk_size": opts.chunk_size, "bucket_map": [list(p) for p in opts.bucket_map],
        "workers": opts.workers, "concurrency": opts.concurrency,
        "max_attempts": opts.max_attempts, "failure_min_tasks": opts.failure_min_tasks,
        "failure_ratio": opts.failure_ratio, "dry_run": opts.dry_run, "manifest": None,
        "tags": [{"Key": k, "Value": v} for k, v in opts.tags],
        "max_ops_per_second": opts.max_ops_per_second,
        "max_bytes_per_second": opts.max_bytes_per_second,
        "stats": {"retries": 0, "throttled": 0},
    }
    doc = {"Job": job, "Batchops": settings}
    try:
        store.write(doc)
        _record_token(opts, home, job_id)
        store.log("created", operation=op.alias, manifest=opts.manifest or "generated")
        job["Status"] = PREPARING
        store.write(doc)
        location = opts.manifest
        if generator:
            location = f"listing:{generator['SourceBucket']}"
            path, descriptor = generate(generator, job_id, store.dir, resolver)
            if descriptor:
                job["GeneratedManifestDescriptor"] = descriptor
        else:
            path = _fetch_manifest(opts.manifest, store.dir, opts.manifest_etag,
                                   opts.manifest_version)
            if opts.manifest_format == INVENTORY_FORMAT:
                source = path
                path = normalise_inventory(source, opts.manifest, store.dir, resolver)
        info = prepare(location, path, store.dir)
        if opts.manifest_format == INVENTORY_FORMAT and not generator:
            from .manifest import file_digest

            size, digest = file_digest(source)
            info = replace(info, source=source, size=size, digest=digest)
        op.check_locations(params, [resolver.location(b) for b in info.buckets])
        if not (opts.dry_run or op.no_task_work):
            preflight(resolver, [resolver.location(b) for b in info.buckets])
    except BadInputError as exc:
        fail_job(store, doc, "ManifestInvalid" if isinstance(exc, ManifestError)
                 else "InvalidJobSpec", str(exc))
        raise
    except BatchopsError:
        shutil.rmtree(store.dir, ignore_errors=True)
        raise
    except Exception as exc:  # noqa: BLE001 - a store error while preparing: one sentence
        from .errors import classify

        message = f"cannot prepare the manifest: {classify(exc).message}"
        fail_job(store, doc, "ManifestUnreadable", message)
        raise BadInputError(message) from None
    settings["manifest"] = info.to_json()
    settings["chunk_size"] = opts.chunk_size or auto_chunk_size(
        info.total_tasks, opts.workers, opts.max_ops_per_second,
        limited=bool(opts.max_bytes_per_second))
    if not generator:
        fields = ["Bucket", "Key"] + (["VersionId"] if info.columns >= 3 else [])
        job["Manifest"]["Spec"]["Fields"] = fields
        job["Manifest"]["Location"]["ETag"] = opts.manifest_etag or info.digest
    job["ProgressSummary"]["TotalNumberOfTasks"] = info.total_tasks
    if opts.confirmation_required:
        job["Status"] = SUSPENDED
        job["SuspendedDate"] = now_iso()
        job["SuspendedCause"] = "AwaitingConfirmation"
    else:
        job["Status"] = READY
    store.write(doc)
    store.log("prepared", total_tasks=info.total_tasks, digest=info.digest,
              status=job["Status"])
    return store


def fit_text(text: str) -> str:
    """A reason or description cut to the s3control model's 256 characters."""
    return text if len(text) <= MODEL_TEXT_MAX else text[:MODEL_TEXT_MAX - 1] + "…"


def fail_job(store: JobStore, doc: dict[str, Any], code: str, reason: str) -> None:
    job = doc["Job"]
    job["Status"] = FAILED
    job["FailureReasons"] = [{"FailureCode": code, "FailureReason": fit_text(reason)}]
    job["StatusUpdateReason"] = fit_text(reason)
    job["TerminationDate"] = now_iso()
    store.write(doc)
    store.log("failed", code=code, reason=reason)


def manifest_info(doc: dict[str, Any]) -> ManifestInfo:
    return ManifestInfo.from_json(doc["Batchops"]["manifest"])


def describe(store: JobStore) -> dict[str, Any]:
    """DescribeJob's output: `{"Job": JobDescriptor}`."""
    job = store.read()["Job"]
    control = store.control()
    if "Priority" in control:
        job["Priority"] = control["Priority"]
    if "StatusUpdateReason" in job:  # ours can be longer (a path, the resume command)
        job["StatusUpdateReason"] = fit_text(job["StatusUpdateReason"])
    for failure in job.get("FailureReasons") or ():  # jobs failed by an older batchops
        failure["FailureReason"] = fit_text(failure.get("FailureReason", ""))
    return {"Job": job}


def list_jobs(home: str | None = None, statuses: tuple[str, ...] = (),
              max_results: int | None = None, next_token: str | None = None) -> dict[str, Any]:
    """ListJobs' output: `{"Jobs": [JobListDescriptor...], "NextToken"?}`, newest first."""
    out = []
    for job_id in JobStore.all_ids(home):
        try:
            job = describe(JobStore(job_id, home))["Job"]
        except BatchopsError:
            continue
        if statuses and job["Status"] not in statuses:
            continue
        entry = {k: job[k] for k in ("JobId", "Description", "Priority", "Status",
                                     "CreationTime", "TerminationDate", "ProgressSummary")
                 if k in job}
        entry["Operation"] = next(iter(job["Operation"]))
        out.append(entry)
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
