"""Managing jobs (issue 14 §3): delete-job and prune (never a running job), resume with
the settings that do not change what a job does, and the byte rate limit on folder
copies. The real CLI, local job homes and a job store on the S3 server on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpers import error_lines, job_id_of, write_manifest


def _files(tmp_path: Path, n: int, size: int = 8) -> Path:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (src / f"f{i:04d}").write_bytes(bytes([i % 256]) * size)
    return write_manifest(tmp_path / "m.csv", [(f"file://{src}", f"f{i:04d}") for i in range(n)])


def _quick_job(cli, tmp_path: Path, *extra: str) -> str:  # type: ignore[no-untyped-def]
    m = _files(tmp_path, 3)
    run = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
              f"file://{tmp_path / 'out'}", "--json", "--no-progress", *extra, check=True)
    return job_id_of(run.stdout)


def _slow_run(cli, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:  # type: ignore[no-untyped-def]
    """A copy running at 5 tasks/s, one row per chunk; returns once a chunk is done."""
    m = _files(tmp_path, 60)
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{tmp_path / 'out'}", "--chunk-size", "1", "--workers", "1",
                     "--max-ops-per-second", "5", "--no-progress", *extra,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("job "), line
    job_id = line.split()[1]
    deadline = time.monotonic() + 60
    chunks = cli.home / "jobs" / job_id / "chunks"
    while not (chunks.exists() and any(chunks.glob("*.json"))):
        assert proc.poll() is None and time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    return proc, job_id


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)


# -- delete-job ------------------------------------------------------------------------

def test_delete_job_refuses_a_running_job_then_deletes_it(cli, tmp_path) -> None:
    proc, job_id = _slow_run(cli, tmp_path)
    try:
        refused = cli("delete-job", job_id)
        assert refused.returncode == 3, refused.stderr
        lines = error_lines(refused.stderr)
        assert len(lines) == 1 and "is running" in lines[0], refused.stderr
        assert (cli.home / "jobs" / job_id / "job.json").exists()
        assert proc.poll() is None  # still running, untouched
    finally:
        _stop(proc)
    assert proc.returncode == 130
    done = cli("delete-job", job_id)
    assert done.returncode == 0, done.stderr
    assert not (cli.home / "jobs" / job_id).exists()
    assert json.loads(cli("list-jobs", check=True).stdout)["Jobs"] == []
    again = cli("delete-job", job_id)
    assert again.returncode == 2 and len(error_lines(again.stderr)) == 1, again.stderr


# -- prune -------------------------------------------------------------------------------

def _age(cli, job_id: str, days: int) -> None:  # type: ignore[no-untyped-def]
    """Make a job look as if it ended `days` ago (job.json's TerminationDate)."""
    path = cli.home / "jobs" / job_id / "job.json"
    doc = json.loads(path.read_text())
    when = (datetime.now(UTC) - timedelta(days=days)).isoformat().replace("+00:00", "Z")
    doc["Job"]["TerminationDate"] = doc["Job"]["CreationTime"] = when
    path.write_text(json.dumps(doc))


def test_prune_removes_old_finished_jobs_only(cli, tmp_path) -> None:
    old = _quick_job(cli, tmp_path / "a")
    recent = _quick_job(cli, tmp_path / "b")
    _age(cli, old, 40)
    # An old job that is not finished (Ready, made by create-job) is never pruned.
    m = _files(tmp_path / "c", 2)
    request = {"AccountId": "123456789012", "RoleArn": "arn:aws:iam::123456789012:role/b",
               "ClientRequestToken": "t-prune",
               "Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{tmp_path}/o"}},
               "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                     "Fields": ["Bucket", "Key"]},
                            "Location": {"ObjectArn": str(m),
                                         "ETag": hashlib.md5(m.read_bytes()).hexdigest()}},
               "Report": {"Enabled": False}, "Priority": 10}
    (tmp_path / "req.json").write_text(json.dumps(request))
    ready = json.loads(cli("create-job", "--cli-input-json", f"file://{tmp_path / 'req.json'}",
                           check=True).stdout)["JobId"]
    _age(cli, ready, 40)

    dry = cli("prune", "--older-than", "30d", "--dry-run", check=True)
    assert dry.stdout.split() == ["would", "delete", "job", old]
    assert (cli.home / "jobs" / old).exists()
    done = cli("prune", "--older-than", "30d", "--status", "Complete,Cancelled,Failed",
               check=True)
    assert done.stdout.strip() == f"deleted job {old}"
    assert sorted(p.name for p in (cli.home / "jobs").iterdir()) == sorted([recent, ready])


@pytest.mark.parametrize("flags,words", [
    (("--older-than", "a month"), "expected a number and a unit"),
    (("--older-than", "30d", "--status", "Active"), "never pruned"),
    (("--older-than", "30d", "--status", "Done"), "is not a job status"),
])
def test_prune_refuses_bad_flags_in_one_sentence(cli, flags, words) -> None:
    proc = cli("prune", *flags)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr


