"""Every state a stop can leave is resumable or cancellable (issue 10 §3), through the
real CLI with real kills at the moment named.

The moments are held with failpoints (schedule/failpoints.py): `BATCHOPS_FAILPOINT=name`
makes the process create `failpoint.<name>` in the job folder and wait there, so the
test kills it exactly between two steps (say, after the status write Completing and
before the report is published), never at a moment picked by a timer.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers import decoded_keys, read_report, report_manifest_path

SRC = Path(__file__).resolve().parent.parent / "src" / "batchops"
JOB_LINE = re.compile(r"^job ([0-9a-f-]{36})$", re.M)


# -- helpers --------------------------------------------------------------------------------

def _files(tmp_path: Path, n: int, present_every: int = 1) -> tuple[Path, Path, list[str]]:
    """A source folder holding every `present_every`-th of n keys, and a manifest of all n
    (bucket `src`, mapped to the folder with --bucket-map)."""
    src = tmp_path / "src"
    src.mkdir()
    keys = [f"f{i:05d}" for i in range(n)]
    for k in keys[::present_every]:
        (src / k).write_bytes(k.encode())
    m = tmp_path / "m.csv"
    m.write_text("".join(f"src,{k}\n" for k in keys))
    return src, m, keys


def _copy_flags(tmp_path: Path, src: Path, m: Path, *extra: str) -> list[str]:
    return ["--manifest", str(m), "--operation", "copy", "--target",
            f"file://{tmp_path / 'out'}", "--bucket-map", f"src=file://{src}", "--json",
            "--no-progress", *extra]


def _start(cli, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:  # type: ignore[no-untyped-def]
    err = tmp_path / f"stderr-{time.monotonic_ns()}"
    proc = cli.popen(*args, stdout=subprocess.PIPE, stderr=err.open("w"),
                     start_new_session=True)
    return proc, err


def _announced(proc: subprocess.Popen[str], err: Path, timeout: float = 30) -> str:
    """The id in the `job <id>` line a run prints on stderr."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = JOB_LINE.search(err.read_text())
        if found:
            return found.group(1)
        assert proc.poll() is None, err.read_text()
        time.sleep(0.01)
    raise AssertionError("no `job <id>` line on stderr")


