"""Conformance with Amazon's job model, with botocore's `s3control` API model as the oracle.

Every create-job request these tests send is checked against CreateJob's input shape, and
everything `describe-job`, `list-jobs` and the control commands print is checked against
the output shapes of DescribeJob, ListJobs, UpdateJobStatus, UpdateJobPriority and
GetJobTagging: member names, types and required members (botocore's own validator), and
what that validator leaves out: enum values, maximum lengths and patterns. The other
job-model test files import the helpers defined here.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import regex
from botocore.validate import ParamValidator

from helpers import enc

MODEL = botocore.session.get_session().get_service_model("s3control")
CREATE_JOB = MODEL.operation_model("CreateJob").input_shape
DESCRIBE_JOB = MODEL.operation_model("DescribeJob").output_shape
LIST_JOBS = MODEL.operation_model("ListJobs").output_shape
UPDATE_STATUS = MODEL.operation_model("UpdateJobStatus").output_shape
UPDATE_PRIORITY = MODEL.operation_model("UpdateJobPriority").output_shape
GET_TAGGING = MODEL.operation_model("GetJobTagging").output_shape
STATUSES = set(DESCRIBE_JOB.members["Job"].members["Status"].enum)
OPERATION_NAMES = set(LIST_JOBS.members["Jobs"].member.members["Operation"].enum)

# A Lambda-style function (invocation schema 2.0) run by the `invoke` operation: keys
# starting with "slow" take SLOW_SECONDS each (or the seconds written in $PACE_FILE, so a
# test can speed a running job up), keys starting with "bad" fail for good. Every finished
# call appends its key to $INVOKE_LOG.
HANDLER = '''
import os, time, urllib.parse

def pace():
    try:
        with open(os.environ["PACE_FILE"]) as f:
            return float(f.read())
    except (KeyError, OSError, ValueError):
        return float(os.environ.get("SLOW_SECONDS", "0.05"))

def handler(event):
    task = event["tasks"][0]
    key = urllib.parse.unquote_plus(task["s3Key"])  # URL-encoded, as Amazon sends it
    if key.startswith("slow"):
        time.sleep(pace())
    log = os.environ.get("INVOKE_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(fd, (key + "\\n").encode())
        os.close(fd)
    code = "PermanentFailure" if key.startswith("bad") else "Succeeded"
    return {"invocationSchemaVersion": "2.0", "treatMissingKeysAs": "PermanentFailure",
            "invocationId": event["invocationId"],
            "results": [{"taskId": task["taskId"], "resultCode": code, "resultString": key}]}
'''
FUNCTION = "python:bo_conformance_fn:handler"


# -- the oracle ---------------------------------------------------------------------------

def _store_url_for_arn(shape: Any, value: str) -> bool:
    """batchops takes store URLs and local paths where Amazon takes S3 or Lambda ARNs (an
    extension): such values are exempt from the ARN's pattern and length."""
    return "arn" in shape.metadata.get("pattern", "") and ("://" in value
                                                          or value.startswith("/"))


