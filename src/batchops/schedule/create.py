"""The job model: creating a job, and describing and listing jobs in Amazon's shapes.

`job.json` holds `{"Job": <JobDescriptor>, "Batchops": <settings>}`. The `Job` member
uses the member names of the `s3control` API model (DescribeJob's JobDescriptor);
`Batchops` holds what Amazon's shape has no place for (the manifest digest, bucket
map, workers, chunk size). Neither ever holds a credential.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from batchops.manifest.inventory import fetch_manifest_object, normalise_inventory
from batchops.manifest.listing import generate, validate_generator
from batchops.manifest.reader import (
    ManifestInfo,
    chunk_index_path,
    prepare,
    write_chunk_index,
)
from batchops.model.arns import given_partition, s3_url_to_arn
from batchops.model.chunk import auto_chunk_size
from batchops.model.errors import (
    BadInputError,
    BatchopsError,
    IdempotencyError,
    JobStateError,
    ManifestError,
    SpecError,
)
from batchops.model.formats import INVENTORY_FORMAT
from batchops.model.spec import AwsSettings, JobOptions, fit_text
from batchops.model.status import (
    CANCELLED,
    FAILED,
    NEW,
    PREPARING,
    READY,
    SUSPENDED,
    check_transition,
)
from batchops.operations import get_operation
from batchops.results.jobstore import JobStore, atomic_write, batchops_home, makedirs, now_iso
from batchops.results.objectjobs import cache_folder, is_remote_home
from batchops.results.stores import create_job_store, job_store, open_job_store
from batchops.schedule.failpoints import failpoint
from batchops.storage.locations import Location, Resolver, normalise_url, split_location
from batchops.storage.preflight import preflight

if TYPE_CHECKING:
    from batchops.schedule.unchanged import StartedListings


def _fetch_manifest(location: str, job_dir: str, etag: str | None, resolver: Resolver,
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
                                           version, resolver)
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


def report_spec(url: str, scope: str, enabled: bool, partition: str = "aws") -> dict[str, Any]:
    """Amazon's Report member for a report URL (an S3 bucket as an ARN of `partition`)."""
    loc = split_location(url)
    spec: dict[str, Any] = {"Bucket": s3_url_to_arn(loc.root, partition),
                            "Format": "Report_CSV_20180820",
                            "Enabled": enabled, "ReportScope": scope}
    if loc.prefix:
        spec["Prefix"] = loc.prefix.rstrip("/")
    return spec


def _manifest_arn(location: str, partition: str) -> str:
    url = normalise_url(location, "--manifest")
    if given_partition(location):
        return location  # the ARN as the user gave it
    return s3_url_to_arn(url, partition) if "://" in url else \
        "file://" + os.path.abspath(location)


def _job_partition(opts: JobOptions, resolver: Resolver, urls: list[str | None]) -> str:
    """The AWS partition of the job's ARNs: that of the first ARN the user gave (manifest,
    report, target), else, as botocore maps regions to partitions, that of the first S3
    location's region, else of the job's --region; `aws` for a job on no S3 at all."""
    for given in (opts.manifest, opts.report, opts.params.get("TargetResource")):
        partition = given_partition(given)
        if partition:
            return partition
    for url in urls:
        if url and url.startswith(("s3://", "s3a://")):
            return resolver.context(split_location(url)).partition
    return resolver.context(None).partition if opts.aws else "aws"


TOKEN_WAIT = 30.0  # seconds a create-job waits for the one that claimed its token


def _token_folder(home: str | None) -> str:
    """Where ClientRequestTokens are claimed: the job home, or for a job store on an
    object store, this machine's cache of it (tokens are then idempotent per machine)."""
    home = home or batchops_home()
    if is_remote_home(home):
        return os.path.join(cache_folder(home), "tokens")
    return os.path.join(home, "tokens")