def _held(path: Path, proc: subprocess.Popen[str] | None = None, timeout: float = 60) -> None:
    """Wait until a process waits at the failpoint whose file is `path`."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc is None or proc.poll() is None, "the process ended before the failpoint"
        assert time.monotonic() < deadline, f"{path.name} was never reached"
        time.sleep(0.01)


def _failpoint(home: Path, job_id: str, name: str) -> Path:
    return home / "jobs" / job_id / f"failpoint.{name}"


def _kill(proc: subprocess.Popen[str], how: str) -> int:
    if how == "kill -9":
        os.killpg(proc.pid, signal.SIGKILL)  # the process and its workers
    else:
        proc.send_signal(signal.SIGINT if how == "SIGINT" else signal.SIGTERM)
    return proc.wait(30)


def _describe(cli, job_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    proc = cli("describe-job", "--job-id", job_id, check=True)
    return json.loads(proc.stdout)["Job"]


def _list(cli, *flags: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return json.loads(cli("list-jobs", *flags, check=True).stdout)["Jobs"]


def _wait_status(cli, job_id: str, status: str, timeout: float = 30) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        job = _describe(cli, job_id)
        if job["Status"] == status:
            return job
        assert time.monotonic() < deadline, f"{job_id} is {job['Status']}, not {status}"
        time.sleep(0.05)


def _report_keys(home: Path, job_id: str) -> list[str]:
    _, rows = read_report(report_manifest_path(home, job_id))
    return decoded_keys(rows)


def _report_rows(home: Path, job_id: str) -> list[list[str]]:
    return read_report(report_manifest_path(home, job_id))[1]


def _resume(cli, job_id: str, *flags: str) -> tuple[int, dict[str, Any], str]:  # type: ignore[no-untyped-def]
    proc = cli("resume", job_id, "--json", "--no-progress", *flags)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)["Job"] if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stderr


def _sentence(stderr: str) -> str:
    """stderr without the `job <id>` line: the one sentence a failure prints."""
    lines = [line for line in stderr.strip().splitlines() if not JOB_LINE.match(line)]
    assert len(lines) == 1, stderr
    return lines[0]


def _tmp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# -- 1. the table -----------------------------------------------------------------------------

def test_the_table_refuses_moves_it_does_not_list() -> None:
    from batchops.model.status import (
        RESUMABLE,
        RUNNING,
        STATUSES,
        TERMINAL,
        TRANSITIONS,
        TransitionError,
        check_transition,
    )

    assert TERMINAL == {"Complete", "Failed", "Cancelled"}
    for status in STATUSES:
        for new in STATUSES:
            allowed = new in TRANSITIONS[status] or (new == status and status not in TERMINAL)
            if allowed:
                check_transition(status, new)
            else:
                with pytest.raises(TransitionError):
                    check_transition(status, new)
    # Every status a stop can leave is resumable; none is terminal.
    assert RUNNING <= RESUMABLE and not RESUMABLE & TERMINAL
    with pytest.raises(TransitionError):
        check_transition("Failed", "Active")  # a Failed job never runs again
    with pytest.raises(TransitionError):
        check_transition("Active", "Bogus")


def test_every_status_write_asks_the_table() -> None:
    """In schedule/, a function that writes `...["Status"] = X` also calls
    check_transition (or is `_set_status`'s caller): a bug that breaks the table fails
    loudly instead of writing a status no stop can come back from."""
    offenders = []
    for path in sorted((SRC / "schedule").glob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            writes = [n for n in ast.walk(fn) if isinstance(n, ast.Assign) and any(
                isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                and t.slice.value == "Status" for t in n.targets)]
            calls = {n.func.id if isinstance(n.func, ast.Name) else
                     getattr(n.func, "attr", "") for n in ast.walk(fn)
                     if isinstance(n, ast.Call)}
            if writes and "check_transition" not in calls:
                if path.name == "control.py" and fn.name == "describe":
                    continue  # describes (a dead job as Paused); writes nothing
                offenders.append(f"{path.name}:{fn.name}")
    assert offenders == []


# -- 2. killed while Preparing --------------------------------------------------------------------

@pytest.mark.parametrize("how", ["kill -9", "SIGINT", "SIGTERM"])
def test_a_job_stopped_while_preparing_is_resumed(cli, tmp_path, monkeypatch, how) -> None:
    src, m, keys = _files(tmp_path, 40)
    monkeypatch.setenv("BATCHOPS_FAILPOINT", "preparing")
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(tmp_path, src, m, "--workers", "1"))
    try:
        job_id = _announced(proc, err)  # printed before preparing starts, in --json mode
        _held(_failpoint(cli.home, job_id, "preparing"), proc)
        assert _describe(cli, job_id)["Status"] == "Preparing"  # a live process prepares
        code = _kill(proc, how)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    monkeypatch.delenv("BATCHOPS_FAILPOINT")
    stderr = err.read_text()
    assert "Traceback" not in stderr, stderr
    if how == "kill -9":
        assert code == -9
    else:
        assert code == 130 and f"batchops resume {job_id}" in stderr
    assert json.loads((cli.home / "jobs" / job_id / "job.json").read_text()
                      )["Job"]["Status"] == "Preparing"
    job = _describe(cli, job_id)  # nobody prepares it now, and describe-job says so
    assert job["Status"] == "Paused"
    assert "Preparing" in job["StatusUpdateReason"]
    assert f"batchops resume {job_id}" in job["StatusUpdateReason"]
    assert not (tmp_path / "out").exists()

    code, job, stderr = _resume(cli, job_id)
    assert code == 0, stderr
    assert job["Status"] == "Complete"
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(keys)
    assert Counter(_report_keys(cli.home, job_id)) == Counter(keys)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == keys


def test_a_job_stopped_while_preparing_can_be_cancelled(cli, tmp_path, monkeypatch) -> None:
    src, m, keys = _files(tmp_path, 20)
    monkeypatch.setenv("BATCHOPS_FAILPOINT", "preparing")
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(tmp_path, src, m, "--workers", "1"))
    try:
        job_id = _announced(proc, err)
        _held(_failpoint(cli.home, job_id, "preparing"), proc)
        assert _kill(proc, "kill -9") == -9
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    monkeypatch.delenv("BATCHOPS_FAILPOINT")
    out = cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Cancelled",
              "--status-update-reason", "wrong manifest")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"JobId": job_id, "Status": "Cancelled",
                                      "StatusUpdateReason": "wrong manifest"}
    job = _describe(cli, job_id)
    assert job["Status"] == "Cancelled" and job["TerminationDate"]
    assert cli("runner", "--json", check=True).stdout == ""  # nothing left to run
    code, job, stderr = _resume(cli, job_id)
    assert job["Status"] == "Cancelled" and code == 4
    assert not (tmp_path / "out").exists()  # no task ever ran


# -- 3. killed while Completing --------------------------------------------------------------------

@pytest.mark.parametrize("moment", ["completing", "published"])
def test_a_job_killed_while_completing_publishes_on_resume(cli, tmp_path, monkeypatch,
                                                           moment) -> None:
    """`completing`: after the status write Completing, before the report is published;
    `published`: after the report's parts were linked into place, before Complete (a
    second publish then links each part over a link of the same file)."""
    src, m, keys = _files(tmp_path, 60)
    monkeypatch.setenv("BATCHOPS_FAILPOINT", moment)
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(tmp_path, src, m, "--workers", "1",
                                                          "--chunk-size", "10"))
    try:
        job_id = _announced(proc, err)
        _held(_failpoint(cli.home, job_id, moment), proc)
        assert _describe(cli, job_id)["Status"] == "Completing"
        assert _kill(proc, "kill -9") == -9
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    monkeypatch.delenv("BATCHOPS_FAILPOINT")
    job = _describe(cli, job_id)
    assert job["Status"] == "Paused" and "Completing" in job["StatusUpdateReason"]
    cancel = cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Cancelled")
    assert cancel.returncode == 3 and "resume" in _sentence(cancel.stderr)  # every task ran

    code, job, stderr = _resume(cli, job_id)
    assert code == 0, stderr
    assert job["Status"] == "Complete" and job["TerminationDate"]
    assert Counter(_report_keys(cli.home, job_id)) == Counter(keys)
    report_dir = cli.home / "jobs" / job_id / "report"
    assert _tmp_files(report_dir) == []
    assert _describe(cli, job_id)["Status"] == "Complete"


# -- 4. Failed is terminal ------------------------------------------------------------------------

def test_resume_refuses_a_failed_job(cli, tmp_path) -> None:
    src, m, keys = _files(tmp_path, 1200, present_every=10)
    run = cli("run", *_copy_flags(tmp_path, src, m, "--workers", "1", "--chunk-size", "100"))
    assert run.returncode == 3, run.stderr
    job = json.loads(run.stdout)["Job"]
    job_id = job["JobId"]
    assert job["Status"] == "Failed"
    before = sorted(_report_keys(cli.home, job_id))
    copied = sorted(p.name for p in (tmp_path / "out").iterdir())

    code, _, stderr = _resume(cli, job_id)
    assert code == 3
    sentence = _sentence(stderr)
    assert "Failed" in sentence and "failed tasks" in sentence and "--manifest" in sentence
    failed_parts = sorted((cli.home / "jobs" / job_id / "report" / f"job-{job_id}" /
                           "results").glob("*-failed.csv"))
    assert failed_parts and f"{failed_parts[0].parent}/*-failed.csv" in sentence
    assert _describe(cli, job_id)["Status"] == "Failed"
    assert sorted(_report_keys(cli.home, job_id)) == before  # nothing ran again
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == copied

    # A job failed by a bad manifest is final too.
    bad = tmp_path / "bad.csv"
    bad.write_text("src,f00000\nthis row has no key\n")
    run = cli("run", *_copy_flags(tmp_path, src, bad))
    assert run.returncode == 2 and "line 2" in _sentence(run.stderr)
    bad_id = JOB_LINE.search(run.stderr)
    assert bad_id, run.stderr
    assert _describe(cli, bad_id.group(1))["Status"] == "Failed"
    code, _, stderr = _resume(cli, bad_id.group(1))
    sentence = _sentence(stderr)
    assert code == 3 and "ManifestInvalid" in sentence and "create a new job" in sentence


# -- 5. the failure threshold: Failing, and chunks in flight ------------------------------------

def test_the_failure_threshold_passes_through_failing_and_reports_chunks_in_flight(
        cli, tmp_path, monkeypatch) -> None:
    """One chunk of 1,500 rows, 9 in 10 missing, paced: the threshold trips in the middle
    of the chunk. The job goes Active → Failing (killed there) → Failed on resume, and the
    report lists every task that ran in that chunk: each copied file as succeeded, each
    missing one that was tried as failed."""
    src, m, keys = _files(tmp_path, 1500, present_every=10)
    monkeypatch.setenv("BATCHOPS_FAILPOINT", "failing")
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(
        tmp_path, src, m, "--workers", "1", "--chunk-size", "1500",
        "--max-ops-per-second", "300"))
    try:
        job_id = _announced(proc, err)
        _held(_failpoint(cli.home, job_id, "failing"), proc)
        live = _describe(cli, job_id)
        assert live["Status"] == "Failing"
        assert "failure threshold" in live["StatusUpdateReason"]
        assert _kill(proc, "kill -9") == -9
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    monkeypatch.delenv("BATCHOPS_FAILPOINT")
    assert _describe(cli, job_id)["Status"] == "Paused"  # not running: resume it

    code, job, stderr = _resume(cli, job_id)
    assert code == 3, stderr
    assert job["Status"] == "Failed"
    assert job["FailureReasons"][0]["FailureCode"] == "TaskFailureThresholdExceeded"
    rows = _report_rows(cli.home, job_id)
    reported = decoded_keys(rows)
    assert len(reported) == len(set(reported))  # each task once
    copied = {p.name for p in (tmp_path / "out").iterdir()}
    succeeded = {k for k, r in zip(reported, rows, strict=True) if r[3] == "succeeded"}
    failed = {k for k, r in zip(reported, rows, strict=True) if r[3] == "failed"}
    assert succeeded == copied and copied  # the chunk in flight is in the report
    assert 1000 <= len(reported) < len(keys)  # it stopped part way, and said what ran
    assert all(int(k[1:]) % 10 for k in failed)  # the failed rows are the missing objects
    summary = job["ProgressSummary"]
    assert (summary["NumberOfTasksSucceeded"], summary["NumberOfTasksFailed"]) == \
        (len(succeeded), len(failed))


# -- 6/7. Cancelled: a distinct exit code, in worker processes and in this process -------------

@pytest.mark.parametrize("where", ["workers", "in-process"])
def test_a_cancelled_run_exits_4_within_the_grace_period(cli, tmp_path, where) -> None:
    src, m, keys = _files(tmp_path, 600)
    out = tmp_path / "out"
    flags = ["--workers", "1", "--chunk-size", "300", "--max-ops-per-second", "100"]
    if where == "in-process":
        flags.append("--in-process")
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(tmp_path, src, m, *flags))
    try:
        job_id = _announced(proc, err)
        deadline = time.monotonic() + 60
        while not (out.exists() and len(list(out.iterdir())) >= 30):
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text()
            time.sleep(0.02)
        asked = time.monotonic()
        cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Cancelled",
            check=True)
        code = proc.wait(30)
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stderr = err.read_text()
    assert "Traceback" not in stderr and "TimeoutError" not in stderr, stderr
    assert code == 4, stderr
    assert took < 8 + 5  # the grace period, and a second or so to see the request
    job = json.loads(proc.stdout.read())["Job"] if proc.stdout else {}
    assert job["Status"] == "Cancelled" and job["TerminationDate"]
    assert _describe(cli, job_id)["Status"] == "Cancelled"
    copied = {p.name for p in out.iterdir()}
    reported = Counter(_report_keys(cli.home, job_id))
    assert set(reported.values()) == {1}
    assert set(reported) == copied and 30 <= len(copied) < len(keys)


def test_exit_codes_are_documented() -> None:
    from batchops.cli import main
    from batchops.cli.args import EPILOG
    from batchops.model import errors

    readme = (SRC.parent.parent / "README.md").read_text()
    assert errors.EXIT_CANCELLED == 4
    codes = {0, 1, 2, 3, 4, 130}
    assert {v for k, v in vars(errors).items() if k.startswith("EXIT_")} == codes
    for code in codes:
        assert re.search(rf"^\s+{code}\s+\S", EPILOG, re.M), code
        assert re.search(rf"^\| `{code}` \|", readme, re.M), code
        assert re.search(rf"\b{code} ", main.__doc__ or ""), code
    assert re.search(r"^\s+4\s+.*cancelled", EPILOG, re.M)


# -- 8. a dead coordinator ------------------------------------------------------------------------

def test_a_job_whose_process_died_is_not_shown_running(cli, tmp_path) -> None:
    src, m, keys = _files(tmp_path, 400)
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(
        tmp_path, src, m, "--workers", "1", "--chunk-size", "50", "--max-ops-per-second", "50"))
    try:
        job_id = _announced(proc, err)
        _wait_status(cli, job_id, "Active")
        assert [j["JobId"] for j in _list(cli, "--job-statuses", "Active")] == [job_id]
        assert _kill(proc, "kill -9") == -9
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stored = json.loads((cli.home / "jobs" / job_id / "job.json").read_text())["Job"]
    assert stored["Status"] == "Active"  # what the dead process last wrote
    job = _describe(cli, job_id)
    assert job["Status"] == "Paused"
    assert job["StatusUpdateReason"].startswith("not running")
    assert "Active" in job["StatusUpdateReason"]
    assert f"batchops resume {job_id}" in job["StatusUpdateReason"]
    assert _list(cli, "--job-statuses", "Active") == []
    assert [j["Status"] for j in _list(cli)] == ["Paused"]
    code, job, stderr = _resume(cli, job_id)
    assert code == 0 and job["Status"] == "Complete", stderr
    assert Counter(_report_keys(cli.home, job_id)) == Counter(keys)


# -- 9. concurrency under the lock --------------------------------------------------------------

def _request(tmp_path: Path, m: Path, token: str) -> Path:
    """A create-job request (awaiting confirmation) copying the manifest's objects."""
    from test_conformance import job_request, local_manifest

    rows = [tuple(line.split(",")) for line in m.read_text().splitlines()]
    request = job_request({"S3PutObjectCopy": {"TargetResource": f"file://{tmp_path / 'out'}"}},
                          local_manifest(m, rows), ClientRequestToken=token,
                          ConfirmationRequired=True)
    path = tmp_path / f"request-{token}.json"
    path.write_text(json.dumps(request))
    return path


