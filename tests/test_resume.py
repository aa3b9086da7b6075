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

import pytest

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


def _start_and_kill(cli, tmp_path: Path, keys: list[str],
                    chunks_done: int = 1) -> tuple[str, Path, Path]:
    """Run a copy of local `keys` one row per chunk; kill -9 it after `chunks_done` chunks.
    Returns (job id, manifest, source folder)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for k in keys:
        (src / k).write_bytes(k.encode())
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{tmp_path / 'out'}", "--chunk-size", "1", "--workers", "1",
                     "--concurrency", "1", "--max-ops-per-second", "20", "--no-progress",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    job_id = _wait_for_job(cli.home)
    while _done_chunks(cli.home, job_id) < chunks_done:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _done_chunks(cli.home, job_id) < len(keys)  # killed mid-run
    return job_id, m, src


def _rewrite_same_size(m: Path, src: Path) -> None:
    """Rewrite the manifest in place (same inode, same size): other keys, fewer rows."""
    size = m.stat().st_size
    line = f"file://{src},zz"
    body = "".join(f"{line}{i:03d}\n" for i in range(size // (len(line) + 4)))
    body = body[:-1] + "x" * (size - len(body)) + "\n"  # pad the last key to the same size
    for k in {r.split(",")[1] for r in body.splitlines()}:
        (src / k).write_bytes(b"not in the original manifest")
    with m.open("r+b") as f:
        f.write(body.encode())
    assert m.stat().st_size == size


@pytest.mark.parametrize("change", ["rewritten, same size", "appended", "truncated", "deleted"])
def test_the_job_runs_the_manifest_it_was_created_from(cli, tmp_path, change) -> None:
    keys = [f"k{i:03d}" for i in range(40)]
    job_id, m, src = _start_and_kill(cli, tmp_path, keys)
    if change == "rewritten, same size":
        _rewrite_same_size(m, src)
    elif change == "appended":
        with m.open("a") as f:
            f.write(f"file://{src},extra\n")
        (src / "extra").write_bytes(b"x")
    elif change == "truncated":
        os.truncate(m, m.stat().st_size // 3 + 5)  # mid-row, too
    else:
        m.unlink()
    resumed = cli("resume", job_id, "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    job = json.loads(resumed.stdout)["Job"]
    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == len(keys)
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert Counter(decoded_keys(rows)) == Counter(keys)  # the original rows, each once
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == keys


def test_the_job_copy_of_the_manifest_is_owner_only(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "k")])
    m.chmod(0o644)
    run = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
              f"file://{tmp_path / 'out'}", "--json", "--no-progress", check=True)
    job_dir = cli.home / "jobs" / json.loads(run.stdout)["Job"]["JobId"]
    copy = job_dir / "manifest.copy"
    assert copy.read_bytes() == m.read_bytes()
    assert os.stat(copy).st_ino != os.stat(m).st_ino  # a copy, not a link to the original
    for name in ("manifest.copy", "manifest.copy.rows.idx", "chunks.idx"):
        assert (job_dir / name).stat().st_mode & 0o777 == 0o600, name


def _chunk_ranges(job_dir: Path) -> list[tuple[int, int]]:
    data = (job_dir / "chunks.idx").read_bytes()
    values = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]
    return list(zip(values[1:-1], values[2:], strict=True))


def test_resume_reads_only_the_chunks_not_done(cli, tmp_path) -> None:
    keys = [f"k{i:03d}" for i in range(40)]
    job_id, m, src = _start_and_kill(cli, tmp_path, keys, chunks_done=5)
    job_dir = cli.home / "jobs" / job_id
    done = sorted(int(p.stem) for p in (job_dir / "chunks").glob("*.json"))
    ranges = _chunk_ranges(job_dir)
    assert len(ranges) == len(keys) and ranges[0][0] == 0
    assert ranges[-1][1] == (job_dir / "manifest.copy").stat().st_size
    # The original is gone, and the done chunks' bytes in the job's copy are garbage
    # (not UTF-8, not CSV): the resume reads, parses and digests neither.
    m.unlink()
    with (job_dir / "manifest.copy").open("r+b") as f:
        for c in done:
            start, end = ranges[c]
            f.seek(start)
            f.write(b"\xff" * (end - start))
    resumed = cli("resume", job_id, "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["Job"]["Status"] == "Complete"
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert Counter(decoded_keys(rows)) == Counter(keys)
    events = [json.loads(line)["event"] for line in (job_dir / "log").read_text().splitlines()]
    assert events.count("prepared") == 1


@pytest.mark.parametrize("marker", [
    {"chunk": 10**12, "succeeded": 1, "failed": 0},
    {"chunk": -1, "succeeded": 1, "failed": 0},
    {"chunk": 0, "succeeded": 10**12, "failed": 0},
])
def test_a_marker_naming_a_chunk_the_job_lacks_is_refused(cli, tmp_path, marker) -> None:
    keys = [f"k{i:03d}" for i in range(10)]
    job_id, _, _ = _start_and_kill(cli, tmp_path, keys)
    chunks = cli.home / "jobs" / job_id / "chunks"
    if marker["chunk"] == 0:
        (chunks / "000000000000.json").unlink()
    (chunks / f"{marker['chunk']:012d}.json").write_text(json.dumps(marker))
    for command in (["resume", job_id], ["update-job-status", "--job-id", job_id,
                                         "--requested-job-status", "Cancelled"]):
        proc = cli(*command)
        assert proc.returncode == 3, (command, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr
        [error] = [line for line in proc.stderr.splitlines() if line.startswith("batchops:")]
        assert "damaged" in error, error
        assert str(marker["chunk"] if marker["chunk"] else marker["succeeded"]) in error


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
