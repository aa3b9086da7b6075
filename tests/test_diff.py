"""Copy only what differs (issue 14 §1): `batchops diff`, `run --from-listing
--skip-unchanged MODE` and `--delete-extraneous`, end to end through the real CLI on
two moto buckets and on two local folders; the listing diff at scale; its rule against
model/compare.py's."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from batchops.manifest.diff import Side, diff, listing_schema
from batchops.model.compare import CompareMode, ObjectInfo, metadata_difference
from helpers import decoded_keys, enc, error_lines, job_id_of, read_report, report_manifest_path

SPECIAL = "dir/with space+plus,comma ü.txt"  # URL-encoded in every manifest and report
#: key -> (source body or None, target body or None); the timeline in `_make` decides
#: which side is newer.
OBJECTS = {
    "same/a.txt": (b"same bytes", b"same bytes"),  # target written after the source
    "new/b.txt": (b"only at the source", None),
    SPECIAL: (b"new, with a name to encode", None),
    "changed/same-size.txt": (b"AAAA", b"BBBB"),  # source rewritten after the target
    "changed/size.txt": (b"longer now", b"short"),
    "touched/f.txt": (b"same content", b"same content"),  # source rewritten later
    "extraneous/e.txt": (None, b"only at the target"),
}
NEW = {"new/b.txt", SPECIAL}
#: What each mode copies (beyond the new objects), for S3 (MD5 ETags) and local folders
#: (no ETag: in etag mode the sizes decide there, as model/compare.py says).
CHANGED = {
    "size": {"changed/size.txt"},
    "size+mtime": {"changed/size.txt", "changed/same-size.txt", "touched/f.txt"},
    "etag": {"changed/size.txt", "changed/same-size.txt"},
    "checksum": {"changed/size.txt", "changed/same-size.txt"},
}
LOCAL_CHANGED = {**CHANGED, "etag": {"changed/size.txt"}}
SOURCE_FIRST = {"same/a.txt"}  # written at the source before the target
TARGET_FIRST = {"changed/same-size.txt", "changed/size.txt", "touched/f.txt"}


def _make_s3(s3) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    src, dst = f"src-{uuid.uuid4().hex[:10]}", f"dst-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=src)
    s3.create_bucket(Bucket=dst)

    def put(bucket: str, key: str, side: int) -> None:
        body = OBJECTS[key][side]
        if body is not None:
            s3.put_object(Bucket=bucket, Key=key, Body=body)

    for key in SOURCE_FIRST:
        put(src, key, 0)
    for key in TARGET_FIRST:
        put(dst, key, 1)
    time.sleep(1.1)  # S3 keeps whole seconds
    for key in OBJECTS:
        if key not in SOURCE_FIRST:
            put(src, key, 0)
        if key not in TARGET_FIRST:
            put(dst, key, 1)
    return f"s3://{src}", f"s3://{dst}"


def _make_local(root: Path) -> tuple[str, str]:
    for side, name in ((0, "src"), (1, "dst")):
        for key, bodies in OBJECTS.items():
            if bodies[side] is None:
                continue
            path = root / name / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bodies[side])
            older = (key in SOURCE_FIRST and side == 0) or (key in TARGET_FIRST and side == 1)
            os.utime(path, (2_000_000, 1_000_000 if older else 2_000_000))
    return f"file://{root}/src", f"file://{root}/dst"


@pytest.fixture(params=["s3", "local"])
def sides(request, tmp_path):  # type: ignore[no-untyped-def]
    """(kind, source URL, target URL, a reader of target objects)."""
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        src, dst = _make_s3(s3)

        def read(key: str) -> bytes | None:
            try:
                return s3.get_object(Bucket=dst[5:], Key=key)["Body"].read()
            except s3.exceptions.NoSuchKey:
                return None

        return "s3", src, dst, read
    src, dst = _make_local(tmp_path / "folders")

    def read_local(key: str) -> bytes | None:
        path = Path(dst[7:]) / key
        return path.read_bytes() if path.exists() else None

    return "local", src, dst, read_local


def _run(cli, src: str, dst: str, *extra: str):  # type: ignore[no-untyped-def]
    proc = cli("run", "--from-listing", src, "--operation", "copy", "--target", dst,
               "--json", "--no-progress", "--workers", "1", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _copied(cli, proc) -> set[str]:  # type: ignore[no-untyped-def]
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    assert {r[3] for r in rows} <= {"succeeded"}, rows
    return set(decoded_keys(rows))


@pytest.mark.parametrize("mode", ["size", "size+mtime", "etag", "checksum"])
def test_skip_unchanged_copies_exactly_what_differs_then_nothing(cli, sides, mode) -> None:
    kind, src, dst, read = sides
    expected = NEW | (CHANGED if kind == "s3" else LOCAL_CHANGED)[mode]
    proc = _run(cli, src, dst, "--skip-unchanged", mode)
    assert proc.returncode == 0, proc.stderr
    assert _copied(cli, proc) == expected
    for key in OBJECTS:
        source, target = OBJECTS[key]
        assert read(key) == (source if key in expected else target), key
    job = json.loads(proc.stdout)["Job"]
    unchanged = len(OBJECTS) - 1 - len(expected)
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(expected)
    job_dir = cli.home / "jobs" / job["JobId"]
    assert (job_dir / "extraneous.csv").read_text().endswith("extraneous/e.txt\n")
    assert not (job_dir / "difference").exists()  # the listings are not kept
    assert f"{unchanged:,} unchanged skipped (compared by {mode})" in job["Description"]
    described = json.loads(cli("describe-job", "--job-id", job["JobId"], "--extended",
                               check=True).stdout)
    assert set(described["Job"]) <= {  # Amazon's JobDescriptor members only
        "JobId", "ConfirmationRequired", "Description", "JobArn", "Status", "Manifest",
        "Operation", "Priority", "ProgressSummary", "StatusUpdateReason", "FailureReasons",
        "Report", "CreationTime", "TerminationDate", "RoleArn", "SuspendedDate",
        "SuspendedCause", "ManifestGenerator", "GeneratedManifestDescriptor"}
    assert described["Batchops"]["SkippedUnchanged"] == {
        "compare": mode, "new": len(NEW), "changed": len(expected) - len(NEW),
        "unchanged": unchanged, "extraneous": 1}
    again = _run(cli, src, dst, "--skip-unchanged", mode)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["Job"]["ProgressSummary"]["TotalNumberOfTasks"] == 0
    assert read("extraneous/e.txt") == OBJECTS["extraneous/e.txt"][1]  # never deleted


def test_summary_line_says_how_many_were_skipped(cli, sides) -> None:
    _, src, dst, _ = sides
    proc = cli("run", "--from-listing", src, "--operation", "copy", "--target", dst,
               "--no-progress", "--skip-unchanged", "size", check=True)
    assert "2 new and 1 changed objects to copy; 3 unchanged skipped (compared by size); " \
           "1 extraneous at the target" in proc.stdout


@pytest.mark.parametrize("mode", ["size", "size+mtime", "etag", "checksum"])
def test_diff_writes_exactly_the_manifest(cli, sides, tmp_path, mode) -> None:
    kind, src, dst, read = sides
    expected = NEW | (CHANGED if kind == "s3" else LOCAL_CHANGED)[mode]
    out, extra = tmp_path / "todo.csv", tmp_path / "extraneous.csv"
    proc = cli("diff", src, dst, "--compare", mode, "--out", str(out), "--extraneous-out",
               str(extra), "--json", check=True)
    assert json.loads(proc.stdout) == {
        "compare": mode, "new": 2, "changed": len(expected) - 2,
        "unchanged": len(OBJECTS) - 1 - len(expected), "extraneous": 1}
    bucket = src[5:] if kind == "s3" else src
    assert sorted(out.read_text().splitlines()) == sorted(f"{bucket},{enc(k)}"
                                                          for k in expected)
    target = dst[5:] if kind == "s3" else dst
    assert extra.read_text() == f"{target},extraneous/e.txt\n"
    assert read("new/b.txt") is None  # diff copies nothing
    ran = cli("run", "--manifest", str(out), "--operation", "copy", "--target", dst,
              "--json", "--no-progress", check=True)
    assert _copied(cli, ran) == expected


@pytest.mark.parametrize("mode", ["size", "size+mtime", "etag", "checksum"])
def test_small_and_large_listing_paths_agree(sides, tmp_path, mode, aws_env) -> None:
    """The in-memory join (small listings) and the Parquet + Polars one give the same."""
    from batchops.manifest.diff import diff_stores
    from batchops.schedule.unchanged import content_decider
    from batchops.storage.locations import Resolver

    _, src, dst, _ = sides
    resolver = Resolver(())
    outs = []
    for limit, name in ((100, "memory"), (0, "polars")):
        counts, _, _ = diff_stores(src, dst, CompareMode(mode), str(tmp_path / name),
                                   resolver, decider=content_decider(resolver),
                                   in_memory_rows=limit)
        outs.append((counts, *(sorted((tmp_path / name / f).read_text().splitlines())
                               for f in ("copy.csv", "extraneous.csv"))))
    assert outs[0] == outs[1]
    assert outs[0][0].to_copy == len(outs[0][1]) > 0 and len(outs[0][2]) == 1
    assert (tmp_path / "polars" / "diff").is_dir()  # the large path did run


def test_diff_of_an_empty_or_missing_target_is_all_new(cli, tmp_path) -> None:
    (tmp_path / "src" / "x").mkdir(parents=True)
    (tmp_path / "src" / "x" / "1").write_bytes(b"1")
    out = tmp_path / "m.csv"
    proc = cli("diff", f"file://{tmp_path}/src", f"file://{tmp_path}/nowhere", "--out",
               str(out), "--json", check=True)
    assert json.loads(proc.stdout)["new"] == 1
    assert out.read_text() == f"file://{tmp_path}/src,x/1\n"


def test_delete_extraneous_is_refused_without_confirmation(cli, sides) -> None:
    _, src, dst, read = sides
    proc = _run(cli, src, dst, "--skip-unchanged", "size", "--delete-extraneous")
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        "batchops: --delete-extraneous removes objects for good: add --confirm-delete, or "
        "--dry-run to list what would be deleted"]
    assert not (cli.home / "jobs").exists() or not list((cli.home / "jobs").iterdir())
    assert read("extraneous/e.txt") is not None and read("new/b.txt") is None


def test_delete_extraneous_deletes_exactly_the_extraneous(cli, sides) -> None:
    _, src, dst, read = sides
    proc = _run(cli, src, dst, "--skip-unchanged", "size+mtime", "--delete-extraneous",
                "--confirm-delete")
    assert proc.returncode == 0, proc.stderr
    copy_doc, delete_doc = (json.loads(d) for d in proc.stdout.replace("}\n{", "}\n\n{")
                            .split("\n\n"))
    delete_id = delete_doc["Job"]["JobId"]
    assert f"deleting the extraneous objects: job {delete_id}" in proc.stderr
    assert next(iter(delete_doc["Job"]["Operation"])) == "BatchopsDeleteObject"
    assert copy_doc["Job"]["JobId"] in delete_doc["Job"]["Description"]
    _, rows = read_report(report_manifest_path(cli.home, delete_id))
    assert decoded_keys(rows) == ["extraneous/e.txt"] and rows[0][3] == "succeeded"
    assert read("extraneous/e.txt") is None
    for key, (source, _) in OBJECTS.items():
        if source is not None:
            assert read(key) == source, key


@pytest.mark.parametrize("args, sentence", [
    (["diff", "file:///tmp", "file:///tmp", "--out", "x.csv", "--compare", "md5"],
     "batchops: --compare must be one of size | size+mtime | etag | checksum, not 'md5'"),
    (["run", "--from-listing", "file:///tmp", "--operation", "copy", "--target",
      "file:///tmp/x", "--skip-unchanged", "newer"],
     "batchops: --skip-unchanged must be one of size | size+mtime | etag | checksum, not "
     "'newer'"),
    (["diff", "file:///tmp", "file:///tmp", "--out", "no/such/x.csv"],
     "batchops: --out no/such/x.csv: no such folder for it"),
    (["diff", "file:///no/such/folder", "file:///tmp", "--out", "x.csv"],
     "batchops: SOURCE_URL file:///no/such/folder: no such folder"),
    (["run", "--from-listing", "file:///no/such/folder", "--operation", "copy", "--target",
      "file:///tmp/x", "--skip-unchanged", "size"],
     "batchops: --from-listing file:///no/such/folder: no such folder"),
    (["run", "--manifest", "m.csv", "--operation", "copy", "--target", "file:///tmp/x",
      "--skip-unchanged", "size", "--delete-extraneous", "--confirm-delete"],
     "batchops: --delete-extraneous needs --from-listing URL and --skip-unchanged MODE (the "
     "extraneous objects are those of the target's listing that the source's lacks)"),
])
def test_bad_input_is_one_sentence(cli, tmp_path, args, sentence) -> None:
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert error_lines(proc.stderr) == [sentence]
    assert not (tmp_path / "x.csv").exists()


def test_unreachable_source_is_one_sentence(cli, tmp_path, aws_env) -> None:
    proc = cli("diff", "s3://nobody-there", f"file://{tmp_path}", "--out",
               str(tmp_path / "x.csv"), "--endpoint-url", "http://127.0.0.1:9", timeout=120)
    assert proc.returncode == 2, proc.stderr
    [line] = error_lines(proc.stderr)
    assert line.startswith("batchops: SOURCE_URL s3://nobody-there: cannot list it ("), line
    assert not (tmp_path / "x.csv").exists()


# -- the listing diff itself, at scale -------------------------------------------------

def _listing(path: Path, rows: dict[str, tuple[int, int, str | None]]) -> str:
    pl.DataFrame({"key": list(rows), "size": [r[0] for r in rows.values()],
                  "mtime": [r[1] for r in rows.values()],
                  "etag": [r[2] for r in rows.values()]},
                 schema=listing_schema()).write_parquet(path)
    return str(path)


@pytest.mark.parametrize("mode", ["size", "size+mtime", "etag"])
def test_large_diff_matches_a_plain_python_diff(tmp_path, mode) -> None:
    """200k keys a side (made up listings, several hash partitions), against the same
    diff written with dicts and model/compare.py's rule."""
    rng = random.Random(14)
    n = 200_000
    source: dict[str, tuple[int, int, str | None]] = {}
    target: dict[str, tuple[int, int, str | None]] = {}
    for i in range(n):
        key = f"p{i % 97}/obj {i}+{'ü' if i % 5 == 0 else ''}.bin"
        row = (rng.randrange(1000), 1_700_000_000_000_000 + rng.randrange(10**8),
               f"{rng.getrandbits(128):032x}" if i % 7 else f"{rng.getrandbits(128):032x}-3")
        which = rng.random()
        if which < 0.1:
            source[key] = row  # new
        elif which < 0.2:
            target[key] = row  # extraneous
        else:
            source[key] = row
            target[key] = row if which < 0.6 else (
                row[0] + rng.randrange(2), row[1] + rng.randrange(-3, 3) * 1_000_000,
                row[2] if rng.random() < 0.5 else f"{rng.getrandbits(128):032x}")
    counts = diff(Side(_listing(tmp_path / "s.parquet", source), "src"),
                  Side(_listing(tmp_path / "t.parquet", target), "dst", "pre/"),
                  CompareMode(mode), str(tmp_path / "out"), rows_per_join=40_000)

    def info(row: tuple[int, int, str | None]) -> ObjectInfo:
        return ObjectInfo(row[0], row[1] / 1e6, row[2])

    changed = {k for k in source if k in target and
               metadata_difference(CompareMode(mode), info(source[k]), info(target[k]))}
    new = source.keys() - target.keys()
    extraneous = target.keys() - source.keys()
    assert (counts.new, counts.changed, counts.extraneous) == (len(new), len(changed),
                                                               len(extraneous))
    assert counts.unchanged == len(source) - len(new) - len(changed)
    assert 0 < len(changed) < len(source.keys() & target.keys())  # the test discriminates
    lines = (tmp_path / "out" / "copy.csv").read_text().splitlines()
    assert sorted(lines) == sorted(f"src,{enc(k)}" for k in new | changed)
    lines = (tmp_path / "out" / "extraneous.csv").read_text().splitlines()
    assert sorted(lines) == sorted(f"dst,{enc('pre/' + k)}" for k in extraneous)


