"""Everything is checked before the first task (issue 11 §3), through the real CLI against
the moto server: the target bucket, the report location, the function of an invoke job;
a report that cannot be written leaves a resumable job that `resume --report` finishes."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from faultproxy import FaultProxy, _Request, s3_error
from helpers import read_report, report_manifest_path, write_manifest


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("batchops:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _tags(s3, bucket: str, key: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]


def test_a_missing_target_bucket_is_refused_before_any_task(cli, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "a")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               "s3://no-such-target-bucket", "--no-progress")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "--target" in line and "no-such-target-bucket does not exist" in line, line


def test_a_missing_report_bucket_is_refused_before_any_task(cli, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "a")])
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "t=1",
               "--report", "s3://no-such-report-bucket/reports", "--no-progress")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "--report" in line and "no-such-report-bucket does not exist" in line, line
    assert _tags(s3, bucket, "a") == []  # no task ran


def test_odd_keys_in_a_bucket_do_not_block_jobs_on_it(cli, s3, bucket, tmp_path) -> None:
    """The check reads one key no one has: what the bucket's first listing page holds
    does not matter."""
    for odd in ("a//b", "..", "./x"):
        s3.put_object(Bucket=bucket, Key=odd, Body=b"odd")
    s3.put_object(Bucket=bucket, Key="plain", Body=b"1")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "plain")])
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "t=1",
               "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert _tags(s3, bucket, "plain") == [{"Key": "t", "Value": "1"}]


def test_a_bad_bucket_name_in_a_manifest_is_one_sentence(cli, aws_env, tmp_path) -> None:
    m = write_manifest(tmp_path / "m.csv", [("my bucket", "a")])
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "t=1",
               "--no-progress")
    assert proc.returncode == 2
    assert "'my bucket' is not a bucket name" in _one_line(proc.stderr)


def test_invoke_functions_are_checked_before_any_task(cli, s3, bucket, aws_env, s3_endpoint,
                                                      tmp_path, monkeypatch) -> None:
    import boto3

    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "a")])
    proc = cli("run", "--manifest", str(m), "--operation", "invoke", "--function",
               'command:["/no/such/handler"]', "--no-progress")
    assert proc.returncode == 2
    assert "/no/such/handler" in _one_line(proc.stderr)
    proc = cli("run", "--manifest", str(m), "--operation", "invoke", "--function",
               "python:no_such_module_here:handler", "--no-progress")
    assert proc.returncode == 2
    assert "no_such_module_here" in _one_line(proc.stderr)
    # Lambda: GetFunction at Lambda's own endpoint (here moto's, named for Lambda alone).
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", s3_endpoint)
    lam = boto3.client("lambda", endpoint_url=s3_endpoint, region_name="us-east-1")
    role = boto3.client("iam", endpoint_url=s3_endpoint, region_name="us-east-1").create_role(
        RoleName=f"r-{bucket}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("h.py", "def h(event, context):\n    return {}\n")
    there = lam.create_function(FunctionName=f"fn-{bucket}", Runtime="python3.11", Role=role,
                                Handler="h.h", Code={"ZipFile": buf.getvalue()})["FunctionArn"]
    missing = there.replace(f"fn-{bucket}", "no-such-function")
    proc = cli("run", "--manifest", str(m), "--operation", "invoke", "--function", missing,
               "--no-progress")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "no-such-function" in line and "ResourceNotFound" in line, line
    # The function that is there passes the check (its invocation needs docker, which
    # moto has not here: the task fails, but only after the check let the job run).
    proc = cli("run", "--manifest", str(m), "--operation", "invoke", "--function", there,
               "--no-progress", "--max-attempts", "1")
    assert proc.returncode != 2, proc.stderr


class _RefusesReports(FaultProxy):
    """S3 in front of moto that answers 403 to every PUT under /reports-bucket/ once
    `refuse` is set (a bucket policy changed while the job ran, say)."""

    def __init__(self, upstream: str, bucket: str) -> None:
        super().__init__(upstream, seed=12)
        self.bucket = bucket
        self.refuse = True

    async def _forward(self, req: _Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        if self.refuse and req.method == "PUT" and req.path.startswith(f"/{self.bucket}/"):
            return 403, "Forbidden", [("Content-Type", "application/xml")], s3_error(
                "AccessDenied", "Access Denied")
        return await super()._forward(req)


@pytest.mark.parametrize("runner", [False, True])
def test_a_report_that_cannot_be_written_leaves_a_resumable_job(
        cli, s3, bucket, s3_endpoint, tmp_path, runner: bool) -> None:
    reports = f"{bucket}-reports"
    elsewhere = f"{bucket}-elsewhere"
    s3.create_bucket(Bucket=reports)
    s3.create_bucket(Bucket=elsewhere)
    keys = [f"k{i}" for i in range(5)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    with _RefusesReports(s3_endpoint, reports) as proxy:
        report = f"s3://{reports}/r?endpoint_url={proxy.url}"
        if runner:
            created = cli("create-job", "--operation",
                          '{"S3PutObjectTagging": {"TagSet": [{"Key": "t", "Value": "1"}]}}',
                          "--manifest", json.dumps({
                              "Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                       "Fields": ["Bucket", "Key"]},
                              "Location": {"ObjectArn": f"file://{m}",
                                            "ETag": hashlib.md5(m.read_bytes()).hexdigest()}}),
                          "--report", json.dumps({"Enabled": True, "Bucket": report,
                                                  "Format": "Report_CSV_20180820",
                                                  "ReportScope": "AllTasks"}),
                          "--priority", "10", "--no-confirmation-required")
            assert created.returncode == 0, created.stderr
            job_id = json.loads(created.stdout)["JobId"]
            proc = cli("runner")
        else:
            proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag",
                       "t=1", "--report", report, "--no-progress")
        assert proc.returncode == 3, (proc.stdout, proc.stderr)
        text = proc.stdout + proc.stderr
        assert "AccessDenied" in text and "resume" in text and "--report URL" in text, text
        assert "Traceback" not in text and "Generic" not in text and "source:" not in text
        if not runner:
            job_id = _one_line(proc.stderr) and proc.stderr.split()[1]
    assert all(_tags(s3, bucket, k) == [{"Key": "t", "Value": "1"}] for k in keys)
    desc = json.loads(cli("describe-job", "--job-id", job_id).stdout)["Job"]
    # The report's writer stopped with the job Completing: shown as Paused, resumable.
    assert desc["Status"] == "Paused" and "Completing" in desc["StatusUpdateReason"], desc
    resumed = cli("resume", job_id, "--report", f"s3://{elsewhere}/later", "--no-progress",
                  "--json")
    assert resumed.returncode == 0, resumed.stderr
    got = json.loads(resumed.stdout)["Job"]
    assert got["Status"] == "Complete" and got["Report"]["Bucket"] == f"arn:aws:s3:::{elsewhere}"
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=elsewhere)["Contents"]]
    assert f"later/job-{job_id}/manifest.json" in listed
    manifest = json.loads(s3.get_object(Bucket=elsewhere,
                                        Key=f"later/job-{job_id}/manifest.json")["Body"].read())
    rows = []
    for part in manifest["Results"]:
        body = s3.get_object(Bucket=elsewhere, Key=part["Key"])["Body"].read().decode()
        rows += [line.split(",") for line in body.splitlines()]
    assert sorted(r[1] for r in rows) == keys  # every task once


def test_local_report_path_is_unchanged(cli, tmp_path) -> None:
    """A job with no --report still writes its report in the job folder."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"1")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "a")])
    proc = cli("run", "--manifest", str(m), "--operation", "noop", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    job_id = json.loads(proc.stdout)["Job"]["JobId"]
    _, rows = read_report(report_manifest_path(Path(cli.home), job_id))
    assert [r[1] for r in rows] == ["a"]


def _no_task_ran(cli, stderr: str) -> None:  # type: ignore[no-untyped-def]
    """The job `run` created (its id is the first line) failed before any task."""
    job_id = stderr.split()[1]
    job = json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)["Job"]
    progress = job["ProgressSummary"]
    assert job["Status"] == "Failed", job
    assert progress["NumberOfTasksSucceeded"] == progress["NumberOfTasksFailed"] == 0, job


