"""Manifests read from, and reports written to, the S3 server; large objects stream."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os

from batchops.operations.copy import SMALL_OBJECT
from helpers import job_id_of, write_manifest


def test_manifest_from_s3_and_report_to_s3(cli, s3, bucket, tmp_path) -> None:
    for k in ("a", "b c"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    local = write_manifest(tmp_path / "m.csv", [(bucket, "a"), (bucket, "b c"), (bucket, "nope")])
    s3.put_object(Bucket=bucket, Key="manifests/m.csv", Body=local.read_bytes())
    proc = cli("run", "--manifest", f"s3://{bucket}/manifests/m.csv", "--operation", "copy",
               "--target", f"file://{tmp_path / 'out'}", "--report", f"s3://{bucket}/reports",
               "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    job_id = job["JobId"]
    assert job["Report"]["Bucket"] == f"arn:aws:s3:::{bucket}"
    assert job["Report"]["Prefix"] == "reports"
    body = s3.get_object(Bucket=bucket, Key=f"reports/job-{job_id}/manifest.json")["Body"].read()
    manifest = json.loads(body)
    assert manifest["Format"] == "Report_CSV_20180820"
    rows = []
    for part in manifest["Results"]:
        assert part["Bucket"] == bucket and part["Key"].startswith(f"reports/job-{job_id}/results/")
        data = s3.get_object(Bucket=bucket, Key=part["Key"])["Body"].read()
        assert hashlib.md5(data).hexdigest() == part["MD5Checksum"]
        rows += list(csv.reader(io.StringIO(data.decode())))
    assert sorted((r[1], r[3]) for r in rows) == [("a", "succeeded"), ("b+c", "succeeded"),
                                                  ("nope", "failed")]


def test_large_objects_stream_both_ways(cli, s3, bucket, tmp_path) -> None:
    size = SMALL_OBJECT + 3 * 1024 * 1024 + 17  # above the single-request limit: streamed
    data = os.urandom(1024 * 1024) * (size // (1024 * 1024)) + os.urandom(size % (1024 * 1024))
    s3.put_object(Bucket=bucket, Key="big.bin", Body=data, ContentType="application/x-big")
    out = tmp_path / "out"
    m = write_manifest(tmp_path / "m.csv", [(bucket, "big.bin")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"file://{out}",
               "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256((out / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()

    m2 = write_manifest(tmp_path / "m2.csv", [("local", "big.bin")])
    proc = cli("run", "--manifest", str(m2), "--operation", "copy", "--bucket-map",
               f"local=file://{out}", "--target", f"s3://{bucket}/up", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    got = s3.get_object(Bucket=bucket, Key="up/big.bin")
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(data).digest()
    # Uploaded in parts (multipart ETags end in -N).
    assert got["ETag"].strip('"').endswith("-2")
    assert job_id_of(proc.stdout)