def test_prefixes_map_keys_as_copy_does(cli, s3) -> None:
    """A source URL with a prefix and a --target-key-prefix: each source key K is
    compared with TargetKeyPrefix/K at the target, where copy puts it; target objects
    outside that prefix are not extraneous."""
    src, dst = f"src-{uuid.uuid4().hex[:10]}", f"dst-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=src)
    s3.create_bucket(Bucket=dst)
    for key in ("data/x", "data/y", "other/not-listed"):
        s3.put_object(Bucket=src, Key=key, Body=key.encode())
    s3.put_object(Bucket=dst, Key="bk/data/stale", Body=b"extraneous")
    s3.put_object(Bucket=dst, Key="bk/elsewhere", Body=b"outside the listed prefix")
    args = ("--target-key-prefix", "bk", "--skip-unchanged", "size")
    first = _run(cli, f"s3://{src}/data", f"s3://{dst}", *args)
    assert first.returncode == 0, first.stderr
    assert _copied(cli, first) == {"data/x", "data/y"}
    assert s3.get_object(Bucket=dst, Key="bk/data/x")["Body"].read() == b"data/x"
    described = json.loads(cli("describe-job", "--job-id", job_id_of(first.stdout),
                               "--extended", check=True).stdout)
    assert described["Batchops"]["SkippedUnchanged"]["extraneous"] == 1
    again = _run(cli, f"s3://{src}/data", f"s3://{dst}", *args)
    assert json.loads(again.stdout)["Job"]["ProgressSummary"]["TotalNumberOfTasks"] == 0


