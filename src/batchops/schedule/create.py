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
from dataclasses import replace
from typing import Any

import orjson

from batchops.manifest.inventory import fetch_manifest_object, normalise_inventory
from batchops.manifest.listing import generate, validate_generator
from batchops.manifest.reader import ManifestInfo, prepare, write_chunk_index
from batchops.model.chunk import auto_chunk_size
from batchops.model.errors import BadInputError, BatchopsError, ManifestError, SpecError
from batchops.model.formats import INVENTORY_FORMAT
from batchops.model.spec import JobOptions, fit_text
from batchops.model.status import FAILED, NEW, PREPARING, READY, SUSPENDED
from batchops.operations import get_operation
from batchops.results.jobstore import JobStore, now_iso
from batchops.storage.locations import Resolver, normalise_url, split_location
from batchops.storage.preflight import preflight


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
        from batchops.storage.outcomes import classify

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
    from batchops.results.jobstore import batchops_home, makedirs

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
    from batchops.results.jobstore import atomic_write, batchops_home

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
            from batchops.manifest.reader import file_digest

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
        from batchops.storage.outcomes import classify

        message = f"cannot prepare the manifest: {classify(exc).message}"
        fail_job(store, doc, "ManifestUnreadable", message)
        raise BadInputError(message) from None
    settings["manifest"] = info.to_json()
    settings["chunk_size"] = opts.chunk_size or auto_chunk_size(
        info.total_tasks, opts.workers, opts.max_ops_per_second,
        limited=bool(opts.max_bytes_per_second))
    try:  # each chunk's byte range in the job's copy (else derived from rows.idx on reading)
        write_chunk_index(info, settings["chunk_size"])
    except OSError as exc:
        store.log("no-chunk-index", error=exc.__class__.__name__)
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