def test_two_concurrent_create_jobs_with_one_token_make_one_job(cli, tmp_path,
                                                                monkeypatch) -> None:
    src, m, _ = _files(tmp_path, 5)
    request = _request(tmp_path, m, "once-only")
    args = ("create-job", "--cli-input-json", f"file://{request}", "--bucket-map",
            f"src=file://{src}")
    monkeypatch.setenv("BATCHOPS_FAILPOINT", "token-claimed")
    first = cli.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    held = cli.home / "tokens" / "failpoint.token-claimed"
    try:
        _held(held, first)  # the first has claimed the token and not yet made its job
        monkeypatch.delenv("BATCHOPS_FAILPOINT")
        second = cli.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)  # let the second reach the token (it must then wait, not create)
        assert second.poll() is None
        held.unlink()  # let the first go on
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert json.loads(out1) == json.loads(out2)
    assert [j["JobId"] for j in _list(cli)] == [json.loads(out1)["JobId"]]
    assert len(list((cli.home / "jobs").iterdir())) == 1


def test_a_job_cancelled_while_being_confirmed_stays_cancelled(cli, tmp_path,
                                                               monkeypatch) -> None:
    src, m, _ = _files(tmp_path, 5)
    request = _request(tmp_path, m, "confirm-race")
    created = cli("create-job", "--cli-input-json", f"file://{request}", "--bucket-map",
                  f"src=file://{src}", check=True)
    job_id = json.loads(created.stdout)["JobId"]
    assert _describe(cli, job_id)["Status"] == "Suspended"
    monkeypatch.setenv("BATCHOPS_FAILPOINT", "confirming")
    confirm = cli.popen("update-job-status", "--job-id", job_id, "--requested-job-status",
                        "Ready", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    held = _failpoint(cli.home, job_id, "confirming")
    try:
        _held(held, confirm)  # it read Suspended, and has not taken the lock yet
        monkeypatch.delenv("BATCHOPS_FAILPOINT")
        cancel = cli("update-job-status", "--job-id", job_id, "--requested-job-status",
                     "Cancelled", check=True)
        assert json.loads(cancel.stdout)["Status"] == "Cancelled"
        held.unlink()
        _, err = confirm.communicate(timeout=30)
    finally:
        confirm.kill()
    assert confirm.returncode == 3 and "Cancelled" in _sentence(err)
    assert _describe(cli, job_id)["Status"] == "Cancelled"
    assert cli("runner", "--json", check=True).stdout == ""
    assert not (tmp_path / "out").exists()


# -- 10. the coordinator off the main thread; the CLI's signals -----------------------------------

@pytest.mark.parametrize("in_process", [False, True])
def test_run_job_runs_on_a_thread_that_is_not_main(tmp_path, in_process) -> None:
    from batchops.model.spec import JobOptions
    from batchops.schedule.coordinator import run_job
    from batchops.schedule.create import create_job

    src, m, keys = _files(tmp_path, 30)
    home = tmp_path / "home"
    store = create_job(JobOptions(manifest=str(m), operation="copy",
                                  params={"TargetResource": f"file://{tmp_path / 'out'}"},
                                  bucket_map=(("src", f"file://{src}"),), workers=1),
                       home=str(home))
    result: dict[str, Any] = {}
    errors: list[BaseException] = []

    def library_call() -> None:
        try:
            result.update(run_job(store, in_process=in_process))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=library_call)
    thread.start()
    thread.join(120)
    assert not thread.is_alive() and errors == []
    assert result["Job"]["Status"] == "Complete"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == keys
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # left alone