def test_both_local_sides_are_listed_at_once(tmp_path, monkeypatch) -> None:
    """The target folder is listed in a thread while the source is (each listing waits
    here for the other to have started: listed one after the other, the first would
    wait in vain)."""
    import threading

    import batchops.manifest.listing as listing
    from batchops.manifest.diff import diff_stores
    from batchops.storage.locations import Resolver

    src, dst = _make_local(tmp_path)
    both = threading.Barrier(2, timeout=10)
    walk = listing.walk_folder

    def waiting(root: str, prefix: str):  # type: ignore[no-untyped-def]
        both.wait()
        yield from walk(root, prefix)

    monkeypatch.setattr(listing, "walk_folder", waiting)
    counts, _, _ = diff_stores(src, dst, CompareMode.SIZE, str(tmp_path / "out"), Resolver())
    assert (counts.new, counts.changed, counts.extraneous) == (len(NEW), 1, 1)


@pytest.mark.parametrize("mode", ["size", "size+mtime", "etag", "checksum"])
def test_the_listing_rule_is_model_compare_s(mode) -> None:
    """listed_difference (what a small diff judges each pair by) answers as
    metadata_difference does, for every mode, on what listings carry."""
    from batchops.model.compare import listed_difference

    etags = [None, "0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF",
             "fedcba9876543210fedcba9876543210", "0123456789abcdef0123456789abcdef-2"]
    values = [(size, mtime, etag) for size in (0, 5) for mtime in (10.0, 10.7, 11.2)
              for etag in etags]
    for a in values:
        for b in values:
            assert listed_difference(CompareMode(mode), *a, *b) == metadata_difference(
                CompareMode(mode), ObjectInfo(*a), ObjectInfo(*b)), (a, b)


