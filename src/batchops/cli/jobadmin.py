"""Commands that manage jobs rather than run them: `delete-job`, `prune`, and the parts
of `retry-failed` and `resume` that read their flags (cli/main.py runs the jobs)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from batchops.model import errors
from batchops.model.errors import JobStateError, SpecError

#: resume's settings that change how fast a job runs, not what it does.
RESUME_SETTINGS = ("workers", "concurrency", "max_ops_per_second", "max_bytes_per_second")


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """--workers, --concurrency, --max-ops-per-second, --max-bytes-per-second as given
    (checked), by their names in job.json."""
    out = {name: getattr(args, name) for name in RESUME_SETTINGS
           if getattr(args, name, None) is not None}
    if out.get("workers", 0) < 0:
        raise SpecError("--workers must be 0 (one per core) or more")
    if out.get("concurrency", 1) < 1:
        raise SpecError("--concurrency must be at least 1")
    if out.get("max_ops_per_second", 0) < 0 or out.get("max_bytes_per_second", 0) < 0:
        raise SpecError("--max-ops-per-second and --max-bytes-per-second must be 0 (no "
                        "limit) or positive")
    return out


def refuse_unknown(command: str, unknown: list[str]) -> None:
    """resume takes only what leaves the job's work as it is: one sentence for the rest."""
    flags = [a.split("=", 1)[0] for a in unknown if a.startswith("-")] or unknown
    raise SpecError(f"{command} does not take {' '.join(flags)}: a resumed job does what it "
                    "was created to do, and only --workers, --concurrency, "
                    "--max-ops-per-second, --max-bytes-per-second, --report (until the "
                    "report is published) and the AWS settings can change; create a new job "
                    "to change the rest")


def check_report_change(store: Any) -> None:
    """`resume --report`: only while the report is not yet published."""
    published = store.read()["Batchops"].get("report_manifest")
    if published:
        raise JobStateError(f"job {store.job_id}'s report is already published ({published});"
                            " --report can only move a report not yet written")


def retry_job_options(args: argparse.Namespace) -> tuple[Any, int]:
    """The new job's options and how many failed tasks it retries (None, 0: none)."""
    from batchops.model.request import load_json_arg
    from batchops.results.stores import open_job_store
    from batchops.schedule.retry import prepare_retry

    overrides = None
    if args.operation_overrides:
        overrides = load_json_arg(args.operation_overrides, "--operation-overrides")
    settings = given_settings(args)
    if args.report:
        settings["report"] = args.report
    return prepare_retry(open_job_store(args.job_id), args.operation, overrides, **settings)


def cmd_delete_job(args: argparse.Namespace) -> int:
    from batchops.results.stores import open_job_store
    from batchops.schedule.cleanup import delete_job

    delete_job(open_job_store(args.job_id))
    print(f"deleted job {args.job_id}")
    return errors.EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from batchops.schedule.cleanup import parse_age, parse_statuses, prune

    age, statuses = parse_age(args.older_than), parse_statuses(args.status)
    if args.dry_run:
        from batchops.schedule.cleanup import prunable

        for job_id in prunable(age, statuses):
            print(f"would delete job {job_id}")
        return errors.EXIT_OK
    deleted, busy = prune(age, statuses)
    for job_id in deleted:
        print(f"deleted job {job_id}")
    for job_id in busy:
        print(f"batchops: job {job_id} is running: left alone", file=sys.stderr)
    print(f"{len(deleted)} job{'s' if len(deleted) != 1 else ''} deleted", file=sys.stderr)
    return errors.EXIT_OK


__all__ = ["RESUME_SETTINGS", "check_report_change", "cmd_delete_job", "cmd_prune",
           "given_settings", "refuse_unknown", "retry_job_options"]
