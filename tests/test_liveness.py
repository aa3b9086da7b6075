"""Liveness (issue 10 §5): a hung task, a silent worker and a poison chunk cannot wedge
a job. Real worker processes, real signals, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from helpers import read_report, report_manifest_path, write_manifest

HANDLER = '''
import os, signal, time

def handler(event):
    task = event["tasks"][0]
    key = task["s3Key"]
    if key == "poison":
        os.kill(os.getpid(), signal.SIGKILL)  # takes the whole worker down, every time
    if key == "hang":
        time.sleep(3600)
    if key == "raises":
        raise KeyError("no such thing")  # the user's bug, not batchops'
    return {"invocationSchemaVersion": event["invocationSchemaVersion"],
            "invocationId": event["invocationId"],
            "results": [{"taskId": task["taskId"], "resultCode": "Succeeded",
                         "resultString": "ok"}]}
'''


def _handler(tmp_path: Path, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    (tmp_path / "livehooks.py").write_text(textwrap.dedent(HANDLER))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "src").mkdir()
    return "python:livehooks:handler"


def _rows(cli, job_id: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert len(rows) == len({r[1] for r in rows}), "a row is listed twice"
    return {r[1]: r for r in rows}


def test_a_poison_chunk_is_reported_failed_and_the_job_goes_on(cli, tmp_path,
                                                               monkeypatch) -> None:
    fn = _handler(tmp_path, monkeypatch)
    keys = [f"k{i:02d}" for i in range(30)]
    keys[14] = "poison"  # in the second chunk of ten
    m = write_manifest(tmp_path / "m.csv", [("src", k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "invoke", "--function", fn,
               "--bucket-map", f"src=file://{tmp_path / 'src'}", "--chunk-size", "10",
               "--workers", "2", "--json", "--no-progress", timeout=240)
    assert proc.returncode == 1, proc.stderr  # Complete, with failed tasks
    job = json.loads(proc.stdout)["Job"]
    assert job["Status"] == "Complete"
    rows = _rows(cli, job["JobId"])
    assert sorted(rows) == sorted(keys)
    failed = {k for k, r in rows.items() if r[3] == "failed"}
    assert failed == set(keys[10:20])  # the poison chunk, and only it
    assert {rows[k][5] for k in failed} == {"WorkerKilled"}
    assert "SIGKILL" in rows["poison"][6]
    log = (cli.home / "jobs" / job["JobId"] / "log").read_text()
    assert '"event":"poison-chunk"' in log


def test_a_hung_task_times_out_instead_of_wedging_its_chunk(cli, tmp_path, monkeypatch) -> None:
    fn = _handler(tmp_path, monkeypatch)
    keys = ["a", "hang", "b"]
    m = write_manifest(tmp_path / "m.csv", [("src", k) for k in keys])
    started = time.monotonic()
    proc = cli("run", "--manifest", str(m), "--operation", "invoke", "--function", fn,
               "--bucket-map", f"src=file://{tmp_path / 'src'}", "--task-timeout", "1",
               "--max-attempts", "2", "--json", "--no-progress", timeout=240)
    assert proc.returncode == 1, proc.stderr
    rows = _rows(cli, json.loads(proc.stdout)["Job"]["JobId"])
    assert rows["hang"][3:6] == ["failed", "500", "RequestTimeout"]
    assert rows["a"][3] == rows["b"][3] == "succeeded"
    assert time.monotonic() - started < 200  # not the hour the handler sleeps


def test_a_silent_worker_loses_its_lease_and_its_chunk_runs_again(cli, tmp_path,
                                                                  monkeypatch) -> None:
    """SIGSTOP a worker: it neither dies nor answers. Its lease expires, it is replaced,
    and the job completes with every row once."""
    src = tmp_path / "src"
    src.mkdir()
    keys = [f"k{i:04d}" for i in range(400)]
    for k in keys:
        (src / k).write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [("src", k) for k in keys])
    monkeypatch.setenv("BATCHOPS_LEASE_SECONDS", "3")
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{tmp_path / 'out'}", "--bucket-map", f"src=file://{src}",
                     "--chunk-size", "20", "--workers", "2", "--max-ops-per-second", "100",
                     "--json", "--no-progress", stdout=-1, stderr=-1)
    stopped = None
    deadline = time.monotonic() + 60
    while stopped is None and time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
            if int(ppid) == proc.pid and b"batchops.execute.worker" in cmd:
                time.sleep(0.5)  # let it take a chunk
                os.kill(int(pid), signal.SIGSTOP)
                stopped = int(pid)
                break
        time.sleep(0.05)
    assert stopped is not None, "no worker process found"
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    job = json.loads(out)["Job"]
    rows = _rows(cli, job["JobId"])
    assert sorted(rows) == keys and all(r[3] == "succeeded" for r in rows.values())
    log = (cli.home / "jobs" / job["JobId"] / "log").read_text()
    assert '"event":"lease-expired"' in log


def test_an_exception_in_the_users_function_fails_its_task_not_the_job(cli, tmp_path,
                                                                      monkeypatch) -> None:
    """batchops' own bugs stop the job loudly; a KeyError raised by the user's function
    is that task's failure, as a Lambda function's unhandled error is."""
    fn = _handler(tmp_path, monkeypatch)
    keys = ["a", "raises", "b"]
    m = write_manifest(tmp_path / "m.csv", [("src", k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "invoke", "--function", fn,
               "--bucket-map", f"src=file://{tmp_path / 'src'}", "--json", "--no-progress",
               timeout=240)
    assert proc.returncode == 1, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["Status"] == "Complete"
    rows = _rows(cli, job["JobId"])
    assert rows["raises"][3:6] == ["failed", "500", "Unhandled"]
    assert "KeyError" in rows["raises"][6]
    assert rows["a"][3] == rows["b"][3] == "succeeded"


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_every_job_json_write_is_synced_before_it_is_renamed_into_place(cli, tmp_path) -> None:
    """The system calls of a real run, traced: each new job.json is written to a
    temporary file that is fsynced before the rename (atomic and durable)."""
    src = tmp_path / "src"
    src.mkdir()
    keys = [f"f{i:03d}" for i in range(300)]
    for k in keys:
        (src / k).write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    trace = tmp_path / "trace"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-e", "trace=openat,fsync,rename", "-o", str(trace),
         sys.executable, "-m", "batchops", "run", "--manifest", str(m), "--operation", "copy",
         "--target", f"file://{tmp_path / 'out'}", "--chunk-size", "10", "--workers", "1",
         "--max-ops-per-second", "150", "--json", "--no-progress"],
        capture_output=True, text=True, env=cli.env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    synced: dict[tuple[str, str], bool] = {}  # (pid, temporary) -> fsynced since opened
    renames = 0
    for line in trace.read_text().splitlines():
        pid, _, call = line.strip().partition(" ")
        call = call.strip()
        if call.startswith("openat(") and "job.json.tmp" in call:
            synced[(pid, call.split('"')[1])] = False
        elif call.startswith("fsync(") and "job.json.tmp" in call:  # -y: fd<path>
            synced[(pid, call.split("<", 1)[1].split(">", 1)[0])] = True
        elif call.startswith("rename(") and "job.json.tmp" in call:
            tmp = call.split('"')[1]
            assert synced.get((pid, tmp)), f"{tmp} renamed into place before an fsync"
            renames += 1
    assert renames >= 5  # created, preparing, ready, active, the counters, complete


def test_resume_removes_the_temporaries_a_stopped_run_left(cli, tmp_path) -> None:
    """A worker stopped in the middle of writing a report part leaves `<part>.tmp.<pid>`;
    the next run of the job (holding its lock) removes it."""
    src = tmp_path / "src"
    src.mkdir()
    keys = [f"k{i}" for i in range(20)]
    for k in keys:
        (src / k).write_bytes(b"x")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}", "--json", "--no-progress", timeout=120)
    assert proc.returncode == 0, proc.stderr
    job_id = json.loads(proc.stdout)["Job"]["JobId"]
    job_dir = cli.home / "jobs" / job_id
    strays = [job_dir / "results" / "chunk-000000000000-succeeded.csv.tmp.4242",
              job_dir / "chunks" / "000000000000.json.tmp.4243"]
    for stray in strays:
        stray.write_bytes(b"half")
    assert cli("resume", job_id, "--json", "--no-progress", timeout=120).returncode == 0
    assert not any(p.exists() for p in strays)
    assert (job_dir / "job.json").exists()


def test_python_functions_import_from_the_current_folder_and_get_amazons_key_encoding(
        cli, tmp_path) -> None:
    """As `python -m` does, `python:mod:fn` imports from the folder batchops runs in (no
    PYTHONPATH needed), and the function gets s3Key URL-encoded, as Amazon sends it
    (handlers written for Amazon decode it)."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "echohooks.py").write_text(textwrap.dedent('''
        def handler(event):
            task = event["tasks"][0]
            return {"invocationSchemaVersion": event["invocationSchemaVersion"],
                    "invocationId": event["invocationId"],
                    "results": [{"taskId": task["taskId"], "resultCode": "Succeeded",
                                 "resultString": "got " + task["s3Key"]}]}
    '''))
    (tmp_path / "src").mkdir()
    keys = ["a b/c+d", "plain", "é%"]
    m = write_manifest(tmp_path / "m.csv", [("src", k) for k in keys])
    env = {k: v for k, v in cli.env().items() if k != "PYTHONPATH"}
    exe = Path(sys.executable).with_name("batchops")  # the console script, not python -m
    proc = subprocess.run([str(exe), "run", "--manifest", str(m), "--operation", "invoke",
                           "--function", "python:echohooks:handler", "--bucket-map",
                           f"src=file://{tmp_path / 'src'}", "--json", "--no-progress"],
                          cwd=here, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    rows = _rows(cli, job["JobId"])
    for k in keys:
        encoded = quote_plus(k, safe="/")
        assert rows[encoded][6] == "got " + encoded
    assert "BatchopsImportPath" not in job["Operation"]["LambdaInvoke"]