def model_errors(shape: Any, value: Any, where: str) -> list[str]:
    """What botocore's validator leaves out: enum values, maximum lengths and values,
    list sizes and patterns (Smithy patterns match anywhere unless anchored)."""
    errors: list[str] = []
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                errors += model_errors(member, value[name], f"{where}.{name}")
    elif kind == "list" and isinstance(value, list):
        if "max" in shape.metadata and len(value) > shape.metadata["max"]:
            errors.append(f"{where} has {len(value)} items, over {shape.metadata['max']}")
        for i, item in enumerate(value):
            errors += model_errors(shape.member, item, f"{where}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        for k, v in value.items():
            errors += model_errors(shape.key, k, f"{where} key {k!r}")
            errors += model_errors(shape.value, v, f"{where}[{k!r}]")
    elif kind == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            errors.append(f"{where}={value!r} is not one of {shape.enum}")
        if not _store_url_for_arn(shape, value):
            if "max" in shape.metadata and len(value) > shape.metadata["max"]:
                errors.append(f"{where} is {len(value)} characters, over "
                              f"{shape.metadata['max']}: {value[:60]!r}...")
            pattern = shape.metadata.get("pattern")
            if pattern and not regex.search(pattern, value):
                errors.append(f"{where}={value[:80]!r} does not match {pattern!r}")
    elif kind in ("integer", "long") and isinstance(value, int):
        if "max" in shape.metadata and value > shape.metadata["max"]:
            errors.append(f"{where}={value} is over {shape.metadata['max']}")
    return errors


def violations(value: Any, shape: Any) -> list[str]:
    report = ParamValidator().validate(value, shape)
    found = [line.strip() for line in report.generate_report().splitlines()
             if line.strip()] if report.has_errors() else []
    return found + model_errors(shape, value, shape.name)


def conforms(value: Any, shape: Any) -> None:
    found = violations(value, shape)
    assert not found, f"{shape.name} does not conform:\n" + "\n".join(found)


# -- running the CLI ----------------------------------------------------------------------

def cli_json(cli, *args: str, shape: Any = None) -> Any:  # type: ignore[no-untyped-def]
    proc = cli(*args)
    assert proc.returncode == 0, f"batchops {' '.join(args)}: {proc.stderr}"
    out = json.loads(proc.stdout)
    if shape is not None:
        conforms(out, shape)
    return out


def describe(cli, job_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """describe-job's JobDescriptor, checked against DescribeJob's output shape."""
    return cli_json(cli, "describe-job", "--job-id", job_id, shape=DESCRIBE_JOB)["Job"]


def list_jobs(cli, *args: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """list-jobs' output, checked against ListJobs' output shape."""
    return cli_json(cli, "list-jobs", *args, shape=LIST_JOBS)


def side_by_side(cli, commands: list[list[str]], at_once: int = 4,  # type: ignore[no-untyped-def]
                 timeout: float = 120) -> list[Any]:
    """Run batchops commands `at_once` at a time; returns (exit code, stdout, stderr) of
    each, in order."""
    results: list[Any] = [None] * len(commands)
    running: list[tuple[int, Any]] = []

    def finish(n: int, proc: Any) -> None:
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            proc.kill()
        assert "Traceback" not in err, err
        results[n] = (proc.returncode, out, err)

    for n, args in enumerate(commands):
        if len(running) >= at_once:
            finish(*running.pop(0))
        running.append((n, cli.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for n, proc in running:
        finish(n, proc)
    return results


def describe_all(cli, job_ids: list[str]) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """describe-job for each job (side by side), each answer checked."""
    jobs = []
    for code, out, err in side_by_side(cli, [["describe-job", "--job-id", j] for j in job_ids]):
        assert code == 0, err
        doc = json.loads(out)
        conforms(doc, DESCRIBE_JOB)
        jobs.append(doc["Job"])
    return jobs


def update_status(cli, job_id: str, status: str, *args: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return cli_json(cli, "update-job-status", "--job-id", job_id, "--requested-job-status",
                    status, *args, shape=UPDATE_STATUS)


_tokens = iter(range(1 << 30))


def request_file(tmp_path: Path, request: dict[str, Any]) -> Path:
    """A CreateJob request file: `request` with AccountId, RoleArn and a fresh
    ClientRequestToken unless given, checked against CreateJob's input shape."""
    full = {"AccountId": "123456789012", "RoleArn": "arn:aws:iam::123456789012:role/batch-ops",
            "ClientRequestToken": f"token-{time.time_ns()}-{next(_tokens)}", **request}
    conforms(full, CREATE_JOB)
    path = tmp_path / f"create-job-{time.time_ns()}-{next(_tokens)}.json"
    path.write_text(json.dumps(full))
    return path


def create(cli, tmp_path: Path, request: dict[str, Any], *flags: str,  # type: ignore[no-untyped-def]
           expect: int = 0) -> str:
    """create-job --cli-input-json with `request` (first checked against CreateJob's input
    shape); returns the JobId, or stderr when `expect` is an error exit code."""
    proc = cli("create-job", "--cli-input-json", f"file://{request_file(tmp_path, request)}",
               *flags)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == expect, proc.stdout + proc.stderr
    if expect:
        return proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == ["JobId"]
    return out["JobId"]


def wait_for(cli, job_id: str, statuses: tuple[str, ...], timeout: float = 60,  # type: ignore[no-untyped-def]
             until: Any = None) -> dict[str, Any]:
    """Poll describe-job (each answer checked) until the job is in one of `statuses`."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = describe(cli, job_id)
        if job["Status"] in statuses and (until is None or until(job)):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}; last: {job.get('Status')}")


# -- requests ---------------------------------------------------------------------------

def csv_body(rows: list[tuple[str, ...]]) -> bytes:
    return "".join(",".join([b, enc(k), *rest]) + "\n" for b, k, *rest in rows).encode()


def local_manifest(path: Path, rows: list[tuple[str, ...]]) -> dict[str, Any]:
    """A CSV manifest in a local file, as create-job's Manifest member (ETag: its MD5)."""
    path.write_bytes(csv_body(rows))
    fields = ["Bucket", "Key"] + (["VersionId"] if rows and len(rows[0]) > 2 else [])
    return {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": fields},
            "Location": {"ObjectArn": str(path),
                         "ETag": hashlib.md5(path.read_bytes()).hexdigest()}}


def s3_manifest(s3, bucket: str, key: str, rows: list[tuple[str, ...]]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A CSV manifest object in the S3 server, named by its object ARN and ETag."""
    etag = s3.put_object(Bucket=bucket, Key=key, Body=csv_body(rows))["ETag"].strip('"')
    return {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {"ObjectArn": f"arn:aws:s3:::{bucket}/{key}", "ETag": etag}}


def report(bucket: str | None = None, prefix: str = "reports",
           scope: str = "AllTasks") -> dict[str, Any]:
    out: dict[str, Any] = {"Enabled": True, "Format": "Report_CSV_20180820",
                           "ReportScope": scope}
    if bucket:
        out.update(Bucket=f"arn:aws:s3:::{bucket}", Prefix=prefix)
    return out


def job_request(operation: dict[str, Any], manifest: dict[str, Any], priority: int = 10,
                **extra: Any) -> dict[str, Any]:
    return {"Operation": operation, "Manifest": manifest,
            "Report": extra.pop("Report", report()), "Priority": priority, **extra}


def tagging(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"S3PutObjectTagging": {"TagSet": [{"Key": k, "Value": v} for k, v in pairs]}}


def invoke(**user_arguments: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"FunctionArn": FUNCTION, "InvocationSchemaVersion": "2.0"}
    if user_arguments:
        spec["UserArguments"] = user_arguments
    return {"LambdaInvoke": spec}


def install_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make HANDLER importable by batchops (as FUNCTION); returns its invocation log."""
    code = tmp_path / "fn"
    code.mkdir()
    (code / "bo_conformance_fn.py").write_text(textwrap.dedent(HANDLER))
    monkeypatch.setenv("PYTHONPATH", str(code))
    log = tmp_path / "invocations.log"
    monkeypatch.setenv("INVOKE_LOG", str(log))
    monkeypatch.setenv("SLOW_SECONDS", "0.05")
    monkeypatch.setenv("PACE_FILE", str(tmp_path / "pace"))
    return log


@pytest.fixture
def function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_function(tmp_path, monkeypatch)


def job_log(home: Path, job_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (home / "jobs" / job_id / "log").read_text()
            .splitlines()]


# -- the oracle itself --------------------------------------------------------------------

def test_the_oracle_rejects_what_amazon_would_reject() -> None:
    good = {"Job": {"JobId": "0d6c3d3c-0000-4000-8000-000000000000", "Status": "Complete",
                    "Priority": 10, "CreationTime": "2024-05-01T10:00:00.000Z",
                    "Report": {"Enabled": True, "Format": "Report_CSV_20180820"},
                    "ProgressSummary": {"TotalNumberOfTasks": 3, "NumberOfTasksSucceeded": 3,
                                        "NumberOfTasksFailed": 0}}}
    conforms(good, DESCRIBE_JOB)
    bad = [
        ("Status", "Finished", "not one of"),  # enum
        ("Statu", "Complete", "Unknown parameter"),  # member name
        ("Priority", "10", "Invalid type"),  # type
        ("Description", "d" * 257, "over 256"),  # length
        ("JobArn", "job/1", "does not match"),  # pattern
        ("CreationTime", "yesterday", "Invalid type"),  # timestamp
        ("FailureReasons", [{"FailureCode": "X", "FailureReason": "r" * 300}], "over 256"),
    ]
    for member, value, words in bad:
        job = {**good["Job"], member: value}
        found = violations({"Job": job}, DESCRIBE_JOB)
        assert any(words in f for f in found), (member, found)
    no_enabled = {"Job": {**good["Job"], "Report": {"Format": "Report_CSV_20180820"}}}
    assert any("Missing required" in f for f in violations(no_enabled, DESCRIBE_JOB))
    assert any("not one of" in f for f in violations(
        {"Jobs": [{"JobId": "abcdef", "Operation": "BatchopsNoop"}]}, LIST_JOBS))
    assert violations({"Jobs": [{"JobId": "abcdef", "Operation": "S3PutObjectCopy"}]},
                      LIST_JOBS) == []


# -- every status ---------------------------------------------------------------------------

def test_every_reachable_status_conforms(cli, s3, bucket, tmp_path, function) -> None:
    objects = ["a.txt", "dir/b c.bin", "plus+pct%/ü.dat"]
    for k in objects:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    tag_manifest = s3_manifest(s3, bucket, "manifests/tag.csv", [(bucket, k) for k in objects])
    seen: dict[str, set[str]] = {}

    def saw(job: dict[str, Any]) -> dict[str, Any]:
        seen.setdefault(job["Status"], set()).add(job["JobId"])
        return job

    # Ready, and Suspended (awaiting confirmation).
    ready = create(cli, tmp_path, job_request(tagging(("stage", "one")), tag_manifest,
                                              priority=5, Report=report(bucket),
                                              Description="tag every object",
                                              Tags=[{"Key": "team", "Value": "data"}]))
    job = saw(describe(cli, ready))
    assert job["Status"] == "Ready" and job["ProgressSummary"]["TotalNumberOfTasks"] == 3
    assert job["Operation"] == tagging(("stage", "one"))
    assert job["Manifest"]["Location"] == tag_manifest["Location"]
    suspended = create(cli, tmp_path, job_request(tagging(("stage", "two")), tag_manifest,
                                                  ConfirmationRequired=True))
    job = saw(describe(cli, suspended))
    assert job["Status"] == "Suspended" and job["ConfirmationRequired"] is True
    assert job["SuspendedCause"] and job["SuspendedDate"]

    # Failed while preparing: a malformed manifest (line 2).
    bad_body = f"{bucket},a.txt\n{bucket},c%zz\n".encode()
    etag = s3.put_object(Bucket=bucket, Key="manifests/bad.csv", Body=bad_body)["ETag"]
    bad_manifest = {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                             "Fields": ["Bucket", "Key"]},
                    "Location": {"ObjectArn": f"arn:aws:s3:::{bucket}/manifests/bad.csv",
                                 "ETag": etag.strip('"')}}
    err = create(cli, tmp_path, job_request(tagging(), bad_manifest), expect=2)
    assert "line 2" in err and err.strip().count("\n") == 0
    [failed] = list_jobs(cli, "--job-statuses", "Failed")["Jobs"]
    job = saw(describe(cli, failed["JobId"]))
    assert job["FailureReasons"][0]["FailureCode"] and "line 2" in job["StatusUpdateReason"]

    # Active, then Cancelled: a slow LambdaInvoke under `batchops runner`; then Failed by
    # the failure threshold (1,100 tasks that all fail), run last (lowest priority).
    slow = local_manifest(tmp_path / "slow.csv", [(bucket, f"slow-{i:03d}") for i in range(200)])
    active = create(cli, tmp_path, job_request(invoke(mode="conformance"), slow, priority=50),
                    "--workers", "1", "--concurrency", "1", "--chunk-size", "5")
    failing = local_manifest(tmp_path / "bad.csv", [(bucket, f"bad-{i:04d}") for i in range(1100)])
    threshold = create(cli, tmp_path, job_request(invoke(), failing, priority=1),
                       "--workers", "1", "--chunk-size", "100")
    runner = cli.popen("runner", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        job = saw(wait_for(cli, active, ("Active",), timeout=30,
                           until=lambda j: j["ProgressSummary"]["NumberOfTasksSucceeded"] > 0))
        assert job["ProgressSummary"]["TotalNumberOfTasks"] == 200
        listed = {j["JobId"]: j for j in list_jobs(cli)["Jobs"]}
        assert listed[active]["Status"] == "Active"
        assert listed[active]["Operation"] == "LambdaInvoke"
        out = update_status(cli, active, "Cancelled", "--status-update-reason", "enough")
        assert out["JobId"] == active and out["Status"] in ("Cancelling", "Cancelled")
        saw(wait_for(cli, active, ("Cancelled",), timeout=20))
        stdout, stderr = runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert [json.loads(line) for line in stdout.splitlines()] == [
        {"JobId": active, "Status": "Cancelled"}, {"JobId": ready, "Status": "Complete"},
        {"JobId": threshold, "Status": "Failed"}], stderr
    job = saw(describe(cli, active))
    assert job["StatusUpdateReason"] == "enough" and job["TerminationDate"]
    job = saw(describe(cli, ready))
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 3 and job["TerminationDate"]
    job = saw(describe(cli, threshold))
    assert job["FailureReasons"][0]["FailureCode"] == "TaskFailureThresholdExceeded"

    # Paused: `batchops run` interrupted by SIGINT (Ctrl-C).
    proc = cli.popen("run", "--manifest", slow["Location"]["ObjectArn"], "--operation", "invoke",
                     "--function", FUNCTION, "--workers", "1", "--concurrency", "1",
                     "--chunk-size", "5", "--json", "--no-progress",
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        running: list[dict[str, Any]] = []
        while not running and time.monotonic() < deadline:
            running = list_jobs(cli, "--job-statuses", "Active")["Jobs"]
            time.sleep(0.05)
        assert running, "the run never became Active"
        paused = running[0]["JobId"]
        saw(wait_for(cli, paused, ("Active",)))
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    job = saw(describe(cli, paused))
    assert job["Status"] == "Paused" and f"batchops resume {paused}" in job["StatusUpdateReason"]

    # Complete is `ready`; one more Ready job so that every resting status is listed.
    fresh = create(cli, tmp_path, job_request(tagging(), tag_manifest))
    saw(describe(cli, fresh))

    assert set(seen) == {"Ready", "Suspended", "Active", "Cancelled", "Complete", "Failed",
                         "Paused"}
    everything = list_jobs(cli)
    by_status: dict[str, set[str]] = {}
    for j in everything["Jobs"]:
        by_status.setdefault(j["Status"], set()).add(j["JobId"])
    assert by_status == {"Ready": {fresh}, "Suspended": {suspended}, "Complete": {ready},
                         "Cancelled": {active}, "Failed": {failed["JobId"], threshold},
                         "Paused": {paused}}
    # Paging and filtering give conforming pages of the same jobs.
    pages, token = [], None
    while True:
        page = list_jobs(cli, "--max-results", "3", *(["--next-token", token] if token else []))
        pages += [j["JobId"] for j in page["Jobs"]]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == [j["JobId"] for j in everything["Jobs"]]
    picked = list_jobs(cli, "--job-statuses", "Failed", "Paused")["Jobs"]
    assert {j["JobId"] for j in picked} == {failed["JobId"], threshold, paused}


# -- every operation ----------------------------------------------------------------------

def amazon_operations(bucket: str) -> list[dict[str, Any]]:
    """One Operation member per Amazon operation (as an s3control user would send it)."""
    return [
        {"S3PutObjectCopy": {"TargetResource": f"arn:aws:s3:::{bucket}",
                             "TargetKeyPrefix": "copies", "StorageClass": "STANDARD_IA",
                             "MetadataDirective": "REPLACE",
                             "NewObjectMetadata": {"ContentType": "text/plain",
                                                   "UserMetadata": {"owner": "alice"}},
                             "NewObjectTagging": [{"Key": "copied", "Value": "yes"}],
                             "CannedAccessControlList": "bucket-owner-full-control",
                             "ChecksumAlgorithm": "SHA256"}},
        {"S3PutObjectAcl": {"AccessControlPolicy": {"CannedAccessControlList": "private"}}},
        {"S3PutObjectAcl": {"AccessControlPolicy": {"AccessControlList": {
            "Owner": {"ID": "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"},
            "Grants": [{"Grantee": {"TypeIdentifier": "id", "Identifier": "75aa57f09aa0c8ca"
                                    "eab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"},
                        "Permission": "READ"}]}}}},
        tagging(("project", "x"), ("owner", "y z")),
        {"S3DeleteObjectTagging": {}},
        {"S3InitiateRestoreObject": {"ExpirationInDays": 3, "GlacierJobTier": "STANDARD"}},
        {"S3PutObjectLegalHold": {"LegalHold": {"Status": "ON"}}},
        {"S3PutObjectRetention": {"BypassGovernanceRetention": False,
                                  "Retention": {"Mode": "GOVERNANCE",
                                                "RetainUntilDate": "2030-01-01T00:00:00Z"}}},
        {"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "CRC64NVME",
                                     "ChecksumType": "FULL_OBJECT"}},
        invoke(stage="test"),
    ]


def test_every_amazon_operation_round_trips_and_conforms(cli, s3, bucket, tmp_path,
                                                         function) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    manifest = s3_manifest(s3, bucket, "m.csv", [(bucket, "k")])
    operations = amazon_operations(bucket)
    created = side_by_side(cli, [
        ["create-job", "--cli-input-json",
         f"file://{request_file(tmp_path, job_request(op, manifest, Report=report(bucket)))}"]
        for op in operations])
    assert all(code == 0 for code, _, _ in created), created
    ids = {json.loads(out)["JobId"]: next(iter(op))
           for (_, out, _), op in zip(created, operations, strict=True)}
    for job, operation in zip(describe_all(cli, list(ids)), operations, strict=True):
        assert job["Operation"] == operation  # Amazon's member names and values, unchanged
        assert job["Status"] == "Ready"
    listed = {j["JobId"]: j["Operation"] for j in list_jobs(cli)["Jobs"]}
    assert listed == ids
    assert set(ids.values()) == OPERATION_NAMES - {"S3ReplicateObject",
                                                   "S3UpdateObjectEncryption"}


SHORTCUTS = [
    (["--operation", "copy", "--target", "arn:aws:s3:::{bucket}", "--target-key-prefix", "c",
      "--storage-class", "GLACIER_IR", "--metadata-directive", "REPLACE", "--content-type",
      "text/csv", "--metadata", "a=b", "--new-tag", "t=1", "--acl", "private",
      "--checksum-algorithm", "CRC32C"], "S3PutObjectCopy"),
    (["--operation", "replicate", "--target", "s3://{bucket}"], "S3ReplicateObject"),
    (["--operation", "put-acl", "--owner-id", "o1", "--grant", "READ=id:o1"], "S3PutObjectAcl"),
    (["--operation", "restore", "--days", "2"], "S3InitiateRestoreObject"),
    (["--operation", "put-retention", "--retention-mode", "COMPLIANCE", "--retain-until",
      "2031-02-03T04:05:06+00:00"], "S3PutObjectRetention"),
    (["--operation", "invoke", "--function", FUNCTION, "--user-arg", "k=v"], "LambdaInvoke"),
    (["--operation", '{"S3PutObjectTagging": {"TagSet": [{"Key": "j", "Value": "son"}]}}'],
     "S3PutObjectTagging"),
]


def test_shortcut_flags_give_conforming_jobs(cli, s3, bucket, tmp_path, function) -> None:
    m = tmp_path / "m.csv"
    m.write_bytes(csv_body([(bucket, "k"), (bucket, "dir/k 2")]))
    for key in ("k", "dir/k 2"):  # a dry run checks that each object is there
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    runs = side_by_side(cli, [
        ["run", "--manifest", str(m), *[f.replace("{bucket}", bucket) for f in flags],
         "--dry-run", "--in-process", "--json", "--no-progress", "--description",
         f"{name} by flags"] for flags, name in SHORTCUTS])
    names = {}
    for (code, out, err), (_, name) in zip(runs, SHORTCUTS, strict=True):
        assert code == 0, err
        printed = json.loads(out)
        conforms(printed, DESCRIBE_JOB)  # `run --json` prints DescribeJob's shape too
        names[printed["Job"]["JobId"]] = name
    for job, name in zip(describe_all(cli, list(names)), names.values(), strict=True):
        assert list(job["Operation"]) == [name] and job["Status"] == "Complete", job
    assert {j["JobId"]: j["Operation"] for j in list_jobs(cli)["Jobs"]} == names


# -- lengths the model sets ---------------------------------------------------------------

def test_a_long_failure_reason_still_fits_the_model(cli, tmp_path) -> None:
    deep = tmp_path / ("d" * 200)
    deep.mkdir()
    path = deep / "manifest.csv"
    path.write_text(f"file://{tmp_path},a\nfile://{tmp_path},c%zz\n")  # line 2: bad %
    manifest = {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                "Location": {"ObjectArn": str(path),
                             "ETag": hashlib.md5(path.read_bytes()).hexdigest()}}
    err = create(cli, tmp_path, job_request({"S3ComputeObjectChecksum": {
        "ChecksumAlgorithm": "MD5", "ChecksumType": "FULL_OBJECT"}}, manifest), expect=2)
    assert "line 2" in err
    [job] = list_jobs(cli)["Jobs"]
    describe(cli, job["JobId"])  # FailureReason at most 256 characters


def test_over_long_descriptions_and_reasons_are_refused_or_fit(cli, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(b"x")
    m = tmp_path / "m.csv"
    m.write_text(f"file://{src},k\n")
    long = "x" * 257
    # CreateJob's Description: max 256 (botocore's validator checks no maximum).
    path = tmp_path / "job.json"
    request = job_request({"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "MD5",
                                                       "ChecksumType": "FULL_OBJECT"}},
                          local_manifest(m, [(f"file://{src}", "k")]), Description=long)
    path.write_text(json.dumps(request))
    results = [cli("create-job", "--cli-input-json", f"file://{path}"),
               cli("run", "--manifest", str(m), "--operation", "compute-checksum",
                   "--checksum-algorithm", "MD5", "--description", long, "--json",
                   "--no-progress")]
    ready = create(cli, tmp_path, job_request({"S3ComputeObjectChecksum": {
        "ChecksumAlgorithm": "MD5", "ChecksumType": "FULL_OBJECT"}},
        local_manifest(m, [(f"file://{src}", "k")])))
    # UpdateJobStatus' StatusUpdateReason: max 256.
    results.append(cli("update-job-status", "--job-id", ready, "--requested-job-status",
                       "Cancelled", "--status-update-reason", long))
    # Each is refused: exit 2, one line naming the member or flag and the limit.
    for proc, name in zip(results, ["Description", "--description", "--status-update-reason"],
                          strict=True):
        assert proc.returncode == 2, (proc.args, proc.returncode, proc.stderr)
        assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
        assert name in proc.stderr and "257" in proc.stderr and "256" in proc.stderr, proc.stderr
    # Nothing was created by the refused requests, and the refused cancel changed nothing.
    assert [job["JobId"] for job in list_jobs(cli)["Jobs"]] == [ready]
    assert describe(cli, ready)["Status"] == "Ready"