def test_delete_job_and_prune_on_an_s3_job_store(cli, s3, bucket, tmp_path) -> None:
    store = f"s3://{bucket}/home"

    def keys(prefix: str) -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
                .get("Contents", [])]

    first = _quick_job(cli, tmp_path / "a", "--job-store", store)
    second = _quick_job(cli, tmp_path / "b", "--job-store", store)
    assert keys(f"home/jobs/{first}/") and keys(f"home/jobs/{second}/")
    # A live lease (another process running the job) keeps delete-job out.
    lease = {"owner": "elsewhere:1:abcd", "expires": time.time() + 600}
    s3.put_object(Bucket=bucket, Key=f"home/jobs/{first}/lock", Body=json.dumps(lease))
    refused = cli("delete-job", first, "--job-store", store)
    assert refused.returncode == 3 and "is running" in refused.stderr, refused.stderr
    assert f"home/jobs/{first}/job.json" in keys(f"home/jobs/{first}/")
    s3.delete_object(Bucket=bucket, Key=f"home/jobs/{first}/lock")
    cli("delete-job", first, "--job-store", store, check=True)
    assert keys(f"home/jobs/{first}/") == []
    # prune, through the same interface.
    body = json.loads(s3.get_object(Bucket=bucket, Key=f"home/jobs/{second}/job.json")
                      ["Body"].read())
    body["Job"]["TerminationDate"] = "2020-01-01T00:00:00.000Z"
    s3.put_object(Bucket=bucket, Key=f"home/jobs/{second}/job.json", Body=json.dumps(body))
    done = cli("prune", "--older-than", "30d", "--job-store", store, check=True)
    assert done.stdout.strip() == f"deleted job {second}"
    assert keys("home/jobs/") == []


# -- resume's settings ------------------------------------------------------------------

def test_resume_takes_settings_that_do_not_change_the_work(cli, tmp_path) -> None:
    proc, job_id = _slow_run(cli, tmp_path)
    _stop(proc)
    doc = json.loads((cli.home / "jobs" / job_id / "job.json").read_text())
    assert doc["Job"]["Status"] == "Paused"
    for flags in (("--target", f"file://{tmp_path}/elsewhere"), ("--operation", "delete"),
                  ("--chunk-size", "5"), ("--manifest", "other.csv")):
        refused = cli("resume", job_id, *flags)
        lines = error_lines(refused.stderr)
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr
        assert f"resume does not take {flags[0]}" in lines[0]
    resumed = cli("resume", job_id, "--workers", "1", "--concurrency", "3",
                  "--max-ops-per-second", "0", "--max-bytes-per-second", "1000000000",
                  "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["Job"]["Status"] == "Complete"
    settings = json.loads((cli.home / "jobs" / job_id / "job.json").read_text())["Batchops"]
    assert (settings["workers"], settings["concurrency"], settings["max_ops_per_second"],
            settings["max_bytes_per_second"]) == (1, 3, 0, 1000000000)
    assert settings["options"]["concurrency"] == 3  # kept for a preparing pass again
    late = cli("resume", job_id, "--report", f"file://{tmp_path}/reports")
    lines = error_lines(late.stderr)
    assert late.returncode == 3 and len(lines) == 1 and "already published" in lines[0]
    bad = cli("resume", job_id, "--concurrency", "0")
    assert bad.returncode == 2 and "--concurrency must be at least 1" in bad.stderr


def test_resume_report_moves_a_report_not_yet_written(cli, tmp_path) -> None:
    proc, job_id = _slow_run(cli, tmp_path)
    _stop(proc)
    reports = tmp_path / "reports"
    resumed = cli("resume", job_id, "--report", f"file://{reports}", "--max-ops-per-second",
                  "0", "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert (reports / f"job-{job_id}" / "manifest.json").exists()


# -- the byte rate limit on folder copies ------------------------------------------------

def test_max_bytes_per_second_limits_folder_copies(cli, tmp_path) -> None:
    """2 MB between folders at 1 MB/s takes at least about 2 s (never an upper bound)."""
    m = _files(tmp_path, 4, size=500_000)
    started = time.monotonic()
    run = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
              f"file://{tmp_path / 'out'}", "--max-bytes-per-second", "1000000",
              "--workers", "1", "--json", "--no-progress", check=True)
    elapsed = time.monotonic() - started
    assert json.loads(run.stdout)["Job"]["ProgressSummary"]["NumberOfTasksSucceeded"] == 4
    assert elapsed >= 1.5, elapsed
    assert all((tmp_path / "out" / f"f{i:04d}").stat().st_size == 500_000 for i in range(4))


def test_a_large_file_is_paced_while_it_is_copied(cli, tmp_path) -> None:
    """At 1 MB/s a 3 MB file is written over about 3 s, not copied at once and waited for
    afterwards: it appears at least ~1.5 s after the small file copied just before it
    (in the same chunk, in order)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a-small").write_bytes(b"x")
    (src / "b-large").write_bytes(os.urandom(3_000_000))
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "a-small"),
                                            (f"file://{src}", "b-large")])
    out = tmp_path / "out"
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{out}", "--max-bytes-per-second", "1000000", "--workers", "1",
                     "--chunk-size", "2", "--no-progress", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while "b-large" not in seen and time.monotonic() < deadline:
        now = time.monotonic()
        for name in (os.listdir(out) if out.exists() else []):
            seen.setdefault(name, now)
        time.sleep(0.01)
    assert proc.wait(60) == 0
    assert seen["b-large"] - seen["a-small"] >= 1.5, seen
    assert (out / "b-large").read_bytes() == (src / "b-large").read_bytes()