def _claim_token(opts: JobOptions, home: str | None, job_id: str) -> str | None:
    """Idempotency: claim the ClientRequestToken for `job_id`, atomically (a hard link of
    a complete file: of two concurrent create-job calls, exactly one wins). Returns None
    when claimed (create `job_id`), or the id of the job already created for this token
    and request."""
    if not opts.client_request_token:
        return None
    folder = _token_folder(home)
    makedirs(folder)
    name = hashlib.sha256(opts.client_request_token.encode()).hexdigest()
    path = os.path.join(folder, name + ".json")
    digest = opts.request_digest()
    deadline = time.monotonic() + TOKEN_WAIT
    while True:
        tmp = f"{path}.{job_id}"
        atomic_write(tmp, orjson.dumps({"job_id": job_id, "request": digest}))
        try:
            os.link(tmp, path)
            return None
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        try:
            with open(path, "rb") as f:
                seen = orjson.loads(f.read())
            age = time.time() - os.stat(path).st_mtime
        except FileNotFoundError:
            continue  # released meanwhile (that create-job failed): claim it again
        if seen["request"] != digest:
            raise IdempotencyError("ClientRequestToken was already used for a different "
                                   "create-job request; use a new token")
        job = job_store(str(seen["job_id"]), home)
        if job.exists():
            return job.job_id
        if age > TOKEN_WAIT:  # its job was deleted, or its create-job died before it
            _release_token(opts, home, str(seen["job_id"]))
            continue
        if time.monotonic() > deadline:
            raise JobStateError("another create-job with this ClientRequestToken has not "
                                "finished creating its job; try again")
        time.sleep(0.05)  # the winner is between its claim and its job folder


def _release_token(opts: JobOptions, home: str | None, job_id: str) -> None:
    """Forget the token's claim for `job_id` (its job was never made)."""
    if not opts.client_request_token:
        return
    name = hashlib.sha256(opts.client_request_token.encode()).hexdigest()
    path = os.path.join(_token_folder(home), name + ".json")
    try:
        with open(path, "rb") as f:
            if orjson.loads(f.read())["job_id"] == job_id:
                os.unlink(path)
    except (OSError, ValueError, KeyError):
        pass


def options_to_json(opts: JobOptions) -> dict[str, Any]:
    """The request as job.json keeps it, so that `resume` can prepare a job again."""
    return dataclasses.asdict(opts)


def options_from_json(data: dict[str, Any]) -> JobOptions:
    known = {f.name for f in dataclasses.fields(JobOptions)}
    values = {k: v for k, v in data.items() if k in known}
    for name in ("bucket_map", "tags"):
        values[name] = tuple(tuple(p) for p in values.get(name) or ())
    values["aws"] = AwsSettings.from_json(values.get("aws"))
    return JobOptions(**values)


