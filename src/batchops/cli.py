"""The `batchops` command line.

Exit codes: 0 the job completed with no failed task; 1 it completed and some tasks
failed (see the report); 2 bad input (manifest, spec, flag, credential), nothing ran;
3 the job failed (failure threshold, store unwritable, job already running);
130 interrupted (Ctrl-C, SIGTERM): `batchops resume JOB_ID` continues.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import orjson

from . import errors
from .errors import BatchopsError, SpecError

EPILOG = """\
exit codes:
  0    the job completed and every task succeeded
  1    the job completed and some tasks failed (see the report)
  2    bad input (manifest, spec, flag, credential); nothing ran
  3    the job failed (failure threshold, store unwritable, job already running)
  130  interrupted (Ctrl-C, SIGTERM); `batchops resume JOB_ID` continues

environment:
  BATCHOPS_HOME       job store folder (default ~/.batchops)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
  AWS_ENDPOINT_URL    S3 settings (AWS_ENDPOINT_URL for S3-compatible servers)
"""


def _json_out(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, metavar="PATH_OR_URL",
                   help="manifest: CSV bucket,key[,versionId] (keys URL-encoded), JSON Lines "
                        "or {\"entries\": [...]} JSON; a local path or a store URL")
    p.add_argument("--operation", required=True, metavar="OP",
                   help="operation: copy (S3PutObjectCopy) or noop (benchmark the runner)")
    p.add_argument("--target", metavar="URL",
                   help="copy: target bucket (name, arn:aws:s3:::name, s3://b/prefix, "
                        "file:///folder, gs://b, az://account/container)")
    p.add_argument("--target-key-prefix", default="", metavar="P",
                   help="copy: key prefix at the target (Amazon's TargetKeyPrefix: P/key)")
    p.add_argument("--report", metavar="URL",
                   help="completion report location (file:///folder or s3://bucket/prefix; "
                        "default: the job folder)")
    p.add_argument("--report-scope", default="AllTasks", choices=("AllTasks", "FailedTasksOnly"))
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="worker processes (default: one per core)")
    p.add_argument("--concurrency", type=int, default=64, metavar="M",
                   help="tasks in flight per worker (default 64)")
    p.add_argument("--chunk-size", type=int, default=10_000, metavar="K",
                   help="manifest rows per chunk: the unit of checkpoint and report part "
                        "(default 10000)")
    p.add_argument("--max-attempts", type=int, default=5, metavar="N",
                   help="attempts per task for retryable errors (default 5)")
    p.add_argument("--bucket-map", action="append", default=[], metavar="NAME=URL",
                   help="send a bucket name to any store URL (repeatable)")
    p.add_argument("--description", default="", metavar="TEXT")
    p.add_argument("--priority", type=int, default=10, metavar="N")
    p.add_argument("--in-process", action="store_true",
                   help="run tasks in this process instead of worker processes (needed for "
                        "memory:// stores)")
    _add_output_flags(p)


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the final job as DescribeJob JSON instead of a summary")
    p.add_argument("--no-progress", action="store_true", help="no progress display")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchops",
        description="Amazon S3 Batch Operations as a program you run yourself: one "
                    "operation over every object of a manifest, resumable after any stop, "
                    "with Amazon-format completion reports.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="create a job and run it in the foreground",
        description="Create a job from a manifest and run it now, with live progress. "
                    "Ctrl-C stops it with its checkpoint saved; `batchops resume` continues.",
        epilog=EPILOG + "\nexample:\n  batchops run --manifest m.csv --operation copy "
                        "--target s3://backup --target-key-prefix 2024\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_flags(run)

    resume = sub.add_parser(
        "resume", help="continue an interrupted or killed job from its checkpoint",
        description="Continue a job from its checkpoint: finished chunks are skipped, "
                    "chunks that were running run again. Refuses a manifest that changed.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    resume.add_argument("job_id", metavar="JOB_ID")
    resume.add_argument("--in-process", action="store_true",
                        help="run tasks in this process instead of worker processes")
    _add_output_flags(resume)

    describe = sub.add_parser(
        "describe-job", help="print a job as DescribeJob JSON",
        description="Print {\"Job\": {...}} in the shape of Amazon's DescribeJob. Works "
                    "while the job runs in another process.")
    describe.add_argument("--job-id", required=True, metavar="ID")
    describe.add_argument("--account-id", help="accepted and ignored (Amazon compatibility)")

    lst = sub.add_parser("list-jobs", help="print jobs as ListJobs JSON",
                         description="Print {\"Jobs\": [...]} in the shape of Amazon's "
                                     "ListJobs, newest first.")
    lst.add_argument("--job-statuses", nargs="*", default=[], metavar="STATUS")
    lst.add_argument("--account-id", help="accepted and ignored (Amazon compatibility)")

    demo = sub.add_parser(
        "demo", help="make sample objects in a local folder and copy them with a job",
        description="Create a few thousand sample objects under a local folder, run a copy "
                    "job on them with live progress, and print the job id, the summary and "
                    "where the report is.")
    demo.add_argument("--dir", default=None, metavar="FOLDER",
                      help="where to make the sample objects (default: $BATCHOPS_HOME/demo)")
    demo.add_argument("--objects", type=int, default=5000, metavar="N")
    demo.add_argument("--workers", type=int, default=0, metavar="N")
    _add_output_flags(demo)
    return parser


def _options_from_args(args: argparse.Namespace) -> Any:
    from .job import JobOptions
    from .stores import parse_bucket_map

    params: dict[str, Any] = {}
    if args.target:
        params["TargetResource"] = args.target
    if args.target_key_prefix:
        params["TargetKeyPrefix"] = args.target_key_prefix
    if args.operation in ("copy", "S3PutObjectCopy") and not args.target:
        raise SpecError("--operation copy needs --target URL (where to copy to)")
    return JobOptions(
        manifest=args.manifest, operation=args.operation, params=params, report=args.report,
        report_scope=args.report_scope, chunk_size=args.chunk_size,
        bucket_map=parse_bucket_map(args.bucket_map), workers=args.workers,
        concurrency=args.concurrency, max_attempts=args.max_attempts,
        description=args.description, priority=args.priority,
    )


def _run_and_report(store: Any, args: argparse.Namespace) -> int:
    from .engine import run_job
    from .job import COMPLETE, FAILED, PAUSED
    from .progress import Display

    started = time.monotonic()
    if not args.json:
        print(f"job {store.job_id}", file=sys.stderr, flush=True)
    with Display(enabled=not args.no_progress) as display:
        doc = run_job(store, display.update, in_process=getattr(args, "in_process", False))
    job = doc["Job"]
    summary = job["ProgressSummary"]
    ok, failed = summary["NumberOfTasksSucceeded"], summary["NumberOfTasksFailed"]
    if args.json:
        _json_out({"Job": job})
    else:
        elapsed = time.monotonic() - started
        print(f"job {store.job_id} {job['Status']}: {ok:,} succeeded, {failed:,} failed, "
              f"{summary['TotalNumberOfTasks']:,} total in {elapsed:.1f}s")
        report = doc["Batchops"].get("report_manifest")
        if report:
            print(f"report: {report}")
        if job.get("StatusUpdateReason") and job["Status"] != COMPLETE:
            print(job["StatusUpdateReason"], file=sys.stderr)
    if job["Status"] == PAUSED:
        print(f"stopped; continue with: batchops resume {store.job_id}", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    if job["Status"] == FAILED:
        return errors.EXIT_JOB_FAILED
    return errors.EXIT_TASKS_FAILED if failed else errors.EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .job import create_job

    store = create_job(_options_from_args(args))
    return _run_and_report(store, args)


def cmd_resume(args: argparse.Namespace) -> int:
    from .jobstore import JobStore

    return _run_and_report(JobStore.open(args.job_id), args)


def cmd_describe(args: argparse.Namespace) -> int:
    from .job import describe
    from .jobstore import JobStore

    _json_out(describe(JobStore.open(args.job_id)))
    return errors.EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from .job import list_jobs

    _json_out(list_jobs(statuses=tuple(args.job_statuses)))
    return errors.EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import make_sample
    from .job import JobOptions, create_job
    from .jobstore import batchops_home

    root = os.path.abspath(args.dir or os.path.join(batchops_home(), "demo"))
    manifest = make_sample(root, args.objects)
    if not args.json:
        print(f"made {args.objects:,} sample objects in {root}/source", file=sys.stderr)
    store = create_job(JobOptions(
        manifest=manifest, operation="copy",
        params={"TargetResource": f"file://{root}/target"},
        bucket_map=(("demo-source", f"file://{root}/source"),), workers=args.workers,
        description="batchops demo: copy sample objects between local folders"))
    return _run_and_report(store, args)


COMMANDS = {"run": cmd_run, "resume": cmd_resume, "describe-job": cmd_describe,
            "list-jobs": cmd_list, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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


if __name__ == "__main__":
    sys.exit(main())
