"""The job store on an object store (issue 13): `--job-store s3://bucket/prefix` (or
BATCHOPS_HOME=s3://...) against the moto server, through the real CLI: job.json,
markers created with If-None-Match, report parts, the log, the lease that locks a job,
resume after a killed run, and the report published from there. Everything is read
back with boto3."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import SECRET_KEY


def _files(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        (src / f"f{i:05d}").write_bytes(os.urandom(32))
    manifest = tmp_path / "m.csv"
    manifest.write_text("".join(f"src,f{i:05d}\n" for i in range(n)))
    return manifest


def _keys(s3, bucket: str, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def _body(s3, bucket: str, key: str) -> bytes:  # type: ignore[no-untyped-def]
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _report_rows(s3, bucket: str, manifest_url: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    key = manifest_url.split("/", 3)[3]
    manifest = json.loads(_body(s3, bucket, key))
    rows = []
    for part in manifest["Results"]:
        rows += list(csv.reader(io.StringIO(_body(s3, bucket, part["Key"]).decode())))
    return rows


def _copy_flags(tmp_path: Path, manifest: Path, store: str) -> list[str]:
    return ["--manifest", str(manifest), "--operation", "copy",
            "--bucket-map", f"src=file://{tmp_path / 'src'}",
            "--target", f"file://{tmp_path / 'dst'}", "--job-store", store, "--no-progress"]


def test_a_job_kept_on_s3(cli, s3, bucket, tmp_path) -> None:
    manifest = _files(tmp_path, 700)
    store = f"s3://{bucket}/jobs-home"
    done = cli("run", *_copy_flags(tmp_path, manifest, store), "--chunk-size", "100",
               "--workers", "2", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)["Job"]
    assert job["Status"] == "Complete"
    prefix = f"jobs-home/jobs/{job['JobId']}/"
    keys = _keys(s3, bucket, prefix)
    assert prefix + "job.json" in keys
    markers = sorted(k for k in keys if k.startswith(prefix + "chunks/"))
    assert len(markers) == 7
    assert any(k.startswith(prefix + "log/") for k in keys)
    assert prefix + "lock" not in keys  # released
    assert not (cli.home / "jobs").exists()  # nothing about the job in the local home
    # The report: published under the job on S3, every row once, every copy whole.
    doc = json.loads(_body(s3, bucket, prefix + "job.json"))
    url = doc["Batchops"]["report_manifest"]
    assert url.startswith(f"s3://{bucket}/{prefix}report/")
    rows = _report_rows(s3, bucket, url)
    assert sorted(r[1] for r in rows) == [f"f{i:05d}" for i in range(700)]
    for i in range(700):
        name = f"f{i:05d}"
        assert (tmp_path / "dst" / name).read_bytes() == (tmp_path / "src" / name).read_bytes()
    # The other commands read it there too.
    described = json.loads(cli("describe-job", "--job-id", job["JobId"], "--job-store", store,
                               check=True).stdout)["Job"]
    assert described["ProgressSummary"]["NumberOfTasksSucceeded"] == 700
    listed = json.loads(cli("list-jobs", "--job-store", store, check=True).stdout)["Jobs"]
    assert [j["JobId"] for j in listed] == [job["JobId"]]
    # No secret in any object of the job store.
    for key in keys:
        assert SECRET_KEY.encode() not in _body(s3, bucket, key), key


def test_the_lease_locks_the_job_and_a_dead_holder_s_lease_is_taken_over(
        cli, s3, bucket, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BATCHOPS_LEASE_SECONDS", "3")
    manifest = _files(tmp_path, 1200)
    store = f"s3://{bucket}/h"
    run = cli.popen("run", *_copy_flags(tmp_path, manifest, store), "--chunk-size", "50",
                    "--workers", "1", "--max-ops-per-second", "200",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job_ids = {k.split("/")[2] for k in _keys(s3, bucket, "h/jobs/")}
        if job_ids and len([k for k in _keys(s3, bucket, "h/jobs/") if "/chunks/" in k]) >= 2:
            break
        time.sleep(0.1)
    [job_id] = job_ids
    assert f"h/jobs/{job_id}/lock" in _keys(s3, bucket, f"h/jobs/{job_id}/")
    lease = json.loads(_body(s3, bucket, f"h/jobs/{job_id}/lock"))
    assert lease["expires"] > time.time() and str(run.pid) in lease["owner"]
    # A second process is refused while the holder lives (and renews its lease).
    time.sleep(3.5)  # longer than the lease: it was renewed meanwhile
    other = cli("resume", job_id, "--job-store", store, "--no-progress")
    assert other.returncode != 0 and "already running" in other.stderr, other.stderr
    # The holder dies: its lease stays until it expires, then resume takes it over.
    run.send_signal(signal.SIGKILL)
    run.wait(10)
    refused = cli("resume", job_id, "--job-store", store, "--no-progress")
    assert refused.returncode != 0 and "already running" in refused.stderr
    time.sleep(3.2)
    done = cli("resume", job_id, "--job-store", store, "--no-progress", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(_body(s3, bucket, f"h/jobs/{job_id}/job.json"))
    assert doc["Job"]["Status"] == "Complete"
    rows = _report_rows(s3, bucket, doc["Batchops"]["report_manifest"])
    assert sorted(r[1] for r in rows) == [f"f{i:05d}" for i in range(1200)]  # each once


def test_two_attempts_commit_once_on_s3(cli, s3, bucket, tmp_path, monkeypatch) -> None:
    """If-None-Match: * on the marker: the attempt held before its commit loses."""
    monkeypatch.setenv("BATCHOPS_TEST_DUPLICATE_CHUNK", "1")
    monkeypatch.setenv("BATCHOPS_TEST_HOLD_COMMIT", "1:2")
    manifest = _files(tmp_path, 300)
    store = f"s3://{bucket}/d"
    done = cli("run", *_copy_flags(tmp_path, manifest, store), "--chunk-size", "50",
               "--workers", "2", "--max-ops-per-second", "150", "--json")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["Job"]["JobId"]
    prefix = f"d/jobs/{job_id}/"
    events = [json.loads(_body(s3, bucket, k))["event"]
              for k in sorted(_keys(s3, bucket, prefix + "log/"))]
    assert "duplicate-attempt" in events and events.count("commit-lost") == 1, events
    marker = json.loads(_body(s3, bucket, prefix + "chunks/000000000001.json"))
    parts = [k.rsplit("/", 1)[1] for k in _keys(s3, bucket, prefix + "results/chunk-000000000001-")]
    assert parts == [p["name"] for p in marker["parts"]]  # the loser's parts are gone
    doc = json.loads(_body(s3, bucket, prefix + "job.json"))
    rows = _report_rows(s3, bucket, doc["Batchops"]["report_manifest"])
    assert len(rows) == 300 and len({r[1] for r in rows}) == 300


def test_a_job_store_bucket_that_is_not_there(cli, s3, tmp_path) -> None:
    manifest = _files(tmp_path, 3)
    done = cli("run", *_copy_flags(tmp_path, manifest, "s3://no-such-bucket-here/x"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("batchops: --job-store s3://no-such-bucket-here/x: bucket "
                                  "no-such-bucket-here does not exist"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "dst").exists()


def test_a_job_store_url_with_a_secret_is_refused_without_echoing_it(cli, s3) -> None:
    done = cli("list-jobs", "--job-store", "s3://someone:hunter2secret@bucket/x")
    assert done.returncode == 2 and "hunter2secret" not in done.stderr, done.stderr
    assert "password in a URL" in done.stderr


def test_the_job_store_takes_the_command_s_endpoint(cli, s3, bucket, s3_endpoint, tmp_path,
                                                     monkeypatch) -> None:
    """--endpoint-url reaches the job store as it reaches every S3 bucket (and the workers
    and the report with it): nothing in the environment names the server."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    manifest = _files(tmp_path, 40)
    done = cli("run", *_copy_flags(tmp_path, manifest, f"s3://{bucket}/e"),
               "--endpoint-url", s3_endpoint, "--workers", "2", "--chunk-size", "10", "--json")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["Job"]["JobId"]
    assert len(_keys(s3, bucket, f"e/jobs/{job_id}/chunks/")) == 4
    doc = json.loads(_body(s3, bucket, f"e/jobs/{job_id}/job.json"))
    rows = _report_rows(s3, bucket, doc["Batchops"]["report_manifest"].split("?")[0])
    assert len(rows) == 40
    listed = cli("list-jobs", "--job-store", f"s3://{bucket}/e", "--endpoint-url", s3_endpoint)
    assert listed.returncode == 0 and job_id in listed.stdout, listed.stderr
