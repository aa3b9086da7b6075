"""`batchops retry-failed JOB_ID` (issue 14 §3): a new job over every failed task of a
finished job, all chunks' failed parts, each failed row once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from helpers import (
    decoded_keys,
    error_lines,
    job_id_of,
    read_report,
    report_manifest_path,
    write_manifest,
)


def _report(cli, job_id: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return read_report(report_manifest_path(cli.home, job_id))[1]


def _describe(cli, job_id: str) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)["Job"]


def test_retry_failed_over_many_chunks_retries_each_failed_row_once(cli, s3, bucket,
                                                                    tmp_path) -> None:
    keys = [f"k{i:02d} +x" for i in range(12)]
    # In chunks 0, 1 (two of its rows), 2 and 3 (3 rows each).
    missing = {keys[1], keys[4], keys[5], keys[7], keys[10]}
    for k in keys:
        if k not in missing:
            s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    out = tmp_path / "out"
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    first = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"file://{out}",
                "--chunk-size", "3", "--workers", "2", "--json", "--no-progress")
    assert first.returncode == 1, first.stderr
    old_id = job_id_of(first.stdout)
    failed_parts = list((cli.home / "jobs" / old_id / "results").glob("*-failed.csv"))
    assert len(failed_parts) == 4  # one failed part per chunk: what the old recipe met
    for k in missing:  # the cause is fixed
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())

    proc = cli("retry-failed", old_id, "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    new_id = job_id_of(proc.stdout)
    assert new_id != old_id and f"job {new_id}" in proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(missing)
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == len(missing)
    rows = _report(cli, new_id)
    assert Counter(decoded_keys(rows)) == Counter(missing)  # each failed row once
    for k in keys:
        assert (out / k).read_bytes() == k.encode()
    described = _describe(cli, new_id)
    assert old_id in described["Description"]
    assert described["Operation"] == _describe(cli, old_id)["Operation"]  # same target
    tags = json.loads(cli("get-job-tagging", "--job-id", new_id, check=True).stdout)["Tags"]
    assert {"Key": "batchops:retry-of", "Value": old_id} in tags


def test_retry_failed_of_a_verify_job_copies_what_differs(cli, tmp_path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for k in ("a", "b", "c"):
        (src / k).write_bytes(b"data " + k.encode())
    (dst / "a").write_bytes(b"data a")
    (dst / "b").write_bytes(b"stale")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in "abc"])
    verify = cli("run", "--manifest", str(m), "--operation", "verify", "--target",
                 f"file://{dst}", "--json", "--no-progress")
    assert verify.returncode == 1, verify.stderr
    proc = cli("retry-failed", job_id_of(verify.stdout), "--operation", "copy",
               "--operation-overrides", '{"TargetKeyPrefix": ""}', "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert sorted(decoded_keys(_report(cli, job_id_of(proc.stdout)))) == ["b", "c"]
    assert [(dst / k).read_bytes() for k in "abc"] == [b"data a", b"data b", b"data c"]


def test_retry_failed_with_no_failures_creates_no_job(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "k")])
    run = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
              f"file://{tmp_path / 'out'}", "--json", "--no-progress", check=True)
    proc = cli("retry-failed", job_id_of(run.stdout))
    assert proc.returncode == 0, proc.stderr
    assert "no failed task" in proc.stderr
    assert len(list((cli.home / "jobs").iterdir())) == 1


def test_retry_failed_refuses_bad_input_in_one_sentence(cli, tmp_path: Path) -> None:
    missing = cli("retry-failed", "no-such-job")
    assert missing.returncode == 2 and len(error_lines(missing.stderr)) == 1, missing.stderr
    src = tmp_path / "src"
    src.mkdir()
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "absent")])
    run = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
              f"file://{tmp_path / 'out'}", "--json", "--no-progress")
    job_id = job_id_of(run.stdout)
    for flags, words in ((("--operation-overrides", "[1]"), "JSON object"),
                         (("--operation-overrides", "{bad"), "not valid JSON"),
                         (("--operation", "frobnicate"), "unknown operation")):
        proc = cli("retry-failed", job_id, *flags)
        lines = error_lines(proc.stderr)
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr
    assert len(list((cli.home / "jobs").iterdir())) == 1  # no job made


def test_retry_failed_refuses_a_job_that_has_not_finished(cli, tmp_path: Path) -> None:
    import hashlib

    m = write_manifest(tmp_path / "m.csv", [(f"file://{tmp_path}", "k")])
    request = {"AccountId": "123456789012", "RoleArn": "arn:aws:iam::123456789012:role/b",
               "ClientRequestToken": "t-ready",
               "Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{tmp_path}/o"}},
               "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                     "Fields": ["Bucket", "Key"]},
                            "Location": {"ObjectArn": str(m),
                                         "ETag": hashlib.md5(m.read_bytes()).hexdigest()}},
               "Report": {"Enabled": False}, "Priority": 10}
    (tmp_path / "req.json").write_text(json.dumps(request))
    ready = json.loads(cli("create-job", "--cli-input-json", f"file://{tmp_path / 'req.json'}",
                           check=True).stdout)["JobId"]
    proc = cli("retry-failed", ready)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 3 and len(lines) == 1 and "is Ready" in lines[0], proc.stderr
    assert len(list((cli.home / "jobs").iterdir())) == 1


def test_retry_failed_on_an_s3_job_store(cli, s3, bucket, tmp_path: Path) -> None:
    store = f"s3://{bucket}/home"
    src = tmp_path / "src"
    src.mkdir()
    for k in ("a", "c"):
        (src / k).write_bytes(k.encode())
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in "abcd"])
    first = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
                f"file://{tmp_path / 'out'}", "--chunk-size", "2", "--job-store", store,
                "--json", "--no-progress")
    assert first.returncode == 1, first.stderr
    for k in ("b", "d"):
        (src / k).write_bytes(k.encode())
    proc = cli("retry-failed", job_id_of(first.stdout), "--job-store", store, "--json",
               "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c", "d"]



def _listing_copy_with_a_failure(cli, tmp_path, *flags):  # type: ignore[no-untyped-def]
    """`run --from-listing` of src (ok.txt, blocked) to dst, where a folder stands in
    blocked's place so that its row fails: (the job's id, dst)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "ok.txt").write_bytes(b"ok")
    (src / "blocked").write_bytes(b"file")
    (dst / "blocked").mkdir(parents=True)
    (dst / "blocked" / "x").write_bytes(b"x")
    first = cli("run", "--from-listing", f"file://{src}", "--operation", "copy",
                "--target", f"file://{dst}", *flags, "--json", "--no-progress")
    assert first.returncode == 1, first.stderr
    return job_id_of(first.stdout), dst


