"""Completion reports in Amazon's `Report_CSV_20180820` layout.

Each finished chunk becomes up to two parts in the job's `results/` folder, one of
succeeded and one of failed rows:

    bucket,key,versionId,taskStatus,httpStatus,errorCode,resultMessage

with keys URL-encoded, as Amazon's example rows are. Each attempt at a chunk names its
parts by a token of its own, and commits by creating the chunk's marker, which names
them, exclusively (first writer wins; results/jobstore.py). An attempt that finds a
marker there already lost: it removes its parts and hands back the winner's marker.
Publishing reads only the parts markers name, so each manifest row appears in the
report exactly once, however many attempts ran. The marker (the checkpoint) is
created after the parts are durable.

At the end, `publish` puts the parts under `<report>/job-<id>/results/` and writes
`<report>/job-<id>/manifest.json` listing them with their MD5.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from batchops.model.chunk import Chunk
from batchops.model.errors import JobStoreError
from batchops.model.formats import REPORT_FORMAT, REPORT_SCHEMA
from batchops.model.spec import AwsSettings
from batchops.results.jobstore import JobStore, atomic_write, makedirs, now_iso
from batchops.storage.outcomes import Outcome

SUCCESS_MESSAGE = "Successful"


def _rows_csv(rows: Iterable[tuple[object, ...]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def _needs_quoting(values: list[str]) -> bool:
    joined = "\n".join(values)
    return ("," in joined or '"' in joined or "\r" in joined
            or joined.count("\n") != max(len(values) - 1, 0))


def _plain_succeeded_csv(buckets: list[str], keys: list[str],
                         versions: list[str | None]) -> bytes | None:
    """The rows of an all-succeeded part, joined directly when no field needs CSV
    quoting (about 8x faster than the csv module); None when one does."""
    if _needs_quoting(buckets) or _needs_quoting(keys) or \
            _needs_quoting([v for v in versions if v]):
        return None
    return "".join([f"{b},{k},{v or ''},succeeded,200,,{SUCCESS_MESSAGE}\n"
                    for b, k, v in zip(buckets, keys, versions, strict=True)]).encode()


def part_name(chunk: int, attempt: str, status: str) -> str:
    return f"chunk-{chunk:012d}-{attempt}-{status}.csv"


def _hold_commit(store: JobStore, chunk: int) -> None:
    """Test hook: `BATCHOPS_TEST_HOLD_COMMIT=<chunk>:<seconds>` makes the first attempt
    at that chunk to get here wait before it commits (the others go on), so that a test
    can make two attempts race and see the first one lose."""
    hook = os.environ.get("BATCHOPS_TEST_HOLD_COMMIT")
    if not hook:
        return
    index, _, seconds = hook.partition(":")
    if int(index) != chunk:
        return
    os.makedirs(store.dir, exist_ok=True)
    try:
        fd = os.open(os.path.join(store.dir, f"hold.{chunk}"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    import time

    time.sleep(float(seconds or 5))


def write_chunk(
    store: JobStore,
    chunk: Chunk,
    failures: Mapping[int, Outcome],
    messages: Mapping[int, str],
    scope: str,
    dry_run: bool = False,
    only: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Write a finished chunk's parts, then its marker. Returns the marker.

    `only`: the rows that ran, when a cancel stopped the chunk part way (the marker then
    says "partial"; a cancelled job is never resumed, so it is never run again).

    When another attempt committed the chunk first, this one's parts are removed and
    the winner's marker is returned, with "lost": True.
    """
    import secrets

    attempt = secrets.token_hex(4)
    buckets, keys, versions = chunk.buckets, chunk.report_keys, chunk.versions
    parts = []
    n = len(chunk)
    ran: Sequence[int] = range(n) if only is None else only
    succeeded = len(ran) - len(failures)
    status_ok = "succeeded"
    if dry_run:
        messages = {i: "DryRun: the object is there; not performed" for i in ran}
    if succeeded and scope == "AllTasks":
        if failures or messages or only is not None:
            rows = ((buckets[i], keys[i], versions[i] or "", status_ok, 200, "",
                     messages.get(i, SUCCESS_MESSAGE)) for i in ran if i not in failures)
            parts.append(("succeeded", _rows_csv(rows), succeeded))
        else:
            data = _plain_succeeded_csv(buckets, keys, versions)
            if data is None:
                data = _rows_csv((buckets[i], keys[i], versions[i] or "", status_ok, 200, "",
                                  SUCCESS_MESSAGE) for i in range(n))
            parts.append(("succeeded", data, succeeded))
    if failures:
        rows = ((buckets[i], keys[i], versions[i] or "", "failed", o.http_status, o.error_code,
                 o.message) for i, o in sorted(failures.items()))
        parts.append(("failed", _rows_csv(rows), len(failures)))
    listed = []
    for status, data, count in parts:
        name = part_name(chunk.index, attempt, status)
        store.put_part(name, data)
        listed.append({"status": status, "name": name, "md5": hashlib.md5(data).hexdigest(),
                       "rows": count})
    marker = {"chunk": chunk.index, "first_row": chunk.first_row, "rows": len(ran),
              "succeeded": succeeded, "failed": len(failures), "parts": listed}
    if only is not None:
        marker["partial"] = True
    _hold_commit(store, chunk.index)
    winner = store.commit_marker(chunk.index, marker)
    if winner is None:
        return marker
    for part in listed:
        store.delete_part(str(part["name"]))
    return dict(winner, lost=True)