def test_an_event_stops_a_job_run_on_a_thread(tmp_path) -> None:
    from batchops.model.spec import JobOptions
    from batchops.schedule.coordinator import run_job
    from batchops.schedule.create import create_job

    src, m, keys = _files(tmp_path, 300)
    store = create_job(JobOptions(manifest=str(m), operation="copy",
                                  params={"TargetResource": f"file://{tmp_path / 'out'}"},
                                  bucket_map=(("src", f"file://{src}"),), workers=1,
                                  chunk_size=20, max_ops_per_second=100),
                       home=str(tmp_path / "home"))
    stop = threading.Event()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(run_job(store, stop=stop)))
    thread.start()
    deadline = time.monotonic() + 60
    while not list(Path(store.chunks_dir).iterdir()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
    assert result["Job"]["Status"] == "Paused"
    assert result["Batchops"]["last_stop"] == "interrupted"
    done = run_job(store)
    assert done["Job"]["Status"] == "Complete"
    assert Counter(_report_keys(tmp_path / "home", store.job_id)) == Counter(keys)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGTERM in-process"])
def test_a_signal_to_the_cli_pauses_and_resume_finishes(cli, tmp_path, how) -> None:
    src, m, keys = _files(tmp_path, 300)
    extra = ["--in-process"] if "in-process" in how else []
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(
        tmp_path, src, m, "--workers", "1", "--chunk-size", "20", "--max-ops-per-second",
        "100", *extra))
    try:
        job_id = _announced(proc, err)
        deadline = time.monotonic() + 60
        while not list((cli.home / "jobs" / job_id / "chunks").iterdir()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        code = _kill(proc, how.split()[0])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stderr = err.read_text()
    assert code == 130 and f"batchops resume {job_id}" in stderr, stderr
    assert "Traceback" not in stderr
    job = _describe(cli, job_id)
    assert job["Status"] == "Paused" and "interrupted" in job["StatusUpdateReason"]
    code, job, stderr = _resume(cli, job_id)
    assert code == 0 and job["Status"] == "Complete", stderr
    assert Counter(_report_keys(cli.home, job_id)) == Counter(keys)


def test_an_in_process_cancel_of_memory_stores_ends_cancelled(home, tmp_path) -> None:
    """Library use: run_job(in_process=True) over memory stores on a thread, cancelled
    with update_job_status from another: the job ends Cancelled within the grace period
    (not TimeoutError, not left Active) and its report lists exactly the copies made."""
    import obstore
    from obstore.store import MemoryStore

    from batchops.model.spec import JobOptions
    from batchops.results.jobstore import JobStore
    from batchops.schedule.control import update_job_status
    from batchops.schedule.coordinator import run_job
    from batchops.schedule.create import create_job

    mem = MemoryStore()
    keys = [f"o{i:05d}" for i in range(3000)]
    for k in keys:
        obstore.put(mem, k, k.encode())
    m = tmp_path / "m.csv"
    m.write_text("".join(f"memory://,{k}\n" for k in keys))
    store = create_job(JobOptions(manifest=str(m), operation="copy",
                                  params={"TargetResource": "memory://",
                                          "TargetKeyPrefix": "copies"},
                                  chunk_size=1500, max_ops_per_second=300))
    result: dict[str, Any] = {}
    errors: list[BaseException] = []

    def library_call() -> None:
        try:
            result.update(run_job(store, in_process=True, preset_stores={"memory://": mem}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=library_call)
    thread.start()
    deadline = time.monotonic() + 60
    while len(obstore.list(mem, "copies/").collect()) < 100:
        assert time.monotonic() < deadline and thread.is_alive(), errors
        time.sleep(0.02)
    asked = time.monotonic()
    answer = update_job_status(JobStore.open(store.job_id), "Cancelled", "enough")
    # Cancelling while the run holds the lock; Cancelled if it ended the job meanwhile.
    assert answer["Status"] in ("Cancelling", "Cancelled")
    thread.join(30)
    assert not thread.is_alive() and errors == []
    assert time.monotonic() - asked < 8 + 3
    assert result["Job"]["Status"] == "Cancelled"
    assert result["Job"]["StatusUpdateReason"] == "enough"
    copied = {o["path"][len("copies/"):] for o in obstore.list(mem, "copies/").collect()}
    reported = Counter(_report_keys(home, store.job_id))
    assert set(reported.values()) == {1}
    assert set(reported) == copied and 100 <= len(copied) < len(keys)


@pytest.mark.parametrize("how", ["kill -9", "SIGINT"])
def test_the_runner_prepares_again_a_job_whose_create_job_died(cli, tmp_path, monkeypatch,
                                                               how) -> None:
    src, m, keys = _files(tmp_path, 25)
    request = _request(tmp_path, m, "runner-prepares")
    body = json.loads(request.read_text())
    body["ConfirmationRequired"] = False
    request.write_text(json.dumps(body))
    monkeypatch.setenv("BATCHOPS_FAILPOINT", "preparing")
    proc = cli.popen("create-job", "--cli-input-json", f"file://{request}", "--bucket-map",
                     f"src=file://{src}", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not list((cli.home / "jobs").glob("*/failpoint.preparing")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        job_id = next((cli.home / "jobs").iterdir()).name
        assert cli("runner", "--json", check=True).stdout == ""  # a live process prepares it
        code = _kill(proc, how)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    monkeypatch.delenv("BATCHOPS_FAILPOINT")
    if how == "kill -9":
        assert code == -9
    else:  # the job id is named, with the way to go on
        assert code == 130 and stdout == "" and "Traceback" not in stderr
        assert f"batchops resume {job_id}" in _sentence(stderr)
    assert _describe(cli, job_id)["Status"] == "Paused"  # stopped while Preparing
    runner = cli("runner", "--json", check=True)
    assert [json.loads(line) for line in runner.stdout.splitlines()] == \
        [{"JobId": job_id, "Status": "Complete"}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == keys
    assert Counter(_report_keys(cli.home, job_id)) == Counter(keys)


def test_a_look_at_the_lock_never_makes_a_run_fail(tmp_path) -> None:
    """describe-job and list-jobs look at a job's lock by holding it shared for an
    instant; a run that asks for the lock at that instant waits the look out."""
    import fcntl

    from batchops.model.errors import JobLockedError
    from batchops.results.jobstore import JobStore

    store = JobStore.create("job-under-a-look", str(tmp_path))
    looker = os.open(os.path.join(store.dir, "lock"), os.O_RDONLY | os.O_CREAT, 0o600)
    fcntl.flock(looker, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.05, os.close, [looker]).start()  # the look ends
    store.lock()
    try:
        other = JobStore("job-under-a-look", str(tmp_path))
        assert other.is_locked()
        with pytest.raises(JobLockedError):  # a holder that stays is still refused
            other.lock()
    finally:
        store.unlock()


def test_a_cancel_that_comes_after_the_end_changes_nothing(cli, tmp_path,
                                                           monkeypatch) -> None:
    """The cancel read the job Active, then the job completed before the cancel took its
    lock: the cancel is refused in one sentence and the job stays Complete."""
    src, m, keys = _files(tmp_path, 200)  # about 5 s: the cancel reads it Active
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(
        tmp_path, src, m, "--workers", "1", "--chunk-size", "20", "--max-ops-per-second",
        "40"))
    try:
        job_id = _announced(proc, err)
        _wait_status(cli, job_id, "Active")
        monkeypatch.setenv("BATCHOPS_FAILPOINT", "cancel-asked")
        cancel = cli.popen("update-job-status", "--job-id", job_id, "--requested-job-status",
                           "Cancelled", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        held = _failpoint(cli.home, job_id, "cancel-asked")
        _held(held, cancel)  # it saw Active; the run does not know of it yet
        monkeypatch.delenv("BATCHOPS_FAILPOINT")
        assert proc.wait(60) == 0  # the job completes meanwhile
        held.unlink()
        _, stderr = cancel.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert cancel.returncode == 3 and "already Complete" in _sentence(stderr), stderr
    assert _describe(cli, job_id)["Status"] == "Complete"
    assert Counter(_report_keys(cli.home, job_id)) == Counter(keys)


def test_a_job_killed_while_cancelling_ends_cancelled_on_resume(cli, tmp_path,
                                                                monkeypatch) -> None:
    src, m, keys = _files(tmp_path, 300)
    out = tmp_path / "out"
    monkeypatch.setenv("BATCHOPS_FAILPOINT", "cancelling")
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(
        tmp_path, src, m, "--workers", "1", "--chunk-size", "100", "--max-ops-per-second",
        "100"))
    try:
        job_id = _announced(proc, err)
        deadline = time.monotonic() + 60
        while not (out.exists() and len(list(out.iterdir())) >= 20):
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text()
            time.sleep(0.02)
        cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Cancelled",
            "--status-update-reason", "stop now", check=True)
        _held(_failpoint(cli.home, job_id, "cancelling"), proc)
        assert _describe(cli, job_id)["Status"] == "Cancelling"
        assert _kill(proc, "kill -9") == -9
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    monkeypatch.delenv("BATCHOPS_FAILPOINT")
    job = _describe(cli, job_id)
    assert job["Status"] == "Paused" and "Cancelling" in job["StatusUpdateReason"]
    code, job, stderr = _resume(cli, job_id)
    assert code == 4, stderr
    assert job["Status"] == "Cancelled" and job["StatusUpdateReason"] == "stop now"
    copied = {p.name for p in out.iterdir()}
    reported = Counter(_report_keys(cli.home, job_id))
    assert set(reported.values()) == {1}
    assert set(reported) == copied and 20 <= len(copied) < len(keys)


def test_ctrl_c_while_resume_prepares_again_stops_before_any_task(cli, tmp_path,
                                                                  monkeypatch) -> None:
    src, m, keys = _files(tmp_path, 20)
    monkeypatch.setenv("BATCHOPS_FAILPOINT", "preparing")
    proc, err = _start(cli, tmp_path, "run", *_copy_flags(tmp_path, src, m, "--workers", "1"))
    try:
        job_id = _announced(proc, err)
        held = _failpoint(cli.home, job_id, "preparing")
        _held(held, proc)
        assert _kill(proc, "kill -9") == -9
        held.unlink()
        resume, err2 = _start(cli, tmp_path, "resume", job_id, "--no-progress")
        _held(held, resume)  # preparing again
        resume.send_signal(signal.SIGINT)  # noted; the preparing pass is not cut short
        held.unlink()
        code = resume.wait(30)
    finally:
        for p in (proc, locals().get("resume")):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    monkeypatch.delenv("BATCHOPS_FAILPOINT")
    stderr = err2.read_text()
    assert code == 130 and f"batchops resume {job_id}" in stderr, stderr
    assert "Traceback" not in stderr
    assert _describe(cli, job_id)["Status"] == "Ready"  # prepared; no task ran
    assert not (tmp_path / "out").exists()
    code, job, stderr = _resume(cli, job_id)
    assert code == 0 and job["Status"] == "Complete", stderr
    assert Counter(_report_keys(cli.home, job_id)) == Counter(keys)