def test_a_missing_target_is_caught_whatever_the_number_of_manifest_buckets(
        cli, s3, bucket, tmp_path) -> None:
    """The target and report are always checked, not only the first buckets named."""
    sources = [f"{bucket}-{i}" for i in range(9)]
    for name in sources:
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="a", Body=b"1")
    m = write_manifest(tmp_path / "m.csv", [(name, "a") for name in sources])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"s3://{bucket}-no-such-target", "--no-progress", "--max-attempts", "1")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = _one_line(proc.stderr)
    assert "--target" in line and f"{bucket}-no-such-target does not exist" in line, line
    _no_task_ran(cli, proc.stderr)


def test_a_dry_run_checks_the_target_report_and_credentials_first(
        cli, s3, bucket, keyed_stores, tmp_path, monkeypatch) -> None:
    """A dry run is the rehearsal of the job: what the job would refuse, it refuses."""
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "a")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               "s3://no-such-target-bucket", "--dry-run", "--no-progress")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = _one_line(proc.stderr)
    assert "--target" in line and "no-such-target-bucket does not exist" in line, line
    _no_task_ran(cli, proc.stderr)
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "t=1",
               "--report", "s3://no-such-report-bucket/r", "--dry-run", "--no-progress")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = _one_line(proc.stderr)
    assert "--report" in line and "no-such-report-bucket does not exist" in line, line
    _no_task_ran(cli, proc.stderr)
    # Wrong keys at a server that checks them.
    store = keyed_stores[0]
    store.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "t=1",
               "--dry-run", "--no-progress")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = _one_line(proc.stderr)
    assert bucket in line and "signature" in line.lower(), line
    _no_task_ran(cli, proc.stderr)