def _put_file(store: Any, key: str, path: str) -> None:
    from pathlib import Path

    import obstore as obs

    obs.put(store, key, Path(path))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def publish(job: JobStore, report_url: str, scope: str,
            aws: AwsSettings | None = None) -> str:
    """Put every part under the report location and write its manifest.json (an S3
    location with its own settings, else the job's: `aws`).

    Returns the URL of the manifest.json.
    """
    from batchops.storage.locations import split_location

    loc = split_location(report_url)
    base = f"{loc.prefix}job-{job.job_id}/"
    results = []
    local_root = loc.root[len("file://"):] if loc.root.startswith("file://") else None
    store = None
    if local_root is None:
        from batchops.storage.locations import Resolver

        store = Resolver(aws=aws).store(loc)
    if local_root is not None:  # temporaries of a publish that was killed
        folder = os.path.join(local_root, base, "results")
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            if ".csv.tmp" in name:
                try:
                    os.unlink(os.path.join(folder, name))
                except FileNotFoundError:
                    pass
    for marker in job.markers():
        for part in marker["parts"]:
            if scope == "FailedTasksOnly" and part["status"] != "failed":
                continue
            src = job.part_file(part["name"])
            key = base + "results/" + part["name"]
            try:
                if src is None:  # a job store on an object store: the part's bytes
                    data = job.read_part(part["name"])
                    if local_root is not None:
                        dest = os.path.join(local_root, key)
                        makedirs(os.path.dirname(dest))
                        atomic_write(dest, data)
                    else:
                        import obstore as obs

                        assert store is not None  # built above for a store not a folder
                        obs.put(store, key, data)
                elif local_root is not None:
                    dest = os.path.join(local_root, key)
                    makedirs(os.path.dirname(dest))
                    if not _same_file(src, dest):  # published before a kill: as it is
                        tmp = f"{dest}.tmp.{os.getpid()}"
                        if os.path.lexists(tmp):
                            os.unlink(tmp)
                        try:
                            os.link(src, tmp)
                        except OSError:
                            import shutil

                            shutil.copyfile(src, tmp)
                        os.replace(tmp, dest)
                        # os.replace between two links of one file does nothing (POSIX
                        # rename): the temporary would stay, so remove it if it did.
                        if os.path.lexists(tmp):
                            os.unlink(tmp)
                else:
                    _put_file(store, key, src)
            except Exception as exc:  # noqa: BLE001 - any store error becomes one sentence
                raise JobStoreError(f"cannot write the report part {key} to {report_url} "
                                    f"({_why(exc)})") from None
            bucket = (loc.root[len("s3://"):] if loc.root.startswith("s3://")
                      else loc.root)
            results.append({"TaskExecutionStatus": part["status"], "Bucket": bucket,
                            "MD5Checksum": part["md5"], "Key": key})
    manifest = orjson.dumps({
        "Format": REPORT_FORMAT,
        "ReportCreationDate": now_iso(),
        "Results": results,
        "ReportSchema": REPORT_SCHEMA,
    }, option=orjson.OPT_INDENT_2)
    key = base + "manifest.json"
    if local_root is not None:
        dest = os.path.join(local_root, key)
        makedirs(os.path.dirname(dest))
        atomic_write(dest, manifest)
        return "file://" + dest
    import obstore as obs

    assert store is not None  # built above for every store but a local folder
    try:
        obs.put(store, key, manifest)
    except Exception as exc:  # noqa: BLE001 - any store error becomes one sentence
        raise JobStoreError(f"cannot write the report manifest to {report_url} "
                            f"({_why(exc)})") from None
    return f"{loc.root}/{key}"


def _why(exc: BaseException) -> str:
    """A store's error in a few words, secrets scrubbed (never a client's debug dump)."""
    from batchops.storage.outcomes import classify

    outcome = classify(exc)
    return f"{outcome.error_code}: {outcome.message}" if outcome.error_code else outcome.message
