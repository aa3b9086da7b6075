"""Manifests beyond Amazon's CSV: S3 Inventory reports (gzipped CSV or Parquet parts, each
checked against its MD5), generated manifests (`ManifestGenerator.S3JobManifestGenerator`
and `batchops run --from-listing`) over the S3 server and a local folder, and the retry
recipe (a failed-tasks report part is a manifest of exactly the failures).

Every create-job request and describe/list answer is checked against botocore's
s3control model (helpers from test_conformance).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import polars as pl
import pytest

from helpers import decoded_keys, read_report, report_manifest_path
from test_conformance import (
    create,
    describe,
    describe_all,
    job_request,
    list_jobs,
    report,
    request_file,
    side_by_side,
    tagging,
)

INVENTORY = "S3InventoryReport_CSV_20161130"
GENERATED = "S3InventoryReport_CSV_20211130"
CHECKSUM = {"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "CRC32",
                                        "ChecksumType": "FULL_OBJECT"}}
SPECIAL_KEYS = ["plain.txt", "dir/with space.txt", "a+b=c&d", "100%/done", "ünï/✓ ok",
                "commas,in,key.csv", "quote\"d 'key'"]


def _rows(home: Path, job_id: str) -> list[list[str]]:
    _, rows = read_report(report_manifest_path(home, job_id))
    return rows


def _keys(home: Path, job_id: str) -> list[str]:
    return decoded_keys(_rows(home, job_id))


def _tags(s3, bucket: str, key: str, version: str | None = None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    extra = {"VersionId": version} if version else {}
    return {t["Key"]: t["Value"] for t in
            s3.get_object_tagging(Bucket=bucket, Key=key, **extra)["TagSet"]}


# -- S3 Inventory -----------------------------------------------------------------------------

def put_inventory(s3, bucket: str, rows: list[tuple[str, str, str]], fmt: str = "CSV",  # type: ignore[no-untyped-def]
                  parts: int = 2, md5_of: dict[int, str] | None = None,
                  missing_part: int | None = None, prefix: str = "inv") -> dict[str, Any]:
    """Write an S3 Inventory report (manifest.json + data parts) into `bucket` under
    `prefix`; return create-job's Manifest member pointing at it (the manifest's ETag)."""
    files = []
    for n in range(parts):
        part = rows[n::parts]
        if fmt == "CSV":  # Amazon's layout: every field quoted, keys URL-encoded
            text = "".join(f'"{b}","{quote_plus(k, safe="/")}","{v}","true","{len(k)}"\n'
                           for b, k, v in part)
            data = gzip.compress(text.encode())
            key = f"{prefix}/data/part-{n}.csv.gz"
        else:  # Parquet: keys as they are
            buf = io.BytesIO()
            pl.DataFrame({"bucket": [b for b, _, _ in part], "key": [k for _, k, _ in part],
                          "version_id": [v or None for _, _, v in part],
                          "is_latest": [True] * len(part), "size": [len(k) for _, k, _ in part]},
                         schema={"bucket": pl.String, "key": pl.String, "version_id": pl.String,
                                 "is_latest": pl.Boolean, "size": pl.Int64}).write_parquet(buf)
            data = buf.getvalue()
            key = f"{prefix}/data/part-{n}.parquet"
        if n != missing_part:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
        md5 = (md5_of or {}).get(n, hashlib.md5(data).hexdigest())
        files.append({"key": key, "size": len(data), "MD5checksum": md5})
    doc = {"sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{bucket}",
           "version": "2016-11-30", "creationTimestamp": "1700000000000", "fileFormat": fmt,
           "fileSchema": "Bucket, Key, VersionId, IsLatest, Size", "files": files}
    put = s3.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json",
                        Body=json.dumps(doc).encode())
    return {"Spec": {"Format": INVENTORY},
            "Location": {"ObjectArn": f"arn:aws:s3:::{bucket}/{prefix}/manifest.json",
                         "ETag": put["ETag"].strip('"')}}


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_an_inventory_report_runs_every_listed_object(cli, s3, bucket, tmp_path, fmt) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    listed = []
    for k in SPECIAL_KEYS:
        listed.append((bucket, k, s3.put_object(Bucket=bucket, Key=k, Body=b"x")["VersionId"]))
    old = s3.put_object(Bucket=bucket, Key="doc", Body=b"old")["VersionId"]
    new = s3.put_object(Bucket=bucket, Key="doc", Body=b"new")["VersionId"]
    listed.append((bucket, "doc", old))  # an older version, by its version id
    s3.put_object(Bucket=bucket, Key="not listed", Body=b"x")
    manifest = put_inventory(s3, bucket, listed, fmt)
    job_id = create(cli, tmp_path, job_request(tagging(("inventoried", fmt)), manifest),
                    "--workers", "1")
    job = describe(cli, job_id)
    assert job["Manifest"]["Spec"]["Format"] == INVENTORY
    assert job["Manifest"]["Location"] == manifest["Location"]
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(listed)
    job_dir = cli.home / "jobs" / job_id
    written = [p for p in job_dir.rglob("*") if p.is_file()
               and (p.name.startswith("manifest") or p.parent.name == "inventory")]
    assert {p.name for p in written} >= {"manifest.source", "manifest.csv"}
    assert {p.name: p.stat().st_mode & 0o777 for p in written} == \
        {p.name: 0o600 for p in written}  # the manifest and its parts are owner-only
    cli("runner", check=True)
    assert describe(cli, job_id)["Status"] == "Complete"
    rows = _rows(cli.home, job_id)
    assert Counter((r[0], k, r[2]) for r, k in zip(rows, decoded_keys(rows), strict=True)) == \
        Counter(listed)  # every listed object, with its version, exactly once
    assert {r[3] for r in rows} == {"succeeded"}
    for _, k, v in listed:
        assert _tags(s3, bucket, k, v) == {"inventoried": fmt}, k
    assert _tags(s3, bucket, "doc", new) == {}  # the newest version was not listed
    assert _tags(s3, bucket, "not listed") == {}


def test_inventory_parts_are_checked_against_their_md5(cli, s3, bucket, tmp_path) -> None:
    rows = [(bucket, f"k{i}", "") for i in range(6)]
    manifest = put_inventory(s3, bucket, rows, parts=3, md5_of={1: "0" * 32})
    err = create(cli, tmp_path, job_request(tagging(), manifest), expect=2)
    assert "inv/data/part-1.csv.gz" in err and "MD5" in err
    assert err.strip().count("\n") == 0
    manifest = put_inventory(s3, bucket, rows, parts=3, missing_part=2, prefix="inv2")
    err = create(cli, tmp_path, job_request(tagging(), manifest), expect=2)
    assert "inv2/data/part-2.csv.gz" in err and err.strip().count("\n") == 0
    jobs = list_jobs(cli)["Jobs"]
    assert [j["Status"] for j in jobs] == ["Failed", "Failed"]
    reasons = [describe(cli, j["JobId"])["FailureReasons"][0]["FailureReason"] for j in jobs]
    assert any("part-1" in r and "MD5" in r for r in reasons)
    assert any("part-2" in r for r in reasons)


# -- generated manifests --------------------------------------------------------------------

def generated(source: str, flt: dict[str, Any], operation: dict[str, Any],
              output: dict[str, Any] | None = None) -> dict[str, Any]:
    gen: dict[str, Any] = {"SourceBucket": source, "EnableManifestOutput": bool(output),
                           "Filter": flt}
    if output:
        gen["ManifestOutputLocation"] = output
    return {"Operation": operation, "ManifestGenerator": {"S3JobManifestGenerator": gen},
            "Report": report(), "Priority": 10}


OLD = {"logs/a.gz": 3, "logs/b.txt": 10}  # made before the cut
NEW = {"data/c.txt": 20, "data/big.bin": 500, "top.txt": 100}  # made after the cut
ALL = {**OLD, **NEW}
CLASSES = {"logs/b.txt": "STANDARD_IA", "data/big.bin": "GLACIER"}


def filters(cut: str) -> list[tuple[dict[str, Any], set[str]]]:
    return [
        ({"CreatedAfter": cut}, set(NEW)),
        ({"CreatedBefore": cut}, set(OLD)),
        ({"KeyNameConstraint": {"MatchAnyPrefix": ["logs/"]}}, {"logs/a.gz", "logs/b.txt"}),
        ({"KeyNameConstraint": {"MatchAnyPrefix": ["data/", "top"]}},
         {"data/c.txt", "data/big.bin", "top.txt"}),
        ({"KeyNameConstraint": {"MatchAnySuffix": [".txt"]}},
         {"logs/b.txt", "data/c.txt", "top.txt"}),
        ({"KeyNameConstraint": {"MatchAnySubstring": ["/b", "big"]}},
         {"logs/b.txt", "data/big.bin"}),
        ({"KeyNameConstraint": {"MatchAnyPrefix": ["data/"], "MatchAnySuffix": [".txt"]}},
         {"data/c.txt"}),
        ({"ObjectSizeGreaterThanBytes": 100}, {"data/big.bin"}),  # 100 itself is not greater
        ({"ObjectSizeLessThanBytes": 10}, {"logs/a.gz"}),  # 10 itself is not less
        ({"ObjectSizeGreaterThanBytes": 5, "ObjectSizeLessThanBytes": 100},
         {"logs/b.txt", "data/c.txt"}),
    ]


def _run_filters(cli, tmp_path: Path, source: str, cases: list[tuple[dict[str, Any], set[str]]],  # type: ignore[no-untyped-def]
                 operation: dict[str, Any]) -> None:
    """One job per filter, created and run two at a time (create-job processes side by
    side, two runners side by side); each report holds exactly the expected keys."""
    created = side_by_side(cli, [
        ["create-job", "--cli-input-json",
         f"file://{request_file(tmp_path, generated(source, flt, operation))}", "--workers", "1"]
        for flt, _ in cases])
    assert all(code == 0 for code, _, _ in created), created
    ids = [json.loads(out)["JobId"] for _, out, _ in created]
    runners = side_by_side(cli, [["runner"], ["runner"]])
    assert all(code == 0 for code, _, _ in runners), runners
    for job_id, job, (flt, expected) in zip(ids, describe_all(cli, ids), cases, strict=True):
        assert job["Status"] == "Complete", (flt, job)
        assert job["ManifestGenerator"]["S3JobManifestGenerator"]["Filter"] == flt
        assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(expected), flt
        keys = _keys(cli.home, job_id)
        assert sorted(keys) == sorted(expected), flt  # exactly these, each once


def _wait_for_the_next_second() -> str:
    """A cut-off between objects made before and after it (S3 times have 1 s precision)."""
    now = time.time()
    cut = int(now) + 1
    time.sleep(cut + 1.05 - now)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cut))


def test_generated_manifest_filters_over_s3(cli, s3, bucket, tmp_path) -> None:
    for k, size in OLD.items():
        s3.put_object(Bucket=bucket, Key=k, Body=b"x" * size,
                      StorageClass=CLASSES.get(k, "STANDARD"))
    cut = _wait_for_the_next_second()
    for k, size in NEW.items():
        s3.put_object(Bucket=bucket, Key=k, Body=b"x" * size,
                      StorageClass=CLASSES.get(k, "STANDARD"))
    # Each kind of filter once (combinations are covered over a folder: same predicate).
    cases = [case for case in filters(cut) if len(case[0]) == 1 and
             len(case[0].get("KeyNameConstraint", {"one": 1})) == 1 and
             case[0] != {"KeyNameConstraint": {"MatchAnyPrefix": ["logs/"]}}] + [
        ({"MatchAnyStorageClass": ["GLACIER", "STANDARD_IA"]}, {"logs/b.txt", "data/big.bin"}),
        ({"KeyNameConstraint": {"MatchAnyPrefix": ["lo", "data/b"]}},  # not whole segments
         {"logs/a.gz", "logs/b.txt", "data/big.bin"}),
    ]
    _run_filters(cli, tmp_path, f"arn:aws:s3:::{bucket}", cases, tagging(("selected", "yes")))
    assert _tags(s3, bucket, "top.txt") == {"selected": "yes"}


def _folder(root: Path) -> str:
    """The objects in a local folder, OLD ones dated 2001 and NEW ones 2021."""
    for k, size in ALL.items():
        path = root / k
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        when = time.mktime((2001 if k in OLD else 2021, 6, 1, 0, 0, 0, 0, 0, 0))
        os.utime(path, (when, when))
    return f"file://{root}"


def test_generated_manifest_filters_over_a_folder(cli, tmp_path) -> None:
    source = _folder(tmp_path / "listed")
    cases = filters("2010-01-01T00:00:00Z") + [
        ({"MatchAnyStorageClass": ["STANDARD", "GLACIER"]}, set(ALL)),  # a folder: STANDARD
    ]
    _run_filters(cli, tmp_path, source, cases, CHECKSUM)


def test_prefixes_that_are_not_whole_segments_over_a_folder(cli, tmp_path) -> None:
    source = _folder(tmp_path / "listed")
    cases = [({"KeyNameConstraint": {"MatchAnyPrefix": ["lo"]}}, {"logs/a.gz", "logs/b.txt"}),
             ({"KeyNameConstraint": {"MatchAnyPrefix": ["logs/b"]}}, {"logs/b.txt"}),
             ({"KeyNameConstraint": {"MatchAnyPrefix": ["t"]}}, {"top.txt"})]
    _run_filters(cli, tmp_path, source, cases, CHECKSUM)


def test_the_generated_manifest_is_written_and_can_be_reused(cli, s3, bucket, tmp_path) -> None:
    for k, size in ALL.items():
        s3.put_object(Bucket=bucket, Key=k, Body=b"x" * size)
    output = {"Bucket": f"arn:aws:s3:::{bucket}", "ManifestPrefix": "generated",
              "ManifestFormat": GENERATED}
    flt = {"KeyNameConstraint": {"MatchAnySuffix": [".txt"]}}
    expected = {"logs/b.txt", "data/c.txt", "top.txt"}
    job_id = create(cli, tmp_path, generated(f"arn:aws:s3:::{bucket}", flt,
                                             tagging(("first", "1")), output), "--workers", "1")
    job = describe(cli, job_id)
    descriptor = job["GeneratedManifestDescriptor"]
    assert descriptor["Format"] == GENERATED
    arn = descriptor["Location"]["ObjectArn"]
    assert arn.startswith(f"arn:aws:s3:::{bucket}/generated/") and arn.endswith("manifest.json")
    key = arn.split("/", 1)[1]
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ETag"].strip('"') == descriptor["Location"]["ETag"]
    doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert doc["destinationBucket"] == f"arn:aws:s3:::{bucket}" and doc["fileFormat"] == "CSV"
    listed = set()
    for part in doc["files"]:
        data = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read()
        assert hashlib.md5(data).hexdigest() == part["MD5checksum"]
        assert len(data) == part["size"]
        listed |= {line.split(",")[1] for line in gzip.decompress(data).decode().splitlines()}
    assert listed == expected
    cli("runner", check=True)
    assert sorted(_keys(cli.home, job_id)) == sorted(expected)

    # The generated manifest is an inventory manifest: a second job reuses it.
    again = create(cli, tmp_path, job_request(tagging(("second", "2")), {
        "Spec": {"Format": INVENTORY}, "Location": descriptor["Location"]}), "--workers", "1")
    cli("runner", check=True)
    assert describe(cli, again)["Status"] == "Complete"
    assert sorted(_keys(cli.home, again)) == sorted(expected)
    assert all(_tags(s3, bucket, k) == {"second": "2"} for k in expected)


def test_the_generated_manifest_is_written_to_a_folder(cli, tmp_path) -> None:
    source = _folder(tmp_path / "listed")
    out = tmp_path / "manifests"
    output = {"Bucket": f"file://{out}", "ManifestFormat": GENERATED}
    flt = {"KeyNameConstraint": {"MatchAnyPrefix": ["data/"]}}
    job_id = create(cli, tmp_path, generated(source, flt, CHECKSUM, output))
    descriptor = describe(cli, job_id)["GeneratedManifestDescriptor"]
    path = Path(descriptor["Location"]["ObjectArn"][len("file://"):])
    assert path == out / f"job-{job_id}" / "manifest.json"
    assert hashlib.md5(path.read_bytes()).hexdigest() == descriptor["Location"]["ETag"]
    [part] = json.loads(path.read_text())["files"]
    data = (out / part["key"]).read_bytes()
    assert hashlib.md5(data).hexdigest() == part["MD5checksum"]
    assert sorted(line.split(",")[1] for line in gzip.decompress(data).decode().splitlines()) \
        == ["data/big.bin", "data/c.txt"]


def test_run_from_listing(cli, s3, bucket, tmp_path) -> None:
    for k, size in ALL.items():
        s3.put_object(Bucket=bucket, Key=k, Body=b"x" * size)
    proc = cli("run", "--from-listing", f"s3://{bucket}", "--prefix", "data/", "--prefix", "top",
               "--larger-than", "50", "--operation", "put-tagging", "--tag", "big=yes",
               "--workers", "1", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert sorted(_keys(cli.home, job["JobId"])) == ["data/big.bin", "top.txt"]
    assert {k for k in ALL if _tags(s3, bucket, k)} == {"data/big.bin", "top.txt"}
    described = describe(cli, job["JobId"])
    flt = described["ManifestGenerator"]["S3JobManifestGenerator"]["Filter"]
    assert flt == {"KeyNameConstraint": {"MatchAnyPrefix": ["data/", "top"]},
                   "ObjectSizeGreaterThanBytes": 50}

    source = _folder(tmp_path / "listed")
    proc = cli("run", "--from-listing", source, "--suffix", ".txt", "--smaller-than", "50",
               "--created-after", "2010-01-01T00:00:00Z", "--operation", "compute-checksum",
               "--checksum-algorithm", "SHA256", "--in-process", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job_id = json.loads(proc.stdout)["Job"]["JobId"]
    rows = _rows(cli.home, job_id)
    assert decoded_keys(rows) == ["data/c.txt"]
    assert json.loads(rows[0][6])["ChecksumHex"] == hashlib.sha256(b"x" * 20).hexdigest()


# -- the retry recipe ------------------------------------------------------------------------

def test_a_failed_tasks_part_retries_exactly_the_failures(cli, s3, bucket, tmp_path) -> None:
    here = ["a.txt", "dir/b c.txt", "ok+1"]
    gone = ["gone/ü x+1", "gone/100%", "gone/comma,key"]
    for k in here:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    m = tmp_path / "m.csv"
    m.write_text("".join(f"{bucket},{quote_plus(k, safe='/')}\n" for k in here + gone))
    first = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "try=1",
                "--workers", "1", "--json", "--no-progress")
    assert first.returncode == 1, first.stderr  # completed; some tasks failed
    first_id = json.loads(first.stdout)["Job"]["JobId"]
    rows = _rows(cli.home, first_id)
    assert sorted(k for r, k in zip(rows, decoded_keys(rows), strict=True)
                  if r[3] == "failed") == sorted(gone)
    results = report_manifest_path(cli.home, first_id).parent / "results"
    failed_parts = sorted(results.glob("*-failed.csv"))
    assert failed_parts
    for k in gone:
        s3.put_object(Bucket=bucket, Key=k, Body=b"back")
    retries = [cli("run", "--manifest", str(part), "--operation", "put-tagging", "--tag",
                   "try=2", "--workers", "1", "--json", "--no-progress")
               for part in failed_parts]
    retried = []
    for proc in retries:
        assert proc.returncode == 0, proc.stderr
        rows = _rows(cli.home, json.loads(proc.stdout)["Job"]["JobId"])
        assert {r[3] for r in rows} == {"succeeded"}
        retried += decoded_keys(rows)
    assert sorted(retried) == sorted(gone)  # exactly the failures, each once
    assert {k: _tags(s3, bucket, k)["try"] for k in here + gone} == {
        **{k: "1" for k in here}, **{k: "2" for k in gone}}