def create_job(opts: JobOptions, home: str | None = None,
               on_created: Callable[[JobStore], None] | None = None,
               listings: StartedListings | None = None) -> JobStore:
    """Create a job: validate, write job.json (New), run the preparing pass.

    The job ends Ready, or Suspended when confirmation is required. Bad input raises
    BadInputError; the job is then recorded as Failed with the reason (a whole
    job.json, nothing half-written), or not at all if the spec itself is bad.
    A repeated ClientRequestToken with the same request returns the same job.
    `on_created` is called once the job exists, before the preparing pass (the CLI
    prints the job id there: a job stopped while Preparing is resumed by its id).
    `listings`: a `--skip-unchanged` job's listings, already under way
    (schedule/unchanged.py `start_listings`).
    """
    opts.check()
    op = get_operation(opts.operation)
    resolver = Resolver(opts.bucket_map, aws=opts.aws)
    if opts.aws:  # a --profile that is not there, before anything is made
        resolver.context(None)
    params = op.validate(opts.params, resolver)
    if op.destructive and not (opts.dry_run or opts.confirmed or opts.confirmation_required):
        raise SpecError(f"{op.alias} removes objects for good: add --confirm-delete, or "
                        "--dry-run to list what would be deleted")
    generator = validate_generator(opts.manifest_generator) if opts.manifest_generator \
        else None
    # Every URL is checked before anything is made: a refused one leaves nothing behind.
    given_report = normalise_url(opts.report, "--report") if opts.report else None
    if given_report and "://" not in given_report:
        given_report = "s3://" + given_report
    target = params.get("TargetResource")
    partition = _job_partition(opts, resolver, [
        normalise_url(opts.manifest, "--manifest") if opts.manifest else None, given_report,
        target if isinstance(target, str) else None])
    manifest_arn = _manifest_arn(opts.manifest, partition) if opts.manifest else ""
    job_id = str(uuid.uuid4())
    existing = _claim_token(opts, home, job_id)
    if existing:
        return open_job_store(existing, home)
    failpoint(_token_folder(home), "token-claimed")
    try:
        store = create_job_store(job_id, home)
    except BaseException:
        _release_token(opts, home, job_id)
        raise
    report_url = given_report or store.default_report_url()
    job: dict[str, Any] = {
        "JobId": job_id,
        "JobArn": f"arn:{partition}:s3:local:{opts.account_id}:job/{job_id}",
        "ConfirmationRequired": opts.confirmation_required,
        "Status": NEW,
        "Operation": op.amazon_spec(params, partition),
        "Priority": opts.priority,
        "ProgressSummary": {"TotalNumberOfTasks": 0, "NumberOfTasksSucceeded": 0,
                            "NumberOfTasksFailed": 0,
                            "Timers": {"ElapsedTimeInActiveSeconds": 0}},
        "Report": report_spec(report_url, opts.report_scope, opts.report_enabled, partition),
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
        "task_timeout": opts.task_timeout,
        "aws": opts.aws.to_json(),
        "stats": {"retries": 0, "throttled": 0},
        "options": options_to_json(opts),
    }
    doc = {"Job": job, "Batchops": settings}
    store.lock()  # held while preparing: describe-job shows a live Preparing as running
    try:
        try:
            store.write(doc)
        except BaseException:
            store.destroy()
            _release_token(opts, home, job_id)
            raise
        store.log("created", operation=op.alias, manifest=opts.manifest or "generated")
        if on_created is not None:
            on_created(store)
        _prepare(store, doc, opts, fresh=True, listings=listings)
    finally:
        store.unlock()
    return store


def prepare_again(store: JobStore, doc: dict[str, Any]) -> None:
    """Run the preparing pass of a job stopped while Preparing (the caller holds its
    lock); it ends Ready, Suspended, Failed (bad input) or Cancelled like a new one."""
    options = doc["Batchops"].get("options")
    if not options:
        raise JobStateError(f"job {store.job_id} was never prepared (status "
                            f"{doc['Job']['Status']}) and predates resumable preparing; "
                            "create it again")
    store.log("preparing-again")
    _prepare(store, doc, options_from_json(options), fresh=False)


