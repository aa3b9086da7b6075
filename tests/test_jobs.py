"""Amazon's job model: create-job JSON, the lifecycle, priorities, the failure threshold,
inventory and generated manifests, with botocore's s3control model as the oracle."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import botocore.session
import polars as pl
import pytest
from botocore.validate import ParamValidator

from helpers import decoded_keys, enc, read_report, report_manifest_path, write_manifest

MODEL = botocore.session.get_session().get_service_model("s3control")


# -- the oracle ---------------------------------------------------------------------------

def _enum_errors(shape: Any, value: Any, where: str) -> list[str]:
    errors = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                errors += _enum_errors(member, value[name], f"{where}.{name}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            errors += _enum_errors(shape.member, item, f"{where}[{i}]")
    elif shape.type_name == "string" and shape.enum and value not in shape.enum:
        errors.append(f"{where}={value!r} not in {shape.enum}")
    return errors


def conforms(value: dict[str, Any], shape: Any) -> None:
    report = ParamValidator().validate(value, shape)
    assert not report.has_errors(), report.generate_report()
    assert _enum_errors(shape, value, shape.name) == []


def describe(cli, job_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    out = json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)
    conforms(out, MODEL.operation_model("DescribeJob").output_shape)
    return out["Job"]


def list_jobs(cli, *args: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    out = json.loads(cli("list-jobs", *args, check=True).stdout)
    conforms(out, MODEL.operation_model("ListJobs").output_shape)
    return out


def create(cli, tmp_path: Path, request: dict[str, Any], *flags: str,  # type: ignore[no-untyped-def]
           expect: int = 0) -> str:
    full = {"AccountId": "123456789012", "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "ClientRequestToken": f"t-{time.monotonic_ns()}", **request}
    conforms(full, MODEL.operation_model("CreateJob").input_shape)
    path = tmp_path / f"job-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(full))
    proc = cli("create-job", "--cli-input-json", f"file://{path}", *flags)
    assert proc.returncode == expect, proc.stderr
    return json.loads(proc.stdout)["JobId"] if expect == 0 else proc.stderr


def _local(tmp_path: Path, n: int, name: str = "src") -> tuple[Path, list[str]]:
    src = tmp_path / name
    keys = [f"k{i:05d}" for i in range(n)]
    src.mkdir(exist_ok=True)
    for k in keys:
        (src / k).write_bytes(k.encode())
    return src, keys


def tagging_request(manifest: Path, **extra: Any) -> dict[str, Any]:
    return {"Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{manifest.parent}/out"}},
            "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                  "Fields": ["Bucket", "Key"]},
                         "Location": {"ObjectArn": str(manifest), "ETag": "ignored"}},
            "Report": {"Enabled": True, "Format": "Report_CSV_20180820",
                       "ReportScope": "AllTasks"},
            "Priority": 10, **extra}


def copy_request(manifest: Path, target: Path, priority: int = 10, **extra: Any) -> dict:
    return {"Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{target}"}},
            "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                  "Fields": ["Bucket", "Key"]},
                         "Location": {"ObjectArn": str(manifest),
                                      "ETag": hashlib.md5(manifest.read_bytes()).hexdigest()}},
            "Report": {"Enabled": True, "Format": "Report_CSV_20180820",
                       "ReportScope": "AllTasks"},
            "Priority": priority, **extra}


def _wait(cli, job_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = describe(cli, job_id)
        if job["Status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job['Status']}")


# -- lifecycle ------------------------------------------------------------------------------

def test_suspended_job_waits_for_confirmation(cli, tmp_path) -> None:
    src, keys = _local(tmp_path, 20)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    job_id = create(cli, tmp_path, copy_request(m, tmp_path / "out", ConfirmationRequired=True))
    job = describe(cli, job_id)
    assert job["Status"] == "Suspended" and job["SuspendedCause"] == "AwaitingConfirmation"
    assert job["SuspendedDate"] and job["ProgressSummary"]["TotalNumberOfTasks"] == 20
    assert cli("runner", check=True).stdout == ""  # nothing Ready
    out = json.loads(cli("update-job-status", "--job-id", job_id, "--requested-job-status",
                         "Ready", check=True).stdout)
    assert out["Status"] == "Ready" and describe(cli, job_id)["Status"] == "Ready"
    assert f"job {job_id} Complete" in cli("runner", check=True).stdout
    assert describe(cli, job_id)["Status"] == "Complete"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == keys


def test_cancel_a_job_nobody_runs(cli, tmp_path) -> None:
    src, keys = _local(tmp_path, 5)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    job_id = create(cli, tmp_path, copy_request(m, tmp_path / "out"))
    cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Cancelled",
        "--status-update-reason", "not today", check=True)
    job = describe(cli, job_id)
    assert job["Status"] == "Cancelled" and job["TerminationDate"]
    assert job["StatusUpdateReason"] == "not today"
    assert not (tmp_path / "out").exists()
    again = cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Cancelled")
    assert again.returncode == 3 and "already Cancelled" in again.stderr


def test_cancel_a_running_job(cli, tmp_path) -> None:
    src, keys = _local(tmp_path, 600)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    job_id = create(cli, tmp_path, copy_request(m, tmp_path / "out"), "--chunk-size", "20",
                    "--max-ops-per-second", "100", "--workers", "1")
    runner = cli.popen("runner", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    active = _wait(cli, job_id, ("Active",))
    assert active["ProgressSummary"]["TotalNumberOfTasks"] == 600
    time.sleep(1.0)
    start = time.monotonic()
    cli("update-job-status", "--job-id", job_id, "--requested-job-status", "Cancelled",
        check=True)
    job = _wait(cli, job_id, ("Cancelled",), timeout=15)
    assert time.monotonic() - start < 10  # within seconds
    runner.communicate(timeout=30)
    assert job["TerminationDate"]
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    ran = Counter(decoded_keys(rows))
    assert 0 < len(ran) < 600 and set(ran.values()) == {1}
    done = job["ProgressSummary"]["NumberOfTasksSucceeded"]
    assert done == len(ran)


def test_higher_priority_job_preempts_and_the_other_resumes(cli, tmp_path) -> None:
    src, keys = _local(tmp_path, 400)
    low_m = write_manifest(tmp_path / "low.csv", [(f"file://{src}", k) for k in keys])
    high_m = write_manifest(tmp_path / "high.csv", [(f"file://{src}", k) for k in keys[:50]])
    low = create(cli, tmp_path, copy_request(low_m, tmp_path / "low-out", priority=1),
                 "--chunk-size", "20", "--max-ops-per-second", "100", "--workers", "1")
    runner = cli.popen("runner", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait(cli, low, ("Active",))
    time.sleep(0.5)
    high = create(cli, tmp_path, copy_request(high_m, tmp_path / "high-out", priority=90),
                  "--workers", "1")
    out, err = runner.communicate(timeout=120)
    events = [json.loads(line) for line in
              (cli.home / "jobs" / low / "log").read_text().splitlines()]
    paused = [e for e in events if e["event"] == "paused"]
    assert paused and high in paused[0]["reason"]
    order = [json.loads(line) for line in out.splitlines()]
    assert order[0] == {"JobId": low, "Status": "Paused"}
    assert order[1] == {"JobId": high, "Status": "Complete"}
    assert order[-1] == {"JobId": low, "Status": "Complete"}
    for job_id, expected in ((low, keys), (high, keys[:50])):
        _, rows = read_report(report_manifest_path(cli.home, job_id))
        assert Counter(decoded_keys(rows)) == Counter(expected)


def test_client_request_token_is_idempotent(cli, tmp_path) -> None:
    src, keys = _local(tmp_path, 3)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    request = copy_request(m, tmp_path / "out", ClientRequestToken="same-token")
    first = create(cli, tmp_path, request)
    assert create(cli, tmp_path, request) == first
    assert [j["JobId"] for j in list_jobs(cli)["Jobs"]] == [first]
    err = create(cli, tmp_path, {**request, "Priority": 99}, expect=2)
    assert "ClientRequestToken" in err and err.strip().count("\n") == 0


def test_failure_threshold_stops_the_job_early(cli, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    rows = [(f"file://{tmp_path / 'empty'}", f"missing-{i}") for i in range(1500)]
    m = write_manifest(tmp_path / "m.csv", rows)
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}", "--chunk-size", "100", "--workers", "1",
               "--json", "--no-progress")
    assert proc.returncode == 3, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    assert job["Status"] == "Failed"
    assert job["FailureReasons"][0]["FailureCode"] == "TaskFailureThresholdExceeded"
    ran = job["ProgressSummary"]["NumberOfTasksFailed"]
    assert 1000 <= ran < 1500
    _, report = read_report(report_manifest_path(cli.home, job["JobId"]))
    assert len(report) == ran
    describe(cli, job["JobId"])
    relaxed = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
                  f"file://{tmp_path / 'out'}", "--failure-threshold", "1.0", "--json",
                  "--no-progress")
    assert relaxed.returncode == 1
    assert json.loads(relaxed.stdout)["Job"]["Status"] == "Complete"


def test_priority_tags_pagination_and_statuses(cli, tmp_path) -> None:
    src, keys = _local(tmp_path, 3)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    ids = [create(cli, tmp_path, copy_request(m, tmp_path / "out",
                                              Tags=[{"Key": "team", "Value": "data"}]))
           for _ in range(3)]
    cli("update-job-priority", "--job-id", ids[0], "--priority", "77", check=True)
    assert describe(cli, ids[0])["Priority"] == 77
    tags = json.loads(cli("get-job-tagging", "--job-id", ids[1], check=True).stdout)["Tags"]
    assert tags == [{"Key": "team", "Value": "data"}]
    cli("put-job-tagging", "--job-id", ids[1], "--tags", '[{"Key": "a", "Value": "b"}]',
        check=True)
    assert json.loads(cli("get-job-tagging", "--job-id", ids[1], check=True).stdout)[
        "Tags"] == [{"Key": "a", "Value": "b"}]
    cli("delete-job-tagging", "--job-id", ids[1], check=True)
    assert json.loads(cli("get-job-tagging", "--job-id", ids[1], check=True).stdout)[
        "Tags"] == []
    page = list_jobs(cli, "--max-results", "2")
    assert len(page["Jobs"]) == 2 and page["NextToken"]
    rest = list_jobs(cli, "--max-results", "2", "--next-token", page["NextToken"])
    assert len(rest["Jobs"]) == 1 and "NextToken" not in rest
    assert {j["JobId"] for j in page["Jobs"] + rest["Jobs"]} == set(ids)
    cli("runner", check=True)
    assert {j["Status"] for j in list_jobs(cli, "--job-statuses", "Complete")["Jobs"]} == {
        "Complete"}
    assert list_jobs(cli, "--job-statuses", "Ready")["Jobs"] == []


def test_etag_mismatch_fails_the_job(cli, tmp_path) -> None:
    src, keys = _local(tmp_path, 3)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    request = copy_request(m, tmp_path / "out")
    request["Manifest"]["Location"]["ETag"] = "0" * 32
    err = create(cli, tmp_path, request, expect=2)
    assert "ETag" in err
    [job] = list_jobs(cli)["Jobs"]
    full = describe(cli, job["JobId"])
    assert full["Status"] == "Failed" and "ETag" in full["FailureReasons"][0]["FailureReason"]


def test_bucket_and_object_arns_against_s3(cli, s3, bucket, tmp_path) -> None:
    for k in ("a", "b c"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    body = f"{bucket},a\n{bucket},{enc('b c')}\n".encode()
    etag = s3.put_object(Bucket=bucket, Key="manifests/m.csv", Body=body)["ETag"].strip('"')
    request = {"Operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "t", "Value": "1"}]}},
               "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                     "Fields": ["Bucket", "Key"]},
                            "Location": {"ObjectArn": f"arn:aws:s3:::{bucket}/manifests/m.csv",
                                         "ETag": etag}},
               "Report": {"Bucket": f"arn:aws:s3:::{bucket}", "Prefix": "reports",
                          "Enabled": True, "Format": "Report_CSV_20180820",
                          "ReportScope": "AllTasks"},
               "Priority": 5}
    job_id = create(cli, tmp_path, request)
    cli("runner", check=True)
    job = describe(cli, job_id)
    assert job["Status"] == "Complete" and job["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert s3.get_object_tagging(Bucket=bucket, Key="b c")["TagSet"] == [
        {"Key": "t", "Value": "1"}]
    assert s3.head_object(Bucket=bucket, Key=f"reports/job-{job_id}/manifest.json")


# -- manifests -----------------------------------------------------------------------------

def _inventory(s3, bucket: str, keys: list[str], fmt: str = "CSV",  # type: ignore[no-untyped-def]
               bad_md5: bool = False) -> str:
    files = []
    for n, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:])):
        if fmt == "CSV":
            rows = "".join(f'"{bucket}","{enc(k)}","","true","{len(k)}"\n' for k in part)
            data = gzip.compress(rows.encode())
            key = f"inv/data/part-{n}.csv.gz"
        else:
            buf = io.BytesIO()
            pl.DataFrame({"bucket": [bucket] * len(part), "key": part,
                          "version_id": [None] * len(part)},
                         schema={"bucket": pl.String, "key": pl.String,
                                 "version_id": pl.String}).write_parquet(buf)
            data = buf.getvalue()
            key = f"inv/data/part-{n}.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        md5 = hashlib.md5(data).hexdigest()
        files.append({"key": key, "size": len(data),
                      "MD5checksum": "0" * 32 if bad_md5 and n == 1 else md5})
    manifest = {"sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{bucket}",
                "version": "2016-11-30", "fileFormat": fmt,
                "fileSchema": "Bucket, Key, VersionId, IsLatest, Size", "files": files}
    body = json.dumps(manifest).encode()
    return s3.put_object(Bucket=bucket, Key="inv/manifest.json", Body=body)["ETag"].strip('"')


def _inventory_request(bucket: str, etag: str, target: Path) -> dict[str, Any]:
    return {"Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{target}"}},
            "Manifest": {"Spec": {"Format": "S3InventoryReport_CSV_20161130"},
                         "Location": {"ObjectArn": f"arn:aws:s3:::{bucket}/inv/manifest.json",
                                      "ETag": etag}},
            "Report": {"Enabled": True, "Format": "Report_CSV_20180820",
                       "ReportScope": "AllTasks"},
            "Priority": 10}


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_inventory_manifests(cli, s3, bucket, tmp_path, fmt) -> None:
    keys = [f"obj {i}+ü.txt" for i in range(30)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    etag = _inventory(s3, bucket, keys, fmt)
    job_id = create(cli, tmp_path, _inventory_request(bucket, etag, tmp_path / "out"))
    cli("runner", check=True)
    assert describe(cli, job_id)["Status"] == "Complete"
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert Counter(decoded_keys(rows)) == Counter(keys)
    assert all((tmp_path / "out" / k).read_bytes() == k.encode() for k in keys)


def test_inventory_md5_mismatch_is_caught(cli, s3, bucket, tmp_path) -> None:
    etag = _inventory(s3, bucket, ["a", "b", "c", "d"], bad_md5=True)
    err = create(cli, tmp_path, _inventory_request(bucket, etag, tmp_path / "out"), expect=2)
    assert "MD5" in err and "part-1" in err


def _generated(source: str, flt: dict[str, Any], output: dict | None = None) -> dict:
    gen: dict[str, Any] = {"SourceBucket": source, "EnableManifestOutput": bool(output),
                           "Filter": flt}
    if output:
        gen["ManifestOutputLocation"] = output
    return {"Operation": {"S3PutObjectTagging": {"TagSet": []}} if source.startswith("arn")
            else {"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "CRC32",
                                              "ChecksumType": "FULL_OBJECT"}},
            "ManifestGenerator": {"S3JobManifestGenerator": gen},
            "Report": {"Enabled": True, "Format": "Report_CSV_20180820",
                       "ReportScope": "AllTasks"},
            "Priority": 10}


FILTERS = [
    ({"KeyNameConstraint": {"MatchAnyPrefix": ["logs/"]}}, {"logs/a.gz", "logs/b.txt"}),
    ({"KeyNameConstraint": {"MatchAnySuffix": [".txt"]}}, {"logs/b.txt", "data/c.txt"}),
    ({"KeyNameConstraint": {"MatchAnySubstring": ["/c"]}}, {"data/c.txt"}),
    ({"ObjectSizeGreaterThanBytes": 100}, {"data/big.bin"}),
    ({"ObjectSizeLessThanBytes": 5}, {"logs/a.gz"}),
    ({"CreatedAfter": "2000-01-01T00:00:00Z"}, {"logs/a.gz", "logs/b.txt", "data/c.txt",
                                                "data/big.bin"}),
    ({"CreatedBefore": "2000-01-01T00:00:00Z"}, set()),
]
SIZES = {"logs/a.gz": 3, "logs/b.txt": 10, "data/c.txt": 20, "data/big.bin": 500}


@pytest.mark.parametrize(("flt", "expected"), FILTERS)
def test_generated_manifest_over_a_folder(cli, tmp_path, flt, expected) -> None:
    root = tmp_path / "listed"
    for k, size in SIZES.items():
        (root / k).parent.mkdir(parents=True, exist_ok=True)
        (root / k).write_bytes(b"x" * size)
    job_id = create(cli, tmp_path, _generated(f"file://{root}", flt))
    cli("runner", check=True)
    job = describe(cli, job_id)
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(expected)
    if expected:
        _, rows = read_report(report_manifest_path(cli.home, job_id))
        assert set(decoded_keys(rows)) == expected


def test_generated_manifest_over_s3_with_output(cli, s3, bucket, tmp_path) -> None:
    for k, size in SIZES.items():
        s3.put_object(Bucket=bucket, Key=k, Body=b"x" * size,
                      StorageClass="GLACIER" if k == "data/big.bin" else "STANDARD")
    out = {"Bucket": f"arn:aws:s3:::{bucket}", "ManifestPrefix": "generated",
           "ManifestFormat": "S3InventoryReport_CSV_20211130"}
    request = _generated(f"arn:aws:s3:::{bucket}", {"MatchAnyStorageClass": ["GLACIER"]}, out)
    job_id = create(cli, tmp_path, request)
    job = describe(cli, job_id)
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 1
    descriptor = job["GeneratedManifestDescriptor"]
    assert descriptor["Format"] == "S3InventoryReport_CSV_20211130"
    key = descriptor["Location"]["ObjectArn"].split(":::", 1)[1].split("/", 1)[1]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    [part] = manifest["files"]
    data = s3.get_object(Bucket=bucket, Key=part["key"])["Body"].read()
    assert hashlib.md5(data).hexdigest() == part["MD5checksum"]
    assert gzip.decompress(data).decode() == f"{bucket},data/big.bin\n"


def test_run_from_listing_and_retry_the_failures(cli, tmp_path) -> None:
    root = tmp_path / "listed"
    for k in ("keep/a", "keep/b", "skip/c"):
        (root / k).parent.mkdir(parents=True, exist_ok=True)
        (root / k).write_bytes(b"x")
    proc = cli("run", "--from-listing", f"file://{root}", "--prefix", "keep/", "--operation",
               "copy", "--target", f"file://{tmp_path / 'out'}", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "keep").iterdir()) == ["a", "b"]
    assert not (tmp_path / "out" / "skip").exists()
    # The retry recipe: a failed-tasks part is a manifest of exactly the failures.
    rows = [(f"file://{root}", k) for k in ("keep/a", "gone/1", "gone/2")]
    m = write_manifest(tmp_path / "m.csv", rows)
    first = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
                f"file://{tmp_path / 'out2'}", "--json", "--no-progress")
    assert first.returncode == 1
    job_id = json.loads(first.stdout)["Job"]["JobId"]
    parts = sorted((cli.home / "jobs" / job_id / "report" / f"job-{job_id}" / "results")
                   .glob("*-failed.csv"))
    for k in ("1", "2"):
        (root / "gone").mkdir(exist_ok=True)
        (root / "gone" / k).write_bytes(b"back")
    retry = cli("run", "--manifest", str(parts[0]), "--operation", "copy", "--target",
                f"file://{tmp_path / 'out2'}", "--json", "--no-progress")
    assert retry.returncode == 0, retry.stderr
    _, rows2 = read_report(report_manifest_path(cli.home, json.loads(retry.stdout)["Job"]
                                                ["JobId"]))
    assert sorted(decoded_keys(rows2)) == ["gone/1", "gone/2"]


def test_the_readme_s_main_command_batchops_demo_runs(cli, tmp_path) -> None:
    """`batchops demo`, the README's first command: sample objects copied by a job."""
    done = cli("demo", "--objects", "300", "--dir", str(tmp_path / "demo"), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "Complete: 300 succeeded, 0 failed" in done.stdout, done.stdout
