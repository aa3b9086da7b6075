"""Copy only what differs (`run --from-listing ... --skip-unchanged MODE`): the job's
manifest is the difference of the source's and the target's listings (manifest/diff.py),
and the objects left out are counted in the job.

What the job records, beside Amazon's shapes: `Batchops.skip_unchanged` in job.json
(the counts by state and the comparison mode; `describe-job --extended` shows it as
`SkippedUnchanged`), and, when the user gave no description, a `Description` that says
the same in one line (so plain `describe-job` and `list-jobs` show it too). The
objects extraneous at the target are a manifest in the job folder (`extraneous.csv`),
which `--delete-extraneous` runs as a second job, of operation `delete`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchops.manifest.diff import DiffCounts, Listings, Side
from batchops.model.compare import CompareMode
from batchops.model.spec import AwsSettings, JobOptions, fit_text
from batchops.storage.locations import Resolver, normalise_url

EXTRANEOUS_MANIFEST = "extraneous.csv"


def content_decider(resolver: Resolver) -> Callable[[Side, Side], Callable[[list[str]],
                                                                            list[bool]]]:
    """For checksum mode: `decide(keys)` compares each key's source and target objects
    by their bytes (stored checksums where both have one), 16 at a time."""

    def make(src: Side, dst: Side) -> Callable[[list[str]], list[bool]]:
        # Here: the CLI imports this module to start its listings, before the operations.
        from batchops.operations.compare import ObjectComparer

        comparer = ObjectComparer(resolver, CompareMode.CHECKSUM)
        src_loc, dst_loc = resolver.location(src.bucket), resolver.location(dst.bucket)

        def differs(key: str) -> bool:
            found, _, _ = comparer.difference_sync(src_loc, src.prefix + key, None,
                                                   dst_loc, dst.prefix + key)
            return found is not None

        def decide(keys: list[str]) -> list[bool]:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(16) as pool:
                return list(pool.map(differs, keys))

        return decide

    return make


def describe_counts(counts: DiffCounts) -> str:
    """One line: what the difference holds."""
    return (f"{counts.new:,} new and {counts.changed:,} changed objects to copy; "
            f"{counts.unchanged:,} unchanged skipped (compared by {counts.compare}); "
            f"{counts.extraneous:,} extraneous at the target")


@dataclass(frozen=True)
class StartedListings:
    """Listings started before their job was made (`start_listings`), and what they list:
    (bucket map, AWS settings, Listings' arguments)."""

    listings: Listings
    inputs: tuple[Any, ...]


def _inputs(opts: JobOptions, generator: dict[str, Any],
            params: dict[str, Any]) -> tuple[Any, ...]:
    return (opts.bucket_map, opts.aws, generator["SourceBucket"],
            str(params["TargetResource"]), generator.get("Filter"),
            str(params.get("TargetKeyPrefix") or ""))


def _listings(inputs: tuple[Any, ...], resolver: Resolver) -> Listings:
    source, target, flt, target_key_prefix = inputs[2:]
    return Listings(source, target, resolver, flt, target_key_prefix,
                    flags=("--from-listing", "--target"))


def start_listings(source: str, target: str, flt: dict[str, Any] | None,
                   target_key_prefix: str, bucket_map: tuple[tuple[str, str], ...],
                   aws: AwsSettings) -> StartedListings:
    """The listings a copy job's `--skip-unchanged` on a listing of `source` into `target`
    will diff, started now: the CLI starts them from its flags before it imports the rest
    and creates the job, so that they list meanwhile. `create_job` hands them to
    `prepare_difference`, which uses them only if they list what the job's own options
    name. Raises SpecError for a URL that does not validate."""
    from batchops.manifest.listing import validate_generator

    generator = validate_generator({"SourceBucket": source, "EnableManifestOutput": False,
                                    "Filter": flt or {}})
    inputs = (bucket_map, aws, generator["SourceBucket"],
              normalise_url(target, "TargetResource"), generator.get("Filter"),
              target_key_prefix)
    return StartedListings(_listings(inputs, Resolver(bucket_map, aws=aws)), inputs)


def prepare_difference(opts: JobOptions, generator: dict[str, Any], params: dict[str, Any],
                       job_dir: str, resolver: Resolver, job: dict[str, Any],
                       settings: dict[str, Any],
                       started: StartedListings | None = None) -> str:
    """The preparing pass's manifest for `--skip-unchanged` on a listing: list both
    sides (or take `started`, from `start_listings`, if it lists the same), diff them;
    record the counts in the job. Returns the manifest's path."""
    mode = CompareMode.parse(str(opts.skip_unchanged), "--skip-unchanged")
    work = os.path.join(job_dir, "difference")
    inputs = _inputs(opts, generator, params)
    listings = started.listings if started is not None and started.inputs == inputs \
        else _listings(inputs, resolver)
    counts, _, _ = listings.diff(mode, work, content_decider(resolver))
    os.replace(os.path.join(work, "extraneous.csv"), os.path.join(job_dir, EXTRANEOUS_MANIFEST))
    path = os.path.join(job_dir, "manifest.csv")
    os.replace(os.path.join(work, "copy.csv"), path)
    shutil.rmtree(work)  # the listings: the job keeps its manifests, not them
    settings["skip_unchanged"] = counts.to_json()
    if not opts.description:
        job["Description"] = fit_text("copy what differs: " + describe_counts(counts))
    return path


def extraneous_job_options(opts: JobOptions, job_id: str, job_dir: str) -> JobOptions:
    """The job deleting the objects at the target that the source of job `job_id` does
    not have (its `extraneous.csv`), with the copy job's settings."""
    return JobOptions(
        manifest=os.path.join(job_dir, EXTRANEOUS_MANIFEST), operation="delete",
        confirmed=opts.confirmed, bucket_map=opts.bucket_map, aws=opts.aws,
        dry_run=opts.dry_run, workers=opts.workers, concurrency=opts.concurrency,
        max_attempts=opts.max_attempts,
        report_scope=opts.report_scope, priority=opts.priority,
        max_ops_per_second=opts.max_ops_per_second,
        description=fit_text(f"delete the objects extraneous at the target of job {job_id}"))
