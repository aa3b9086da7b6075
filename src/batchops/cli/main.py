"""The `batchops` command line.

Exit codes: 0 the job completed with no failed task; 1 it completed and some tasks
failed (see the report); 2 bad input (manifest, spec, flag, credential), nothing ran;
3 the job failed or cannot go on (failure threshold, a Failed job resumed, store
unwritable or full, job already running); 4 the job was cancelled (its report lists
the tasks that ran); 130 interrupted (Ctrl-C, SIGTERM): `batchops resume JOB_ID`
continues.

Signals: the CLI, not the library, installs the SIGINT/SIGTERM handlers. While a job
runs they set the stop event the coordinator polls (the job stops, Paused, within a
second); before that (preparing a manifest) they interrupt at once, and the job, left
Preparing, is prepared again by `batchops resume`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import orjson

from batchops.cli.args import build_parser
from batchops.model import errors
from batchops.model.errors import BatchopsError, SpecError


class _Signals:
    """SIGINT/SIGTERM for one command: set `stop`; raise KeyboardInterrupt at once unless
    something polls `stop` (inside `polling()`, where a running job does)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._polled = False

    def install(self) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop.set()
        if not self._polled:
            raise KeyboardInterrupt

    @contextmanager
    def polling(self) -> Iterator[threading.Event]:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self._polled = True
        try:
            yield self.stop
        finally:
            self._polled = False


def _json_out(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"{flag} {item!r}: expected KEY=VALUE")
        out.append((key, value))
    return out


def _tags(items: list[str], flag: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in _pairs(items, flag)]


