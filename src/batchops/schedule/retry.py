"""`retry-failed`: a new job over every failed task of a finished job.

The new job's manifest is the rows of every failed-tasks part that the old job's chunk
markers name (all chunks; a part of an attempt that lost its commit is never read), in
chunk order, as an Amazon CSV manifest (`bucket,key[,versionId]`, keys URL-encoded as
the report has them). It runs the same operation with the same parameters, target,
bucket map and settings, unless told otherwise (`--operation`, `--operation-overrides`:
a `verify` job's failures are what to copy again). Its Description names the job it
retries, and so does a job tag `batchops:retry-of`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Iterator, Mapping
from typing import Any

from batchops.model.errors import JobStateError, SpecError
from batchops.model.formats import CSV_FORMAT
from batchops.model.spec import JOB_TAG_LIMIT, JobOptions, fit_text
from batchops.model.status import TERMINAL
from batchops.operations import get_operation
from batchops.results.jobstore import JobStore
from batchops.schedule.create import options_from_json

RETRY_TAG = "batchops:retry-of"
#: Parameters that say where objects go: kept when the operation changes (verify → copy).
_TARGET_PARAMS = ("TargetResource", "TargetKeyPrefix")


def failed_rows(store: JobStore) -> Iterator[tuple[str, str, str]]:
    """(bucket, URL-encoded key, version id or "") of every failed task of the job, in
    chunk order."""
    for marker in store.markers():
        for part in marker.get("parts", ()):
            if part.get("status") != "failed":
                continue
            data = store.read_part(str(part["name"])).decode("utf-8")
            for row in csv.reader(io.StringIO(data)):
                if len(row) >= 3:
                    yield row[0], row[1], row[2]


def write_failed_manifest(store: JobStore, path: str) -> int:
    """Write the job's failed tasks to `path` as a CSV manifest; returns how many."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        for bucket, key, version in failed_rows(store):
            f.write(f"{bucket},{key},{version}\n" if version else f"{bucket},{key}\n")
            n += 1
    return n


def retry_options(store: JobStore, manifest: str, operation: str | None = None,
                  overrides: Mapping[str, Any] | None = None, **settings: Any) -> JobOptions:
    """The new job's options: the old job's, over `manifest`, with the operation or its
    parameters changed as asked and `settings` (workers, concurrency, report) given."""
    doc = store.read()
    job, kept = doc["Job"], doc["Batchops"]
    if job["Status"] not in TERMINAL:
        raise JobStateError(f"job {store.job_id} is {job['Status']}; retry-failed retries "
                            "the failures of a job that has finished (Complete, Failed or "
                            "Cancelled): resume it, or wait for it to finish")
    if not kept.get("options"):
        raise JobStateError(f"job {store.job_id} predates retry-failed (its job.json keeps "
                            "no request); copy its failed-tasks parts into a manifest instead")
    old = options_from_json(kept["options"])
    params: dict[str, Any] = dict(kept.get("params") or {})
    alias = kept["operation"]
    if operation is not None and get_operation(operation).alias != alias:
        alias = get_operation(operation).alias
        params = {k: v for k, v in params.items() if k in _TARGET_PARAMS}
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise SpecError("--operation-overrides must be a JSON object of the operation's "
                            'parameters, e.g. {"TargetKeyPrefix": "retry"}')
        params.update(overrides)
        params = {k: v for k, v in params.items() if v is not None}
    if alias in ("copy", "verify") and not params.get("TargetResource"):
        raise SpecError(f"job {store.job_id}'s rows named their own destinations, which its "
                        "report does not keep; give the target with --operation-overrides "
                        '\'{"TargetResource": "s3://bucket"}\'')
    tags = tuple(t for t in old.tags if t[0] != RETRY_TAG)
    if len(tags) < JOB_TAG_LIMIT:
        tags += ((RETRY_TAG, store.job_id),)
    description = f"retry of the failed tasks of job {store.job_id}"
    if old.description:
        description += f" ({old.description})"
    given = {k: v for k, v in settings.items() if v is not None}  # 0: no limit, one per core
    return dataclasses.replace(
        old, manifest=manifest, manifest_generator=None, manifest_format=CSV_FORMAT,
        manifest_etag=None, manifest_version=None, client_request_token=None,
        # The failed rows are the manifest: a listing job's --skip-unchanged chose them
        # already (and needs a listing, which the retry no longer has).
        skip_unchanged=None, operation=alias, params=params,
        description=fit_text(description), tags=tags, dry_run=False, **given)


def prepare_retry(store: JobStore, operation: str | None = None,
                  overrides: Mapping[str, Any] | None = None,
                  **settings: Any) -> tuple[JobOptions | None, int]:
    """The failed tasks' manifest, written in the old job's (local) folder, where the new
    job's request names it until it is prepared, and the new job's options (None when
    the job has no failed task)."""
    import uuid

    os.makedirs(store.dir, exist_ok=True)
    path = os.path.join(store.dir, f"failed-tasks-{uuid.uuid4().hex[:12]}.csv")
    options = retry_options(store, path, operation, overrides, **settings)
    count = write_failed_manifest(store, path)
    if not count:
        os.unlink(path)
        return None, 0
    return options, count


__all__ = ["RETRY_TAG", "failed_rows", "prepare_retry", "retry_options",
           "write_failed_manifest"]