RERUN = """
import json, sys
from batchops.cli.main import main
code = main(sys.argv[1:])
loaded = [m for m in ("polars", "multiprocessing", "subprocess", "socket", "asyncio",
                      "concurrent.futures") if m in sys.modules]
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def test_a_rerun_with_nothing_to_copy_is_a_whole_job_without_workers(cli, tmp_path) -> None:
    """Once everything is copied, a re-run is a job of 0 tasks like any other (Complete,
    its report published, the skip counts in its description and describe-job), made
    without starting a worker or importing what workers and large diffs need (Polars,
    multiprocessing, subprocess, asyncio): a re-run's time is mostly start-up."""
    import subprocess
    import sys

    src, dst = _make_local(tmp_path / "folders")
    _run(cli, src, dst, "--skip-unchanged", "size")
    proc = subprocess.run([sys.executable, "-c", RERUN, "run", "--from-listing", src,
                           "--operation", "copy", "--target", dst, "--json",
                           "--no-progress", "--skip-unchanged", "size"],
                          capture_output=True, text=True, env=cli.env(), timeout=120)
    said = json.loads(proc.stderr.splitlines()[-1])
    assert said == {"code": 0, "loaded": []}, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 0
    assert "0 new and 0 changed objects to copy; 6 unchanged skipped" in job["Description"]
    described = json.loads(cli("describe-job", "--job-id", job["JobId"], "--extended",
                               check=True).stdout)
    assert described["Job"]["Status"] == "Complete"
    assert described["Batchops"]["SkippedUnchanged"] == {
        "compare": "size", "new": 0, "changed": 0, "unchanged": 6, "extraneous": 1}
    report = json.loads(Path(report_manifest_path(cli.home, job["JobId"])).read_text())
    assert report["Results"] == [] and report["Format"] == "Report_CSV_20180820"
    events = [json.loads(line)["event"] for line in
              (cli.home / "jobs" / job["JobId"] / "log").read_text().splitlines()]
    assert events[0] == "created" and events[-1] == "complete"
    assert "started" not in events  # no worker