def _operation_from_args(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The operation's name and Amazon-shaped parameters from the shortcut flags."""
    from batchops.operations import get_operation

    if args.operation.lstrip().startswith("{"):
        try:
            spec = orjson.loads(args.operation)
        except orjson.JSONDecodeError as exc:
            raise SpecError(f"--operation is not valid JSON ({exc})") from None
        if not isinstance(spec, dict) or len(spec) != 1 or \
                not isinstance(next(iter(spec.values())), dict):
            raise SpecError('--operation JSON must have exactly one member, e.g. '
                            '{"S3PutObjectTagging": {"TagSet": []}}')
        from batchops.model.request import validate_operation

        name, params = next(iter(spec.items()))
        alias = get_operation(name).alias
        validate_operation(spec)
        return alias, params
    alias = get_operation(args.operation).alias
    p: dict[str, Any] = _compare_params(args, alias)
    if alias in ("copy", "replicate", "verify"):
        if not args.target and (alias == "replicate" or args.from_listing):
            raise SpecError(f"--operation {alias} needs --target URL (where to copy to)")
        if args.target:  # copy without one: every manifest row names its destination
            p["TargetResource"] = args.target
        if args.target_key_prefix:
            p["TargetKeyPrefix"] = args.target_key_prefix
    if alias == "copy":
        for flag, name in (("storage_class", "StorageClass"),
                           ("metadata_directive", "MetadataDirective"),
                           ("acl", "CannedAccessControlList"),
                           ("checksum_algorithm", "ChecksumAlgorithm"),
                           ("object_lock_mode", "ObjectLockMode"),
                           ("object_lock_retain_until", "ObjectLockRetainUntilDate"),
                           ("object_lock_legal_hold", "ObjectLockLegalHoldStatus")):
            if getattr(args, flag):
                p[name] = getattr(args, flag)
        if args.content_type or args.metadata:
            meta: dict[str, Any] = {"UserMetadata": dict(_pairs(args.metadata, "--metadata"))}
            if args.content_type:
                meta["ContentType"] = args.content_type
            p["NewObjectMetadata"] = meta
        if args.new_tag:
            p["NewObjectTagging"] = _tags(args.new_tag, "--new-tag")
    elif alias == "put-tagging":
        p["TagSet"] = _tags(args.tag, "--tag")
    elif alias == "put-acl":
        if args.acl:
            p["AccessControlPolicy"] = {"CannedAccessControlList": args.acl}
        elif args.grant:
            grants = []
            for perm, grantee in _pairs(args.grant, "--grant"):
                kind, sep, ident = grantee.partition(":")
                if not sep:
                    raise SpecError(f"--grant {perm}={grantee}: expected PERMISSION=TYPE:ID")
                grants.append({"Grantee": {"TypeIdentifier": kind, "Identifier": ident},
                               "Permission": perm})
            p["AccessControlPolicy"] = {"AccessControlList": {
                "Owner": {"ID": args.owner_id or ""}, "Grants": grants}}
    elif alias == "restore":
        if args.days is not None:
            p["ExpirationInDays"] = args.days
        if args.tier:
            p["GlacierJobTier"] = args.tier
    elif alias == "put-retention":
        retention: dict[str, Any] = {}
        if args.retention_mode:
            retention["Mode"] = args.retention_mode
        if args.retain_until:
            retention["RetainUntilDate"] = args.retain_until
        p["Retention"] = retention
        p["BypassGovernanceRetention"] = args.bypass_governance
    elif alias == "put-legal-hold":
        p["LegalHold"] = {"Status": args.legal_hold} if args.legal_hold else None
    elif alias == "invoke":
        p["FunctionArn"] = args.function
        p["InvocationSchemaVersion"] = args.invocation_schema
        if args.user_arg:
            p["UserArguments"] = dict(_pairs(args.user_arg, "--user-arg"))
    elif alias == "compute-checksum":
        p["ChecksumAlgorithm"] = args.checksum_algorithm
        p["ChecksumType"] = args.checksum_type
    elif alias == "update-encryption":
        kms: dict[str, Any] = {"KMSKeyArn": args.kms_key_arn}
        if args.bucket_key_enabled is not None:
            kms["BucketKeyEnabled"] = args.bucket_key_enabled == "true"
        p["ObjectEncryption"] = {"SSEKMS": kms}
    return alias, p


def _compare_params(args: argparse.Namespace, alias: str) -> dict[str, Any]:
    """--compare, --verify and --skip-unchanged (with --manifest; with --from-listing the
    listings are compared instead) as the operation's parameters."""
    from batchops.model.compare import CompareMode

    if args.verify and alias != "copy":
        raise SpecError(f"--verify applies to --operation copy, not {alias}")
    if args.compare and alias != "verify" and not args.verify:
        raise SpecError("--compare applies to --operation verify and to copy --verify")
    if args.skip_unchanged and alias != "copy":
        raise SpecError(f"--skip-unchanged applies to --operation copy, not {alias}")
    p: dict[str, Any] = {}
    mode = CompareMode.parse(args.compare or "etag", "--compare").value
    if alias == "verify":
        p["Compare"] = mode
    elif args.verify:
        p["BatchopsVerify"] = mode
    if args.skip_unchanged and not args.from_listing:
        p["BatchopsSkipUnchanged"] = CompareMode.parse(args.skip_unchanged,
                                                       "--skip-unchanged").value
    return p


def _aws_from_args(args: argparse.Namespace) -> Any:
    """--profile, --region and --endpoint-url (names only: job.json keeps them)."""
    from batchops.model.spec import AwsSettings

    if args.endpoint_url:
        from batchops.storage.aws import check_endpoint

        check_endpoint(args.endpoint_url, "--endpoint-url")
    if args.region is not None and not args.region.strip():
        raise SpecError("--region needs a region name, e.g. us-west-2")
    return AwsSettings(args.profile or None, args.region or None, args.endpoint_url or None)


def _job_store_url(args: argparse.Namespace) -> str:
    """--job-store; an S3 one with no settings of its own takes the command's
    --profile/--region/--endpoint-url, as every bucket does (in its URL's query, so
    that every process of the job reaches it the same way)."""
    url: str = args.job_store
    if not url.startswith(("s3://", "s3a://")) or "?" in url:
        return url
    from urllib.parse import urlencode

    aws = _aws_from_args(args)
    query = {k: v for k, v in (("profile", aws.profile), ("region", aws.region),
                               ("endpoint_url", aws.endpoint_url)) if v}
    return f"{url}?{urlencode(query)}" if query else url


def _listing_filter(args: argparse.Namespace) -> dict[str, Any]:
    """The generator's Filter that `run --from-listing`'s filter flags make."""
    flt: dict[str, Any] = {}
    names = {k: v for k, v in (("MatchAnyPrefix", args.prefix),
                               ("MatchAnySuffix", args.suffix),
                               ("MatchAnySubstring", args.substring)) if v}
    if names:
        flt["KeyNameConstraint"] = names
    for flag, name in (("created_after", "CreatedAfter"), ("created_before", "CreatedBefore"),
                       ("larger_than", "ObjectSizeGreaterThanBytes"),
                       ("smaller_than", "ObjectSizeLessThanBytes")):
        if getattr(args, flag) is not None:
            flt[name] = getattr(args, flag)
    if args.match_storage_class:
        flt["MatchAnyStorageClass"] = args.match_storage_class
    return flt


def _start_listings(args: argparse.Namespace) -> Any:
    """`run --from-listing URL --operation copy --target URL --skip-unchanged`: both
    listings, started before the rest is imported and the job is made (they list
    meanwhile: schedule/unchanged.py `start_listings`); None for any other run, or flags
    that do not validate (they are refused in one sentence when the job is made)."""
    if not (args.from_listing and args.skip_unchanged and args.target and not args.manifest
            and args.operation in ("copy", "S3PutObjectCopy")):
        return None
    from batchops.schedule.unchanged import start_listings
    from batchops.storage.locations import parse_bucket_map

    try:
        return start_listings(args.from_listing, args.target, _listing_filter(args),
                              args.target_key_prefix or "", parse_bucket_map(args.bucket_map),
                              _aws_from_args(args))
    except BatchopsError:
        return None


def _options_from_args(args: argparse.Namespace) -> Any:
    from batchops.model.spec import JobOptions
    from batchops.storage.locations import parse_bucket_map

    operation, params = _operation_from_args(args)
    generator = None
    if args.from_listing:
        if args.manifest:
            raise SpecError("give --manifest or --from-listing, not both")
        flt = _listing_filter(args)
        generator = {"SourceBucket": args.from_listing, "EnableManifestOutput": False,
                     "Filter": flt}
        if args.delete_extraneous and flt:
            raise SpecError("--delete-extraneous deletes every target object the whole "
                            "listing lacks; it cannot be combined with listing filters "
                            "(--prefix, --suffix, ...): list a narrower URL instead")
    elif not args.manifest:
        raise SpecError("give --manifest PATH_OR_URL (or --from-listing URL)")
    if args.delete_extraneous:
        if not (args.from_listing and args.skip_unchanged):
            raise SpecError("--delete-extraneous needs --from-listing URL and --skip-unchanged "
                            "MODE (the extraneous objects are those of the target's listing "
                            "that the source's lacks)")
        if not (args.confirm_delete or args.dry_run):
            raise SpecError("--delete-extraneous removes objects for good: add "
                            "--confirm-delete, or --dry-run to list what would be deleted")
    skip = None
    if args.from_listing and args.skip_unchanged:
        from batchops.model.compare import CompareMode

        skip = CompareMode.parse(args.skip_unchanged, "--skip-unchanged").value
    return JobOptions(
        manifest=args.manifest or "", manifest_generator=generator, operation=operation,
        params=params, report=args.report, failure_ratio=args.failure_threshold,
        max_ops_per_second=args.max_ops_per_second,
        max_bytes_per_second=args.max_bytes_per_second, task_timeout=args.task_timeout,
        report_scope=args.report_scope, chunk_size=args.chunk_size,
        engine=getattr(args, "engine", "local"),
        bucket_map=parse_bucket_map(args.bucket_map), workers=args.workers,
        concurrency=args.concurrency, max_attempts=args.max_attempts,
        description=args.description, priority=args.priority, dry_run=args.dry_run,
        confirmed=args.confirm_delete, aws=_aws_from_args(args), skip_unchanged=skip,
    )


def _announce(store: Any) -> None:
    """The job id, on stderr, as soon as the job exists (json mode too): a job stopped
    while it prepares is resumed by this id."""
    print(f"job {store.job_id}", file=sys.stderr, flush=True)


def _create_announced(opts: Any, args: argparse.Namespace, announce: bool = True,
                      listings: Any = None) -> Any:
    """create_job, printing the job id before the preparing pass (`announce`; create-job
    prints it on stdout at the end instead); a stop while preparing leaves the job
    Preparing, and says how to continue it. `listings`: create_job's."""
    from batchops.schedule.create import create_job

    created: list[Any] = []

    def on_created(store: Any) -> None:
        created.append(store)
        if getattr(args, "notifier", None) is not None:
            args.notifier.watch(store)  # JobCreated now; then each status it moves to
        if announce:
            _announce(store)

    try:
        return create_job(opts, on_created=on_created, listings=listings)
    except KeyboardInterrupt:
        if created:
            print(f"batchops: interrupted while preparing; continue with: batchops resume "
                  f"{created[0].job_id}", file=sys.stderr)
            raise SystemExit(errors.EXIT_INTERRUPTED) from None
        raise


def _run_and_report(store: Any, args: argparse.Namespace, prestarted: Any = None,
                    announced: bool = False, aws: Any = None, report: str | None = None,
                    backend: Any = None, settings: dict[str, Any] | None = None) -> int:
    from batchops.cli.progress import Display
    from batchops.model.status import CANCELLED, COMPLETE, FAILED, PAUSED
    from batchops.schedule.coordinator import run_job

    started = time.monotonic()
    if not announced:
        _announce(store)
    signals: _Signals = args.signals
    if getattr(args, "notifier", None) is not None:
        args.notifier.watch(store)
    try:
        with Display(enabled=not args.no_progress) as display, signals.polling() as stop:
            doc = run_job(store, display.update,
                          in_process=getattr(args, "in_process", False),
                          prestarted=prestarted, stop=stop, aws=aws, report_url=report,
                          engine=getattr(args, "engine", "local"),  # demo: local
                          ray_address=getattr(args, "ray_address", None),
                          on_workers=display.workers, backend=backend, settings=settings)
    except KeyboardInterrupt:  # before any task ran (its checkpoint is as it was)
        print(f"batchops: interrupted; continue with: batchops resume {store.job_id}",
              file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    job = doc["Job"]
    summary = job["ProgressSummary"]
    ok, failed = summary["NumberOfTasksSucceeded"], summary["NumberOfTasksFailed"]
    if args.json:
        _json_out({"Job": job})
    else:
        elapsed = time.monotonic() - started
        print(f"job {store.job_id} {job['Status']}: {ok:,} succeeded, {failed:,} failed, "
              f"{summary['TotalNumberOfTasks']:,} total in {elapsed:.1f}s")
        if doc["Batchops"].get("dry_run"):
            print(f"dry run of {doc['Batchops']['operation']}: {ok:,} objects are there and "
                  f"would be processed, {failed:,} are missing or unreadable (the report's "
                  "failed rows); nothing was changed")
        if doc["Batchops"].get("skip_unchanged"):
            from batchops.manifest.diff import DiffCounts
            from batchops.schedule.unchanged import describe_counts

            print(describe_counts(DiffCounts(**doc["Batchops"]["skip_unchanged"])))
        report = doc["Batchops"].get("report_manifest")
        if report:
            print(f"report: {report}")
        if job.get("StatusUpdateReason") and job["Status"] != COMPLETE:
            print(job["StatusUpdateReason"], file=sys.stderr)
    if job["Status"] == PAUSED:
        if doc["Batchops"].get("last_stop") == "fatal":
            return errors.EXIT_JOB_FAILED
        print(f"stopped; continue with: batchops resume {store.job_id}", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    if job["Status"] == FAILED:
        return errors.EXIT_JOB_FAILED
    if job["Status"] == CANCELLED:
        return errors.EXIT_CANCELLED
    return errors.EXIT_TASKS_FAILED if failed else errors.EXIT_OK


def _workers_worth_starting(args: argparse.Namespace) -> int:
    """`--workers`, or fewer when a local manifest has fewer chunks than that (estimated
    from its size: a small job does not start, and then kill, workers it cannot use)."""
    from batchops.manifest.reader import estimate_rows
    from batchops.model.chunk import auto_chunk_size, chunk_count, default_workers

    n = args.workers or default_workers()
    rows = estimate_rows(args.manifest) if args.manifest else None
    if rows is None:
        return n
    size = args.chunk_size or auto_chunk_size(rows, n, args.max_ops_per_second,
                                              bool(args.max_bytes_per_second),
                                              getattr(args, "engine", "local"))
    return max(1, min(n, chunk_count(rows, max(1, size))))


def cmd_run(args: argparse.Namespace) -> int:
    prestarted = []
    _check_engine(args)
    if not args.in_process and args.engine == "local" and \
            not (args.from_listing and args.skip_unchanged):
        # Worker processes start while this process imports the rest and prepares the
        # manifest (about 0.2 s saved on every run). Not for a listing diff: most often
        # little or nothing is left to copy, and the workers would compete with the
        # listing for the cores.
        from batchops.schedule.processes import prestart_workers

        prestarted = prestart_workers(_workers_worth_starting(args))
    backend = None
    if args.engine == "ray":  # actors start while the job is created and prepared
        from batchops.schedule.raybackend import RayBackend

        backend = RayBackend(args.ray_address)
        backend.prestart(_workers_worth_starting(args))
    try:
        listings = _start_listings(args)  # they list while the rest is imported
        opts = _options_from_args(args)
        store = _create_announced(opts, args, listings=listings)
    except BaseException:
        for w in prestarted:
            w.discard()
        if backend is not None:
            backend.discard_unused()
        raise
    code = _run_and_report(store, args, prestarted, announced=True, backend=backend)
    if args.delete_extraneous:
        code = max(code, _delete_extraneous(store, opts, args))
    return code


def _delete_extraneous(store: Any, opts: Any, args: argparse.Namespace) -> int:
    """--delete-extraneous: once the copy job is Complete, a second job, of operation
    delete, over its extraneous.csv (its id printed; its report is its own)."""
    from batchops.model.status import COMPLETE
    from batchops.schedule.unchanged import extraneous_job_options

    doc = store.read()
    if doc["Job"]["Status"] != COMPLETE:
        print(f"batchops: job {store.job_id} is {doc['Job']['Status']}, not Complete: no "
              "extraneous object was deleted (run the command again once it completes)",
              file=sys.stderr)
        return errors.EXIT_OK
    if not doc["Batchops"]["skip_unchanged"]["extraneous"]:
        print("no extraneous object at the target: nothing to delete", file=sys.stderr)
        return errors.EXIT_OK
    delete = _create_announced(extraneous_job_options(opts, store.job_id, store.dir), args,
                               announce=False)
    print(f"deleting the extraneous objects: job {delete.job_id}", file=sys.stderr)
    return _run_and_report(delete, args, announced=True, backend=None)


def _check_engine(args: argparse.Namespace) -> None:
    """Refuse flag combinations the engine cannot run, before anything is created."""
    if args.engine == "ray":
        if getattr(args, "in_process", False):
            raise SpecError("--in-process and --engine ray exclude each other")
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise SpecError("--engine ray needs Ray: pip install 'batchops[ray]'")
        from batchops.schedule.raybackend import RayError, connect

        try:  # join (or start) Ray now: a cluster that cannot be had stops us here
            connect(args.ray_address)
        except RayError as exc:
            raise SpecError(str(exc)) from None
    elif args.ray_address:
        raise SpecError("--ray-address needs --engine ray")


def cmd_resume(args: argparse.Namespace) -> int:
    from batchops.cli.jobadmin import check_report_change, given_settings
    from batchops.results.stores import open_job_store

    _check_engine(args)
    aws = _aws_from_args(args)  # given: the job's settings from now on
    settings = given_settings(args)  # likewise
    store = open_job_store(args.job_id)
    report = None
    if args.report:
        from batchops.storage.locations import normalise_url

        check_report_change(store)
        report = normalise_url(args.report, "--report")
        report = report if "://" in report else "s3://" + report
    return _run_and_report(store, args, aws=aws or None, report=report, settings=settings)


def cmd_retry_failed(args: argparse.Namespace) -> int:
    from batchops.cli.jobadmin import retry_job_options

    _check_engine(args)
    opts, count = retry_job_options(args)
    if opts is None:
        print(f"job {args.job_id} has no failed task: nothing to retry", file=sys.stderr)
        return errors.EXIT_OK
    print(f"retrying the {count:,} failed task{'s' if count != 1 else ''} of job "
          f"{args.job_id}", file=sys.stderr)
    return _run_and_report(_create_announced(opts, args), args, announced=True)


def cmd_describe(args: argparse.Namespace) -> int:
    from batchops.results.stores import open_job_store
    from batchops.schedule.control import describe

    store = open_job_store(args.job_id)
    out = describe(store)
    if args.extended:
        settings = store.read()["Batchops"]
        out["Batchops"] = {
            "Retries": settings.get("stats", {}).get("retries", 0),
            "Throttled": settings.get("stats", {}).get("throttled", 0),
            "Bytes": settings.get("stats", {}).get("bytes", 0),  # moved through batchops
            "Workers": settings.get("workers"), "Concurrency": settings.get("concurrency"),
            "ChunkSize": settings.get("chunk_size"),
            "ReportManifest": settings.get("report_manifest"),
            "ManifestDigest": (settings.get("manifest") or {}).get("digest"),
        }
        if settings.get("skip_unchanged"):  # run --from-listing --skip-unchanged
            out["Batchops"]["SkippedUnchanged"] = settings["skip_unchanged"]
    _json_out(out)
    return errors.EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from batchops.manifest.diff import diff_stores
    from batchops.model.compare import CompareMode
    from batchops.schedule.unchanged import content_decider, describe_counts
    from batchops.storage.locations import Resolver, parse_bucket_map

    mode = CompareMode.parse(args.compare, "--compare")
    resolver = Resolver(parse_bucket_map(args.bucket_map), aws=_aws_from_args(args))
    out = os.path.abspath(args.out)
    for flag, path in (("--out", args.out), ("--extraneous-out", args.extraneous_out)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise SpecError(f"{flag} {path}: no such folder for it")
    work = tempfile.mkdtemp(prefix=".batchops-diff-", dir=os.path.dirname(out))
    try:
        counts, _, _ = diff_stores(args.source, args.target, mode, work, resolver,
                                   decider=content_decider(resolver))
        os.replace(os.path.join(work, "copy.csv"), out)
        if args.extraneous_out:
            shutil.move(os.path.join(work, "extraneous.csv"), args.extraneous_out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        _json_out(counts.to_json())
    else:
        print(describe_counts(counts))
        print(f"manifest: {out} ({counts.to_copy:,} rows)")
    return errors.EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from batchops.schedule.control import list_jobs

    _json_out(list_jobs(statuses=tuple(args.job_statuses), max_results=args.max_results,
                        next_token=args.next_token))
    return errors.EXIT_OK


def cmd_create_job(args: argparse.Namespace) -> int:
    from batchops.model.request import load_json_arg, options_from_request
    from batchops.storage.locations import parse_bucket_map

    request: dict[str, Any] = {}
    if args.cli_input_json:
        request = load_json_arg(args.cli_input_json, "--cli-input-json")
        if not isinstance(request, dict):
            raise SpecError("--cli-input-json must be a JSON object (CreateJob's request)")
    for flag, member in (("operation", "Operation"), ("manifest", "Manifest"),
                         ("report", "Report"), ("tags", "Tags"),
                         ("manifest_generator", "ManifestGenerator")):
        if getattr(args, flag):
            request[member] = load_json_arg(getattr(args, flag), "--" + flag.replace("_", "-"))
    for flag, member in (("priority", "Priority"), ("client_request_token", "ClientRequestToken"),
                         ("description", "Description"), ("account_id", "AccountId"),
                         ("role_arn", "RoleArn"),
                         ("confirmation_required", "ConfirmationRequired")):
        if getattr(args, flag) is not None:
            request[member] = getattr(args, flag)
    opts = options_from_request(
        request, bucket_map=parse_bucket_map(args.bucket_map), workers=args.workers,
        concurrency=args.concurrency, chunk_size=args.chunk_size,
        failure_ratio=args.failure_threshold, max_ops_per_second=args.max_ops_per_second,
        aws=_aws_from_args(args))
    store = _create_announced(opts, args, announce=False)
    _json_out({"JobId": store.job_id})
    return errors.EXIT_OK


def cmd_runner(args: argparse.Namespace) -> int:
    from batchops.schedule.queue import run_jobs

    _check_engine(args)
    aws = _aws_from_args(args) or None  # given: every job's settings from now on
    worst = [errors.EXIT_OK]

    def report(job_id: str, doc: dict[str, Any]) -> None:
        job = doc["Job"]
        failed = job.get("ProgressSummary", {}).get("NumberOfTasksFailed", 0)
        code = (errors.EXIT_JOB_FAILED if job["Status"] in ("Error", "Failed")
                else errors.EXIT_TASKS_FAILED if failed else errors.EXIT_OK)
        worst[0] = max(worst[0], code)
        if args.json:
            sys.stdout.write(orjson.dumps({"JobId": job_id, "Status": job["Status"]}).decode()
                             + "\n")
        else:
            print(f"job {job_id} {job['Status']}"
                  + (f": {job['StatusUpdateReason']}" if job.get("StatusUpdateReason") else ""))
        sys.stdout.flush()

    signals: _Signals = args.signals
    with signals.polling() as stop:
        run_jobs(watch=args.watch, poll=args.poll, on_job=report, stop=stop.is_set,
                 stop_event=stop, engine=args.engine, ray_address=args.ray_address,
                 aws=aws, on_store=args.notifier.watch if args.notify else None)
    return errors.EXIT_INTERRUPTED if stop.is_set() else worst[0]


def cmd_serve(args: argparse.Namespace) -> int:
    from batchops.serve.server import config_from_args, serve

    config = config_from_args(args)
    signals: _Signals = args.signals
    with signals.polling() as stop:
        return serve(config, stop, notifier=getattr(args, "notifier", None))


def cmd_update_status(args: argparse.Namespace) -> int:
    from batchops.results.stores import open_job_store
    from batchops.schedule.control import update_job_status

    _json_out(update_job_status(open_job_store(args.job_id), args.requested_job_status,
                                args.status_update_reason))
    return errors.EXIT_OK


def cmd_update_priority(args: argparse.Namespace) -> int:
    from batchops.results.stores import open_job_store
    from batchops.schedule.control import update_job_priority

    _json_out(update_job_priority(open_job_store(args.job_id), args.priority))
    return errors.EXIT_OK


def cmd_tagging(args: argparse.Namespace) -> int:
    from batchops.model.request import load_json_arg
    from batchops.results.stores import open_job_store
    from batchops.schedule.control import delete_job_tagging, job_tags, put_job_tagging

    store = open_job_store(args.job_id)
    if args.command == "get-job-tagging":
        _json_out({"Tags": job_tags(store)})
    elif args.command == "put-job-tagging":
        put_job_tagging(store, load_json_arg(args.tags, "--tags"))
    else:
        delete_job_tagging(store)
    return errors.EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from batchops.cli.demo import make_sample
    from batchops.model.spec import JobOptions
    from batchops.results.jobstore import batchops_home

    root = os.path.abspath(args.dir or os.path.join(batchops_home(), "demo"))
    manifest = make_sample(root, args.objects)
    if not args.json:
        print(f"made {args.objects:,} sample objects in {root}/source", file=sys.stderr)
    store = _create_announced(JobOptions(
        manifest=manifest, operation="copy",
        params={"TargetResource": f"file://{root}/target"},
        bucket_map=(("demo-source", f"file://{root}/source"),), workers=args.workers,
        description="batchops demo: copy sample objects between local folders"), args)
    return _run_and_report(store, args, announced=True)


def cmd_bench(args: argparse.Namespace) -> int:
    from batchops.bench import report

    if args.target in ("compare", "show"):
        want = 2 if args.target == "compare" else 1
        if len(args.results) != want:
            raise SpecError(f"bench {args.target} takes {want} result file"
                            f"{'s' if want > 1 else ''} (written by --out), not "
                            f"{len(args.results)}")
        docs = [report.read(path) for path in args.results]
        if args.target == "show":
            if args.json:
                _json_out({k: v for k, v in docs[0].items() if k != "histograms"})
            else:
                print(report.show(docs[0]))
            return errors.EXIT_OK
        result = report.compare(docs[0], docs[1])
        if args.json:
            _json_out(result)
        else:
            print(report.compare_table(result))
        return errors.EXIT_OK
    if args.results:
        raise SpecError(f"bench {args.target}: unexpected arguments {' '.join(args.results)}")
    spec = _bench_spec(args)
    from batchops.bench.driver import run_bench
    from batchops.bench.spec import READS_OBJECTS

    live = not args.no_progress and sys.stderr.isatty()

    def progress(p: dict[str, Any]) -> None:
        if live and p.get("phase") == "preparing" and spec.workload in READS_OBJECTS:
            sys.stderr.write(f"preparing {spec.objects * spec.workers:,} objects "
                             "(not counted)...\n")
        elif live and "phase" not in p:
            left = f", {p['remaining']:.0f} s left" if p["remaining"] is not None else ""
            sys.stderr.write(f"\r{p['second']} s: {p['ops']:,} ops, {p['ops_per_s']:,.0f} "
                             f"ops/s, {p['mib_per_s']:.2f} MiB/s, p50 {p['p50_ms']:.2f} ms, "
                             f"p99 {p['p99_ms']:.2f} ms, {p['errors']} errors{left}   ")
            sys.stderr.flush()

    doc = run_bench(spec, progress)
    if live:
        sys.stderr.write("\n")
    if args.out:
        report.write_parquet(doc, args.out)
    if args.plot:
        report.plot(doc, args.plot)
    if args.json:
        _json_out(doc)
    else:
        print(report.table(doc))
    return errors.EXIT_OK


def _bench_spec(args: argparse.Namespace) -> Any:
    from batchops.bench.spec import BenchSpec, parse_duration, parse_mix, parse_size
    from batchops.storage.locations import normalise_url

    url = normalise_url(args.target, "bench URL")
    if "://" not in url:
        url = "s3://" + url
    size_range = None
    if args.size_random:
        low, sep, high = args.size_random.partition("..")
        if not sep:
            raise SpecError(f"--size-random {args.size_random!r}: expected LOW..HIGH, "
                            "e.g. 1KiB..8MiB")
        size_range = (parse_size(low, "--size-random"), parse_size(high, "--size-random"))
    if args.plot and not args.plot.endswith(".png"):
        raise SpecError(f"--plot {args.plot}: the picture is a PNG; name it something.png")
    extra: dict[str, Any] = {"mix": parse_mix(args.mix)} if args.mix else {}
    spec = BenchSpec(
        url=url, workload=args.workload,
        sizes=tuple(parse_size(s, "--size") for s in args.size.split(",")),
        size_range=size_range, objects=args.objects, concurrency=args.concurrency,
        workers=args.workers, duration=parse_duration(args.duration, "--duration"),
        count=args.count, warmup=parse_duration(args.warmup, "--warmup"),
        autoterm=args.autoterm, autoterm_segments=args.autoterm_segments,
        autoterm_tolerance=args.autoterm_pct / 100, prefix=args.prefix, keep=args.keep,
        retries=args.retries, aws=_aws_from_args(args), **extra)
    spec.check()
    return spec


def _admin(name: str) -> Any:
    """A command of cli/jobadmin.py, imported when it runs."""
    def command(args: argparse.Namespace) -> int:
        from batchops.cli import jobadmin

        code: int = getattr(jobadmin, name)(args)
        return code
    return command


COMMANDS = MappingProxyType({
            "bench": cmd_bench, "run": cmd_run, "resume": cmd_resume, "describe-job": cmd_describe,
            "diff": cmd_diff,
            "list-jobs": cmd_list, "demo": cmd_demo, "create-job": cmd_create_job,
            "runner": cmd_runner, "serve": cmd_serve, "update-job-status": cmd_update_status,
            "update-job-priority": cmd_update_priority, "get-job-tagging": cmd_tagging,
            "put-job-tagging": cmd_tagging, "delete-job-tagging": cmd_tagging,
            "retry-failed": cmd_retry_failed, "delete-job": _admin("cmd_delete_job"),
            "prune": _admin("cmd_prune")})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "resume":
        parser.parse_args(argv)  # argparse's own refusal (exit 2)
    if getattr(args, "job_store", None):  # the job home, for this process and its workers
        os.environ["BATCHOPS_HOME"] = _job_store_url(args)
    args.signals = _Signals()
    if threading.current_thread() is threading.main_thread():
        args.signals.install()
    try:
        home = os.environ.get("BATCHOPS_HOME", "")
        if hasattr(args, "job_store") and "://" in home and not home.startswith("file://"):
            from batchops.results.objectjobs import check_home

            check_home(home, "--job-store" if args.job_store else "BATCHOPS_HOME")
        if unknown:  # resume: flags that would change what the job does
            from batchops.cli.jobadmin import refuse_unknown

            refuse_unknown(args.command, unknown)
        if getattr(args, "notify", None):  # a bad value is refused before anything starts
            from batchops.schedule.notify import Notifier

            args.notifier = Notifier.from_flag(args.notify)
        return COMMANDS[args.command](args)
    except BatchopsError as exc:
        print(f"batchops: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("batchops: interrupted", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one sentence, traceback on request
        if os.environ.get("BATCHOPS_DEBUG"):
            raise
        print(f"batchops: internal error: {type(exc).__name__}: {exc} "
              "(set BATCHOPS_DEBUG=1 for a traceback)", file=sys.stderr)
        return errors.EXIT_JOB_FAILED
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a panic in a Rust client library (pyo3's PanicException)
        if os.environ.get("BATCHOPS_DEBUG"):
            raise
        print(f"batchops: internal error: a client library failed ({type(exc).__name__}: "
              f"{exc}); the job keeps its checkpoint and `batchops resume` continues it "
              "(set BATCHOPS_DEBUG=1 for a traceback)", file=sys.stderr)
        return errors.EXIT_JOB_FAILED
    finally:
        if getattr(args, "notifier", None) is not None:
            args.notifier.close()  # a few seconds for the last events, never more


def entry() -> None:
    """The `batchops` command: `main`, then an immediate exit.

    Everything a command writes is durable before `main` returns (atomic renames,
    fsync), and every worker has been joined, so the interpreter's own shutdown (about
    50 ms of tearing down Polars' thread pool and modules, measured) buys nothing.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass  # a closed pipe (`batchops ... | head`): the reader chose to stop
    os._exit(code)


if __name__ == "__main__":
    entry()
