"""Amazon's job lifecycle through the CLI: create-job, runner, confirm, cancel, priorities
and preemption, idempotent tokens, the failure threshold, tags, manifest ETags and ARNs.

Every describe-job, list-jobs and control answer is checked against botocore's s3control
model (helpers from test_conformance).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers import decoded_keys, read_report, report_manifest_path
from test_conformance import (
    FUNCTION,
    GET_TAGGING,
    UPDATE_PRIORITY,
    cli_json,
    create,
    describe,
    install_function,
    invoke,
    job_log,
    job_request,
    list_jobs,
    local_manifest,
    report,
    s3_manifest,
    tagging,
    update_status,
    wait_for,
)

SLOW = ("--workers", "1", "--concurrency", "1", "--chunk-size", "5")


@pytest.fixture
def function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_function(tmp_path, monkeypatch)


def _tags(s3, bucket: str, key: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return sorted((t["Key"], t["Value"]) for t in
                  s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"])


def _invoked(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _report_keys(home: Path, job_id: str) -> list[str]:
    _, rows = read_report(report_manifest_path(home, job_id))
    return decoded_keys(rows)


def _runner_lines(stdout: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in stdout.splitlines()]


def _start_runner(cli) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return cli.popen("runner", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _active_job(cli, timeout: float = 30) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list_jobs(cli, "--job-statuses", "Active")["Jobs"]
        if jobs:
            return str(jobs[0]["JobId"])
        time.sleep(0.05)
    raise AssertionError("no job became Active")


def _started(job: dict[str, Any]) -> bool:
    return job["ProgressSummary"]["NumberOfTasksSucceeded"] > 0


# -- confirmation -----------------------------------------------------------------------------

def test_a_suspended_job_runs_only_once_confirmed(cli, s3, bucket, tmp_path) -> None:
    keys = ["a", "b c", "ü+%"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    manifest = s3_manifest(s3, bucket, "m.csv", [(bucket, k) for k in keys])
    job_id = create(cli, tmp_path, job_request(tagging(("ok", "yes")), manifest,
                                               ConfirmationRequired=True), "--workers", "1")
    job = describe(cli, job_id)
    assert job["Status"] == "Suspended" and job["ConfirmationRequired"] is True
    assert job["SuspendedCause"] and job["SuspendedDate"] >= job["CreationTime"]
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 3
    runner = cli("runner", "--json")
    assert runner.returncode == 0 and runner.stdout == ""  # skipped: awaiting confirmation
    assert all(_tags(s3, bucket, k) == [] for k in keys)
    assert describe(cli, job_id)["Status"] == "Suspended"

    out = update_status(cli, job_id, "Ready", "--status-update-reason", "looks right")
    assert out == {"JobId": job_id, "Status": "Ready", "StatusUpdateReason": "looks right"}
    job = describe(cli, job_id)
    assert job["Status"] == "Ready" and job["SuspendedDate"] and job["SuspendedCause"]
    again = cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Ready")
    assert again.returncode == 3 and again.stderr.strip().count("\n") == 0  # not Suspended

    runner = cli("runner", "--json")
    assert _runner_lines(runner.stdout) == [{"JobId": job_id, "Status": "Complete"}]
    assert all(_tags(s3, bucket, k) == [("ok", "yes")] for k in keys)
    assert sorted(_report_keys(cli.home, job_id)) == sorted(keys)
    events = [e["event"] for e in job_log(cli.home, job_id)]
    assert events.index("confirmed") < events.index("active") < events.index("complete")


# -- cancellation -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["runner", "run"])
def test_cancelling_a_running_job(cli, bucket, tmp_path, function, how) -> None:
    keys = [f"slow-{i:03d}" for i in range(200)]
    manifest = local_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    if how == "runner":
        job_id = create(cli, tmp_path, job_request(invoke(), manifest), *SLOW)
        proc = _start_runner(cli)
    else:
        proc = cli.popen("run", "--manifest", str(tmp_path / "m.csv"), "--operation", "invoke",
                         "--function", FUNCTION, *SLOW, "--json", "--no-progress",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        job_id = _active_job(cli)
    try:
        wait_for(cli, job_id, ("Active",))
        deadline = time.monotonic() + 30
        while len(_invoked(function)) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)  # a chunk (5 tasks) has run
        asked = time.monotonic()
        out = update_status(cli, job_id, "Cancelled", "--status-update-reason", "stop it")
        assert out["Status"] in ("Cancelling", "Cancelled")
        job = wait_for(cli, job_id, ("Cancelled",), timeout=15)
        assert time.monotonic() - asked < 5  # within seconds
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Traceback" not in stderr, stderr
    assert job["TerminationDate"] and job["StatusUpdateReason"] == "stop it"
    reported = _report_keys(cli.home, job_id)
    counts = Counter(reported)
    assert set(counts.values()) == {1}  # each task once
    assert 0 < len(reported) < len(keys)  # it stopped early
    assert len(reported) == job["ProgressSummary"]["NumberOfTasksSucceeded"]
    assert set(reported) <= set(_invoked(function))  # only tasks that ran
    events = [e["event"] for e in job_log(cli.home, job_id)]
    assert "cancel-requested" in events and events[-1] == "cancelled"
    assert describe(cli, job_id)["Status"] == "Cancelled"  # and it stays so
    if how == "runner":
        assert _runner_lines(stdout) == [{"JobId": job_id, "Status": "Cancelled"}]


def test_a_cancelled_jobs_report_covers_every_task_that_ran(cli, bucket, tmp_path,
                                                            function, monkeypatch) -> None:
    monkeypatch.setenv("SLOW_SECONDS", "0.02")
    # Chunk 1 (rows 5-9) ends with a task that takes long: when it runs, rows 0-8 ran.
    keys = [f"slow-{i:02d}" for i in range(9)] + ["slow-block"] + \
        [f"slow-{i:02d}" for i in range(10, 40)]
    blocker = tmp_path / "fn" / "bo_conformance_fn.py"
    blocker.write_text(blocker.read_text().replace(
        'if key.startswith("slow"):',
        'if key == "slow-block":\n        time.sleep(2)\n    elif key.startswith("slow"):'))
    manifest = local_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    job_id = create(cli, tmp_path, job_request(invoke(), manifest), *SLOW)
    runner = _start_runner(cli)
    try:
        deadline = time.monotonic() + 30
        while len(_invoked(function)) < 9 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = set(_invoked(function))  # rows 0-8 ran; the blocking task runs
        update_status(cli, job_id, "Cancelled")
        wait_for(cli, job_id, ("Cancelled",), timeout=15)
        runner.communicate(timeout=30)
    finally:
        runner.kill()
    assert before == {f"slow-{i:02d}" for i in range(9)}
    reported = Counter(_report_keys(cli.home, job_id))
    assert set(reported.values()) == {1}
    # What ran before the cancel is reported; what finished while it stopped may be.
    assert before <= set(reported) <= set(_invoked(function))


def test_a_cancelled_local_copy_reports_exactly_the_files_it_copied(cli, tmp_path) -> None:
    """The sync path (folder to folder): a cancel stops the chunk in flight between
    files, and the report lists each file that was copied, once."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    keys = [f"f{i:03d}" for i in range(300)]
    for k in keys:
        (src / k).write_bytes(k.encode())
    m = tmp_path / "m.csv"
    m.write_text("".join(f"src,{k}\n" for k in keys))
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{out}", "--bucket-map", f"src=file://{src}", "--chunk-size",
                     "150", "--workers", "1", "--max-ops-per-second", "100", "--json",
                     "--no-progress", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        job_id = _active_job(cli)
        deadline = time.monotonic() + 30
        while not (out.exists() and len(list(out.iterdir())) >= 40) and \
                time.monotonic() < deadline:
            time.sleep(0.02)  # inside the first chunk of 150
        update_status(cli, job_id, "Cancelled")
        wait_for(cli, job_id, ("Cancelled",), timeout=15)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    copied = {p.name for p in out.iterdir()}
    reported = Counter(_report_keys(cli.home, job_id))
    assert set(reported.values()) == {1}
    assert set(reported) == copied and 40 <= len(copied) < len(keys)