def test_the_cli_lists_both_sides_while_it_creates_the_job(tmp_path, monkeypatch) -> None:
    """`run --from-listing --skip-unchanged` starts both listings before it creates the
    job (they list while the rest is imported and the job is made), and the preparing
    pass diffs those: each side is listed once."""
    import threading

    import batchops.manifest.listing as listing
    import batchops.schedule.create as create
    from batchops.cli.main import main

    src, dst = _make_local(tmp_path / "folders")
    monkeypatch.setenv("BATCHOPS_HOME", str(tmp_path / "home"))
    walks: list[str] = []
    walk, made = listing.walk_folder, create.create_job

    def counted(root: str, prefix: str):  # type: ignore[no-untyped-def]
        walks.append(root)
        yield from walk(root, prefix)

    def create_job(*args, **kw):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 10
        while len(walks) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(walks) == 2, "the listings had not started when the job was created"
        return made(*args, **kw)

    monkeypatch.setattr(listing, "walk_folder", counted)
    monkeypatch.setattr(create, "create_job", create_job)
    codes: list[int] = []
    run = threading.Thread(target=lambda: codes.append(main([  # not the main thread:
        "run", "--from-listing", src, "--operation", "copy", "--target", dst,  # no signals
        "--no-progress", "--skip-unchanged", "size"])))
    run.start()
    run.join(60)
    assert codes == [0]
    assert sorted(walks) == sorted([src[len("file://"):], dst[len("file://"):]])
    assert (Path(dst[len("file://"):]) / "new/b.txt").read_bytes() == OBJECTS["new/b.txt"][0]


