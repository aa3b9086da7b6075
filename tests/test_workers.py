"""Worker processes: a killed worker's chunks run again; progress shows on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from helpers import decoded_keys, read_report, report_manifest_path, write_manifest
from test_resume import _done_chunks, _wait_for_job


def _workers(pid: int) -> list[int]:
    """Worker processes of a run: the interpreters it started with batchops.execute.worker entry
    point (read from /proc, whose command lines are never cut to a terminal's width)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and "batchops.execute.worker" in cmdline:
            found.append(int(entry.name))
    return found


def test_killed_worker_is_replaced_and_its_chunks_run_again(cli, s3, bucket, tmp_path):
    keys = [f"k{i:04d}" for i in range(400)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    out = tmp_path / "out"
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{out}", "--chunk-size", "10", "--workers", "2", "--concurrency",
                     "2", "--max-ops-per-second", "100", "--json", "--no-progress",
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job_id = _wait_for_job(cli.home)
    while _done_chunks(cli.home, job_id) < 2:
        time.sleep(0.01)
    deadline = time.monotonic() + 10
    while not (workers := _workers(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers, "no worker processes found"
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    job = json.loads(stdout)["Job"]
    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == len(keys)
    log = (cli.home / "jobs" / job_id / "log").read_text()
    assert '"event":"worker-died"' in log
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert Counter(decoded_keys(rows)) == Counter(keys)
    assert all((out / k).read_bytes() == k.encode() for k in keys)


def test_live_progress_on_a_terminal(home, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"k{i}").write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", f"k{i}") for i in range(300)])
    leader, follower = pty.openpty()
    env = dict(os.environ, BATCHOPS_HOME=str(home), COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "batchops", "run", "--manifest", str(m),
                             "--operation", "copy", "--target", f"file://{tmp_path / 'out'}",
                             "--chunk-size", "50", "--workers", "1"],
                            stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    screen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        screen += data
    proc.wait(30)
    os.close(leader)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "300/300" in text and "failed 0" in text and "tasks/s" in text, text
    assert "Complete: 300 succeeded" in text


def test_large_chunks_cross_the_pipe_whole(cli, tmp_path) -> None:
    """Chunks much larger than a pipe buffer reach the workers (regression: a worker
    reading its pipe from the event loop saw a half-arrived chunk and quit)."""
    m = tmp_path / "m.csv"
    with m.open("w") as f:
        for i in range(60_000):
            f.write(f"bucket,some/long/prefix/for/this/key/{i:012d}-{'x' * 40}.dat\n")
    proc = cli("run", "--manifest", str(m), "--operation", "noop", "--workers", "2",
               "--chunk-size", "20000", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 60_000
    log = (cli.home / "jobs" / job["JobId"] / "log").read_text()
    assert "worker-died" not in log


def _job_ids(home: Path) -> set[str]:
    jobs = home / "jobs"
    return {p.name for p in jobs.iterdir() if (p / "job.json").exists()} if jobs.exists() \
        else set()


def _maps(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "maps").read_text()
    except OSError:
        return ""


def test_only_chunks_on_remote_stores_start_an_event_loop(cli, s3, bucket, tmp_path) -> None:
    """Workers load uvloop (and asyncio) only for a chunk that needs an event loop: a
    local job's workers never do; a worker meeting S3 chunks mid-job starts the loop and
    every chunk, before and after, is reported once."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    local = [f"l{i:03d}" for i in range(60)]
    for k in local:
        (src / k).write_bytes(k.encode())
    remote = [f"s{i:03d}" for i in range(20)]
    for k in remote:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())

    seen: set[str] = set()

    def run(rows: list[tuple[str, str]], workers: str, done_before_look: int) -> str:
        m = write_manifest(tmp_path / f"m{len(rows)}.csv", rows)
        proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                         f"file://{out}", "--bucket-map", f"loc=file://{src}",
                         "--chunk-size", "10", "--workers", workers,
                         "--max-ops-per-second", "40", "--json", "--no-progress",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not (new := _job_ids(cli.home) - seen) and time.monotonic() < deadline:
            time.sleep(0.02)
        [job_id] = new
        seen.add(job_id)
        while _done_chunks(cli.home, job_id) < done_before_look and proc.poll() is None:
            time.sleep(0.02)
        maps = "".join(_maps(pid) for pid in _workers(proc.pid))
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert json.loads(stdout)["Job"]["Status"] == "Complete"
        _, report = read_report(report_manifest_path(cli.home, job_id))
        assert Counter(decoded_keys(report)) == Counter(k for _, k in rows)
        return maps

    maps = run([("loc", k) for k in local], "2", 2)
    assert "_localfs" in maps  # the workers were seen, copying
    assert "uvloop" not in maps
    mixed = [("loc", k) for k in local[:30]] + [(bucket, k) for k in remote] + \
        [("loc", k) for k in local[30:]]
    maps = run(mixed, "1", 6)
    assert "uvloop" in maps
    assert all((out / k).read_bytes() == k.encode() for k in local + remote)


def test_a_small_job_starts_only_the_workers_it_can_use(tmp_path) -> None:
    import argparse

    from batchops.cli.main import _workers_worth_starting

    def worth(rows: int, **flags: object) -> int:
        m = tmp_path / f"m{rows}.csv"
        m.write_text("".join(f"b,k{i}\n" for i in range(rows)))
        args = dict(manifest=str(m), workers=2, chunk_size=0, max_ops_per_second=0.0,
                    max_bytes_per_second=0.0)
        args.update(flags)
        return _workers_worth_starting(argparse.Namespace(**args))

    assert worth(50) == 1  # one chunk: the second worker would be started and killed
    assert worth(50, chunk_size=10) == 2
    assert worth(20_000) == 2
    assert worth(20_000, workers=8) == 8
    assert worth(0) == 1
    assert worth(50, manifest="s3://bucket/m.csv") == 2  # remote: not known before


def test_a_module_in_the_current_folder_does_not_reach_the_workers(home, tmp_path) -> None:
    """Workers run `python -P`: a `copy.py` where the user stands is not imported."""
    cwd, src, out = tmp_path / "here", tmp_path / "src", tmp_path / "out"
    cwd.mkdir()
    src.mkdir()
    (cwd / "copy.py").write_text("raise SystemExit('the copy.py of the current folder ran')\n")
    (src / "k").write_bytes(b"data")
    m = write_manifest(tmp_path / "m.csv", [("src", "k")])
    exe = Path(sys.executable).with_name("batchops")
    proc = subprocess.run([str(exe), "run", "--manifest", str(m), "--operation", "copy",
                           "--target", f"file://{out}", "--bucket-map", f"src=file://{src}",
                           "--no-progress"], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, BATCHOPS_HOME=str(home)), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "k").read_bytes() == b"data"


def test_noop_per_task_through_workers_reports_every_row_once(cli, tmp_path) -> None:
    """The per-task noop (the runner-ceiling benchmark) on two worker processes: every
    manifest row is in the report once, succeeded."""
    m = tmp_path / "m.csv"
    keys = [f"k/{i:05d}" for i in range(3000)]
    write_manifest(m, [("bucket", k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", '{"BatchopsNoop": {"PerTask": true}}',
               "--workers", "2", "--chunk-size", "1000", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["Operation"] == {"BatchopsNoop": {"PerTask": True}}
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 3000
    _, rows = read_report(report_manifest_path(cli.home, job["JobId"]))
    assert sorted(decoded_keys(rows)) == keys
    assert {r[3] for r in rows} == {"succeeded"}


def test_process_workers_read_chunks_sent_as_byte_ranges(tmp_path, monkeypatch) -> None:
    """Jobs of `ProcessBackend.by_range_from` rows or more send each worker its chunks as
    byte ranges of the job's manifest copy, read by the worker: every row is reported
    once, as when rows are sent (the threshold is lowered here to a small job)."""
    from batchops import JobOptions, create_job
    from batchops.model.chunk import ChunkRange
    from batchops.schedule.backends import ProcessBackend
    from batchops.schedule.coordinator import run_job

    monkeypatch.setenv("BATCHOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(ProcessBackend, "by_range_from", 0)
    sent: list[type] = []
    send = ProcessBackend.send

    def spy(self, wid, chunk):  # type: ignore[no-untyped-def]
        sent.append(type(chunk))
        send(self, wid, chunk)

    monkeypatch.setattr(ProcessBackend, "send", spy)
    keys = [f"k/{i:05d}" for i in range(3000)]
    m = write_manifest(tmp_path / "m.csv", [("bucket", k) for k in keys])
    job = create_job(JobOptions(manifest=str(m), operation="noop", params={"PerTask": True},
                                workers=2, chunk_size=1000))
    run_job(job)
    assert sent and set(sent) == {ChunkRange}
    _, rows = read_report(report_manifest_path(tmp_path / "home", job.job_id))
    assert sorted(decoded_keys(rows)) == keys and {r[3] for r in rows} == {"succeeded"}