def test_cancelling_jobs_nobody_runs(cli, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    manifest = s3_manifest(s3, bucket, "m.csv", [(bucket, "k")])
    ready = create(cli, tmp_path, job_request(tagging(("t", "1")), manifest))
    suspended = create(cli, tmp_path, job_request(tagging(("t", "2")), manifest,
                                                  ConfirmationRequired=True))
    for job_id in (ready, suspended):
        out = update_status(cli, job_id, "Cancelled", "--status-update-reason", "not today")
        assert out == {"JobId": job_id, "Status": "Cancelled", "StatusUpdateReason": "not today"}
        job = describe(cli, job_id)
        assert job["Status"] == "Cancelled" and job["TerminationDate"]
        assert job["StatusUpdateReason"] == "not today"
        assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 0
        again = cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Ready")
        assert again.returncode == 3 and "already Cancelled" in again.stderr
    assert cli("runner", "--json", check=True).stdout == ""
    assert _tags(s3, bucket, "k") == []  # nothing ran


# -- priorities -------------------------------------------------------------------------------

def test_a_higher_priority_job_preempts_then_the_other_resumes(cli, bucket, tmp_path,
                                                               function) -> None:
    pace = tmp_path / "pace"
    pace.write_text("0.05")  # about 8 s for the low job at this pace: it is preempted
    low_keys = [f"slow-low-{i:03d}" for i in range(150)]
    high_keys = [f"slow-high-{i:03d}" for i in range(40)]
    low = create(cli, tmp_path, job_request(
        invoke(), local_manifest(tmp_path / "low.csv", [(bucket, k) for k in low_keys]),
        priority=1), *SLOW)
    runner = _start_runner(cli)
    try:
        wait_for(cli, low, ("Active",), until=_started)
        high = create(cli, tmp_path, job_request(
            invoke(), local_manifest(tmp_path / "high.csv", [(bucket, k) for k in high_keys]),
            priority=90), *SLOW)
        paused = wait_for(cli, low, ("Paused",), timeout=20)
        assert high in paused["StatusUpdateReason"]
        assert paused["ProgressSummary"]["NumberOfTasksSucceeded"] < len(low_keys)
        pace.write_text("0.001")  # then both finish quickly
        stdout, stderr = runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert _runner_lines(stdout) == [{"JobId": low, "Status": "Paused"},
                                     {"JobId": high, "Status": "Complete"},
                                     {"JobId": low, "Status": "Complete"}], stderr
    low_log, high_log = job_log(cli.home, low), job_log(cli.home, high)

    def when(log: list[dict[str, Any]], event: str, nth: int = 0) -> str:
        return [e["time"] for e in log if e["event"] == event][nth]

    assert when(low_log, "active") < when(low_log, "paused") <= when(high_log, "active")
    assert when(high_log, "complete") <= when(low_log, "active", 1) < when(low_log, "complete")
    for job_id, keys in ((low, low_keys), (high, high_keys)):
        assert Counter(_report_keys(cli.home, job_id)) == Counter(keys)  # each row once
        job = describe(cli, job_id)
        assert job["Status"] == "Complete"
        assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == len(keys)
    invoked = Counter(_invoked(function))
    assert set(invoked) == set(low_keys) | set(high_keys)  # every task ran at least once


def test_priority_updates_and_job_tags(cli, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    manifest = s3_manifest(s3, bucket, "m.csv", [(bucket, "k")])
    first = create(cli, tmp_path, job_request(tagging(("n", "1")), manifest, priority=10,
                                              Tags=[{"Key": "team", "Value": "data"},
                                                    {"Key": "cost centre", "Value": ""}]),
                   "--workers", "1")
    second = create(cli, tmp_path, job_request(tagging(("n", "2")), manifest, priority=20),
                    "--workers", "1")
    out = cli_json(cli, "update-job-priority", "--job-id", first, "--priority", "30",
                   shape=UPDATE_PRIORITY)
    assert out == {"JobId": first, "Priority": 30}
    assert describe(cli, first)["Priority"] == 30
    assert {j["JobId"]: j["Priority"] for j in list_jobs(cli)["Jobs"]} == {first: 30, second: 20}
    bad = cli("update-job-priority", "--job-id", first, "--priority", "-1")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0

    def tags(job_id: str) -> list[dict[str, str]]:
        return cli_json(cli, "get-job-tagging", "--job-id", job_id, shape=GET_TAGGING)["Tags"]

    assert tags(first) == [{"Key": "team", "Value": "data"}, {"Key": "cost centre", "Value": ""}]
    assert tags(second) == []
    new = [{"Key": f"k{i}", "Value": f"v {i}"} for i in range(10)]
    cli("put-job-tagging", "--job-id", second, "--tags", json.dumps(new), check=True)
    assert tags(second) == new
    cli("delete-job-tagging", "--job-id", second, check=True)
    assert tags(second) == []
    dup = cli("put-job-tagging", "--job-id", second, "--tags",
              '[{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]')
    assert dup.returncode == 2 and dup.stderr.strip().count("\n") == 0

    # The runner follows the updated priorities: first (30) before second (20).
    runner = cli("runner", "--json", check=True)
    assert _runner_lines(runner.stdout) == [{"JobId": first, "Status": "Complete"},
                                            {"JobId": second, "Status": "Complete"}]
    assert _tags(s3, bucket, "k") == [("n", "2")]
    assert tags(first)[0] == {"Key": "team", "Value": "data"}  # tags outlive the run


def test_a_job_takes_up_to_fifty_tags(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(b"x")
    tags = [{"Key": f"key-{i}", "Value": f"value {i}"} for i in range(50)]
    job_id = create(cli, tmp_path, job_request(
        {"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "MD5", "ChecksumType": "FULL_OBJECT"}},
        local_manifest(tmp_path / "m.csv", [(f"file://{src}", "k")]), Tags=tags[:20]))
    assert cli_json(cli, "get-job-tagging", "--job-id", job_id)["Tags"] == tags[:20]
    put = cli("put-job-tagging", "--job-id", job_id, "--tags", json.dumps(tags))
    assert put.returncode == 0, put.stderr
    assert cli_json(cli, "get-job-tagging", "--job-id", job_id,
                    shape=GET_TAGGING)["Tags"] == tags
    over = cli("put-job-tagging", "--job-id", job_id, "--tags",
               json.dumps(tags + [{"Key": "one-more", "Value": ""}]))
    assert over.returncode == 2 and "50" in over.stderr


# -- idempotency --------------------------------------------------------------------------

def test_client_request_token_is_idempotent(cli, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    manifest = s3_manifest(s3, bucket, "m.csv", [(bucket, "k")])
    request = job_request(tagging(("a", "b")), manifest, ClientRequestToken="token-1",
                          Description="once")
    first = create(cli, tmp_path, request)
    assert create(cli, tmp_path, request) == first
    # The same request as separate members (flags) is the same request.
    flags = cli("create-job", "--operation", json.dumps(request["Operation"]),
                "--manifest", json.dumps(manifest), "--report", json.dumps(request["Report"]),
                "--priority", "10", "--description", "once", "--client-request-token",
                "token-1", "--account-id", "123456789012", "--role-arn",
                "arn:aws:iam::123456789012:role/batch-ops")
    assert flags.returncode == 0, flags.stderr
    assert json.loads(flags.stdout) == {"JobId": first}
    assert [j["JobId"] for j in list_jobs(cli)["Jobs"]] == [first]
    assert len(list((cli.home / "jobs").iterdir())) == 1

    err = create(cli, tmp_path, {**request, "Priority": 99}, expect=2)
    assert "ClientRequestToken" in err and err.strip().count("\n") == 0
    assert [j["JobId"] for j in list_jobs(cli)["Jobs"]] == [first]
    # Another token is another job.
    other = create(cli, tmp_path, {**request, "ClientRequestToken": "token-2"})
    assert other != first
    assert {j["JobId"] for j in list_jobs(cli)["Jobs"]} == {first, other}


# -- the failure threshold ----------------------------------------------------------------------

def test_the_failure_threshold_fails_the_job_early(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    keys = [f"obj-{i:04d}" for i in range(1200)]
    present = keys[::10]  # 120 objects exist; 1,080 do not (404, never retried)
    for k in present:
        (src / k).write_bytes(k.encode())
    m = tmp_path / "m.csv"
    m.write_text("".join(f"file://{src},{k}\n" for k in keys))

    def run(*flags: str) -> tuple[int, dict[str, Any]]:
        proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
                   f"file://{tmp_path / 'out'}", "--chunk-size", "100", "--workers", "1",
                   "--json", "--no-progress", *flags)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, json.loads(proc.stdout)["Job"]

    code, job = run()
    assert code == 3 and job["Status"] == "Failed"
    assert job["FailureReasons"][0]["FailureCode"] == "TaskFailureThresholdExceeded"
    assert job["TerminationDate"]
    summary = job["ProgressSummary"]
    ran = summary["NumberOfTasksSucceeded"] + summary["NumberOfTasksFailed"]
    assert 1000 <= ran < 1200  # stopped once 1,000 had run, before the end
    assert summary["NumberOfTasksFailed"] > ran / 2
    _, rows = read_report(report_manifest_path(cli.home, job["JobId"]))
    assert len(rows) == ran and len({r[1] for r in rows}) == ran  # what ran, each once
    assert {r[1] for r in rows} <= set(keys)
    assert {tuple(r[3:5]) for r in rows if r[1] not in present} == {("failed", "404")}
    assert describe(cli, job["JobId"])["Status"] == "Failed"

    code, job = run("--failure-threshold", "0.99")
    assert code == 1 and job["Status"] == "Complete"  # completed, some tasks failed
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 120
    assert job["ProgressSummary"]["NumberOfTasksFailed"] == 1080
    _, rows = read_report(report_manifest_path(cli.home, job["JobId"]))
    assert sorted(r[1] for r in rows) == keys


# -- the manifest's ETag and ARNs -------------------------------------------------------------

def test_a_manifest_etag_mismatch_fails_the_job(cli, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    manifest = s3_manifest(s3, bucket, "m.csv", [(bucket, "k")])
    right = manifest["Location"]["ETag"]
    local = local_manifest(tmp_path / "m.csv", [(bucket, "k")])
    for where in (manifest, local):
        where["Location"]["ETag"] = "0123456789abcdef0123456789abcdef"
        err = create(cli, tmp_path, job_request(tagging(), where), expect=2)
        assert "ETag" in err and err.strip().count("\n") == 0
    jobs = list_jobs(cli)["Jobs"]
    assert [j["Status"] for j in jobs] == ["Failed", "Failed"]
    for j in jobs:
        job = describe(cli, j["JobId"])
        assert job["TerminationDate"] and "ETag" in job["FailureReasons"][0]["FailureReason"]
    # The ETag as S3 prints it (in quotes) is the same ETag.
    manifest["Location"]["ETag"] = f'"{right}"'
    job_id = create(cli, tmp_path, job_request(tagging(("e", "tag")), manifest))
    assert describe(cli, job_id)["Status"] == "Ready"


def test_bucket_and_object_arns_name_s3_buckets_and_objects(cli, s3, bucket, tmp_path) -> None:
    dst = f"{bucket}-dst"
    s3.create_bucket(Bucket=dst)
    keys = ["a.txt", "dir/b c.txt", "x+y%z.bin"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode() * 3)
    manifest = s3_manifest(s3, bucket, "manifests/m.csv", [(bucket, k) for k in keys])
    request = job_request({"S3PutObjectCopy": {"TargetResource": f"arn:aws:s3:::{dst}",
                                               "TargetKeyPrefix": "copies"}}, manifest,
                          Report=report(bucket, prefix="reports/run-1"))
    job_id = create(cli, tmp_path, request)
    job = describe(cli, job_id)
    assert job["Manifest"]["Location"]["ObjectArn"] == f"arn:aws:s3:::{bucket}/manifests/m.csv"
    assert job["Operation"]["S3PutObjectCopy"]["TargetResource"] == f"arn:aws:s3:::{dst}"
    assert job["Report"]["Bucket"] == f"arn:aws:s3:::{bucket}"
    cli("runner", check=True)
    assert describe(cli, job_id)["Status"] == "Complete"
    for k in keys:
        assert s3.get_object(Bucket=dst, Key=f"copies/{k}")["Body"].read() == k.encode() * 3
    base = f"reports/run-1/job-{job_id}"
    top = json.loads(s3.get_object(Bucket=bucket, Key=f"{base}/manifest.json")["Body"].read())
    assert top["Format"] == "Report_CSV_20180820" and top["Results"]
    rows = []
    for part in top["Results"]:
        assert part["Bucket"] == bucket and part["Key"].startswith(f"{base}/results/")
        data = s3.get_object(Bucket=bucket, Key=part["Key"])["Body"].read()
        rows += [line.split(",") for line in data.decode().splitlines()]
    assert sorted(decoded_keys(rows)) == sorted(keys)


def test_the_manifest_object_version_is_honoured(cli, s3, bucket, tmp_path) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    old = s3.put_object(Bucket=bucket, Key="m.csv", Body=f"{bucket},a\n{bucket},b\n".encode())
    s3.put_object(Bucket=bucket, Key="m.csv", Body=f"{bucket},c\n".encode())
    manifest = {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                "Location": {"ObjectArn": f"arn:aws:s3:::{bucket}/m.csv",
                             "ObjectVersionId": old["VersionId"],
                             "ETag": old["ETag"].strip('"')}}
    job_id = create(cli, tmp_path, job_request(tagging(("v", "old")), manifest))
    assert describe(cli, job_id)["Manifest"]["Location"] == manifest["Location"]
    cli("runner", check=True)
    assert [_tags(s3, bucket, k) for k in ("a", "b", "c")] == [[("v", "old")]] * 2 + [[]]