def test_retry_failed_of_a_skip_unchanged_listing_job(cli, tmp_path) -> None:
    """A job made by `run --from-listing ... --skip-unchanged` (no manifest of its own):
    its retry is a job over the failed rows, not refused for want of a listing."""
    old_id, dst = _listing_copy_with_a_failure(cli, tmp_path, "--skip-unchanged", "size")
    (dst / "blocked" / "x").unlink()  # the cause is fixed
    (dst / "blocked").rmdir()
    proc = cli("retry-failed", old_id, "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 1
    assert (dst / "blocked").read_bytes() == b"file"
    assert (dst / "ok.txt").read_bytes() == b"ok"


def test_retry_failed_takes_a_setting_of_zero(cli, tmp_path) -> None:
    """`--max-ops-per-second 0` (no limit) is a setting, not "not given": the new job
    does not keep the old job's limit."""
    old_id, _ = _listing_copy_with_a_failure(cli, tmp_path, "--max-ops-per-second", "5")
    proc = cli("retry-failed", old_id, "--max-ops-per-second", "0", "--json", "--no-progress")
    new_id = job_id_of(proc.stdout)
    old = json.loads((cli.home / "jobs" / old_id / "job.json").read_text())["Batchops"]
    new = json.loads((cli.home / "jobs" / new_id / "job.json").read_text())["Batchops"]
    assert old["max_ops_per_second"] == 5
    assert new["max_ops_per_second"] == 0