def _prepare(store: JobStore, doc: dict[str, Any], opts: JobOptions, fresh: bool,
             listings: StartedListings | None = None) -> None:
    """The preparing pass: Preparing, then Ready/Suspended (or Failed, with the reason)."""
    job, settings = doc["Job"], doc["Batchops"]
    op = get_operation(opts.operation)
    resolver = Resolver(opts.bucket_map, aws=opts.aws)
    params = settings["params"]
    generator = validate_generator(opts.manifest_generator) if opts.manifest_generator \
        else None
    job_id = store.job_id
    check_transition(job["Status"], PREPARING)  # outside the try: a bug is not bad input
    job["Status"] = PREPARING
    store.write(doc)
    failpoint(store.dir, "preparing")
    try:
        location = opts.manifest
        if generator:
            location = f"listing:{generator['SourceBucket']}"
            if opts.skip_unchanged is not None:  # the difference with the target's listing
                from batchops.schedule.unchanged import prepare_difference

                path = prepare_difference(opts, generator, params, store.dir, resolver, job,
                                          settings, listings)
            else:
                path, descriptor = generate(generator, job_id, store.dir, resolver)
                if descriptor:
                    job["GeneratedManifestDescriptor"] = descriptor
        else:
            path = _fetch_manifest(opts.manifest, store.dir, opts.manifest_etag, resolver,
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
        op.check_manifest(params, info)
        if not op.no_task_work:  # a dry run too: it is the rehearsal of the job
            written, what, read = _locations_to_check(
                resolver, info, params, settings["report_url"] if opts.report_enabled else None)
            preflight(resolver, written, what, read)
            op.preflight(params, resolver)
    except BadInputError as exc:
        fail_job(store, doc, "ManifestInvalid" if isinstance(exc, ManifestError)
                 else "InvalidJobSpec", str(exc))
        raise
    except BatchopsError:
        if fresh:  # nothing worth keeping: no job (and the token is free again)
            store.destroy()
            _release_token(opts, store.home, job_id)
        raise
    except Exception as exc:  # noqa: BLE001 - a store error while preparing: one sentence
        from batchops.storage.outcomes import classify

        message = f"cannot prepare the manifest: {classify(exc).message}"
        fail_job(store, doc, "ManifestUnreadable", message)
        raise BadInputError(message) from None
    settings["manifest"] = info.to_json()
    settings["chunk_size"] = opts.chunk_size or auto_chunk_size(
        info.total_tasks, opts.workers, opts.max_ops_per_second,
        limited=bool(opts.max_bytes_per_second), engine=opts.engine)
    try:  # each chunk's byte range in the job's copy (else derived from rows.idx on reading)
        write_chunk_index(info, settings["chunk_size"])
    except OSError as exc:
        store.log("no-chunk-index", error=exc.__class__.__name__)
    # A job store elsewhere (an object store) keeps the copy and its indexes too.
    store.save_manifest([info.path, info.rows_index, chunk_index_path(info)])
    if not generator:
        fields = ["Bucket", "Key"] + (["VersionId"] if info.columns >= 3 else [])
        job["Manifest"]["Spec"]["Fields"] = fields
        job["Manifest"]["Location"]["ETag"] = opts.manifest_etag or info.digest
    job["ProgressSummary"]["TotalNumberOfTasks"] = info.total_tasks
    control = store.control()
    if control.get("RequestedStatus") == CANCELLED:  # cancelled while it was preparing
        check_transition(job["Status"], CANCELLED)
        job["Status"] = CANCELLED
        job["StatusUpdateReason"] = control.get("StatusUpdateReason") or "cancelled by request"
        job["TerminationDate"] = now_iso()
    elif opts.confirmation_required:
        check_transition(job["Status"], SUSPENDED)
        job["Status"] = SUSPENDED
        job["SuspendedDate"] = now_iso()
        job["SuspendedCause"] = "AwaitingConfirmation"
    else:
        check_transition(job["Status"], READY)
        job["Status"] = READY
    store.write(doc)
    store.log("prepared", total_tasks=info.total_tasks, digest=info.digest,
              status=job["Status"])


def _locations_to_check(resolver: Resolver, info: ManifestInfo, params: dict[str, Any],
                        report: str | None
                        ) -> tuple[list[Location], dict[Location, str], list[Location]]:
    """The buckets a job touches, each with the flag that named it: where it writes (the
    target, the report location: always checked), then the manifest's buckets (checked
    up to a limit)."""
    what: dict[Location, str] = {}
    target = params.get("TargetResource")
    if isinstance(target, str) and target:
        what.setdefault(resolver.location(target), "--target (TargetResource)")
    if report:
        what.setdefault(split_location(report), "--report (Report.Bucket)")
    written = list(what)
    for b in info.buckets:
        what.setdefault(resolver.location(b), f"the manifest's bucket {b}")
    return written, what, [resolver.location(b) for b in info.buckets]


def fail_job(store: JobStore, doc: dict[str, Any], code: str, reason: str) -> None:
    """Move the job to Failed (terminal) with Amazon's FailureReasons."""
    job = doc["Job"]
    check_transition(job["Status"], FAILED)
    job["Status"] = FAILED
    job["FailureReasons"] = [{"FailureCode": code, "FailureReason": fit_text(reason)}]
    job["StatusUpdateReason"] = fit_text(reason)
    job["TerminationDate"] = now_iso()
    store.write(doc)
    store.log("failed", code=code, reason=reason)


def manifest_info(doc: dict[str, Any]) -> ManifestInfo:
    return ManifestInfo.from_json(doc["Batchops"]["manifest"])


