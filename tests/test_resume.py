"""Surviving a stop: kill -9 at a random moment, then `resume`; locks; changed manifests."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from helpers import decoded_keys, read_report, report_manifest_path, write_manifest


def _wait_for_job(home: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = home / "jobs"
        if jobs.exists():
            ids = [p.name for p in jobs.iterdir() if (p / "job.json").exists()]
            if ids:
                return ids[0]
        time.sleep(0.05)
    raise AssertionError("no job appeared")


def _done_chunks(home: Path, job_id: str) -> int:
    return len(list((home / "jobs" / job_id / "chunks").glob("*.json")))


def test_kill_9_at_a_random_moment_then_resume(cli, s3, bucket, tmp_path) -> None:
    keys = [f"obj/{i:05d} k+{i}%.bin" for i in range(300)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode() * 50)
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    out = tmp_path / "out"
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{out}", "--chunk-size", "10", "--workers", "2", "--concurrency",
                     "4", "--max-ops-per-second", "150", "--no-progress",
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    job_id = _wait_for_job(cli.home)
    # Kill somewhere after some chunks are done and before the end.
    deadline = time.monotonic() + 60
    target_done = random.randint(2, 20)
    while _done_chunks(cli.home, job_id) < target_done and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.random() * 0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -9
    done_before = _done_chunks(cli.home, job_id)
    assert 0 < done_before < 30, done_before

    resumed = cli("resume", job_id, "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    job = json.loads(resumed.stdout)["Job"]
    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == len(keys)
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    counts = Counter(decoded_keys(rows))
    assert counts == Counter(keys)  # every row exactly once
    for k in keys:
        assert (out / k).read_bytes() == k.encode() * 50


def test_resume_of_a_complete_job_changes_nothing(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "k")])
    run = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
              f"file://{tmp_path / 'out'}", "--json", "--no-progress", check=True)
    job_id = json.loads(run.stdout)["Job"]["JobId"]
    again = cli("resume", job_id, "--json", "--no-progress", check=True)
    assert json.loads(again.stdout)["Job"] == json.loads(run.stdout)["Job"]


def test_resume_refuses_a_changed_manifest(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    keys = [f"k{i}" for i in range(50)]
    for k in keys:
        (src / k).write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{tmp_path / 'out'}", "--chunk-size", "1", "--workers", "1",
                     "--concurrency", "1", "--no-progress", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    job_id = _wait_for_job(cli.home)
    while _done_chunks(cli.home, job_id) < 1:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(m, "a") as f:
        f.write(f"file://{src},extra\n")
    resumed = cli("resume", job_id)
    assert resumed.returncode == 2
    assert "manifest changed" in resumed.stderr and "Traceback" not in resumed.stderr


def test_second_runner_of_a_job_is_refused_and_stale_lock_is_not(cli, s3, bucket, tmp_path):
    keys = [f"k{i}" for i in range(400)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{tmp_path / 'out'}", "--chunk-size", "5", "--workers", "1",
                     "--concurrency", "1", "--no-progress", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    job_id = _wait_for_job(cli.home)
    while _done_chunks(cli.home, job_id) < 1:
        time.sleep(0.01)
    # describe-job works while the job runs in another process.
    live = json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)["Job"]
    assert live["Status"] == "Active"
    assert live["ProgressSummary"]["TotalNumberOfTasks"] == 400
    second = cli("resume", job_id)
    assert second.returncode == 3 and "already running" in second.stderr
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = cli("resume", job_id, "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr


def test_sigint_stops_cleanly_and_prints_the_resume_command(cli, s3, bucket, tmp_path):
    keys = [f"k{i}" for i in range(200)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{tmp_path / 'out'}", "--chunk-size", "5", "--workers", "2",
                     "--concurrency", "2", "--no-progress", stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
    job_id = _wait_for_job(cli.home)
    while _done_chunks(cli.home, job_id) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"batchops resume {job_id}" in err and "Traceback" not in err
    job = json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)["Job"]
    assert job["Status"] == "Paused"
    resumed = cli("resume", job_id, "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert Counter(decoded_keys(rows)) == Counter(keys)