def test_started_listings_of_another_job_are_not_used(tmp_path) -> None:
    """create_job diffs the listings it is handed only if they list what its own options
    name; others (another target) are left aside and its sides listed afresh."""
    from batchops.model.spec import AwsSettings, JobOptions
    from batchops.schedule.create import create_job
    from batchops.schedule.unchanged import start_listings

    src, dst = _make_local(tmp_path / "folders")
    empty = tmp_path / "empty"  # where everything would be new
    empty.mkdir()
    opts = JobOptions(manifest="", operation="copy", params={"TargetResource": dst},
                      manifest_generator={"SourceBucket": src, "EnableManifestOutput": False,
                                          "Filter": {}},
                      skip_unchanged="size")
    started = start_listings(src, f"file://{empty}", {}, "", (), AwsSettings())
    store = create_job(opts, home=str(tmp_path / "home"), listings=started)
    assert store.read()["Batchops"]["skip_unchanged"] == {
        "compare": "size", "new": len(NEW), "changed": 1, "unchanged": 3, "extraneous": 1}
    started = start_listings(src, f"file://{empty}", {}, "", (), AwsSettings())
    store = create_job(replace(opts, params={"TargetResource": f"file://{empty}"}),
                       home=str(tmp_path / "home"), listings=started)
    assert store.read()["Batchops"]["skip_unchanged"]["new"] == 6  # these were
