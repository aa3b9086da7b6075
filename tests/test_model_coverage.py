"""Every member of s3control's CreateJob is honoured or refused (issue 11 §4).

The first test walks the model botocore ships and fails on any member that
model/coverage.py does not classify, or whose honouring test does not exist. The
refusals are then made for real; the members honoured by this file are shown against the
moto server, through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batchops.model.coverage import HONOURED, REFUSED
from batchops.model.errors import SpecError
from batchops.model.request import input_shape, options_from_request
from faultproxy import FaultProxy, _Request
from helpers import read_report, report_manifest_path, write_manifest

ROOT = Path(__file__).resolve().parent.parent


def _members(shape: Any, path: str = "", seen: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    """(path, member shape) for every member below `shape`, as coverage.py names them."""
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            here = f"{path}.{name}" if path else name
            yield here, member
            if member.name not in seen:
                yield from _members(member, here, seen | {member.name})
    elif shape.type_name == "list":
        yield from _members(shape.member, path + "[]", seen)
    elif shape.type_name == "map":
        yield from _members(shape.value, path + "{}", seen)


def test_every_member_is_honoured_or_refused() -> None:
    paths = [p for p, _ in _members(input_shape())]
    assert len(paths) > 100
    missing = [p for p in paths if p not in HONOURED and p not in REFUSED]
    assert not missing, f"neither honoured nor refused: {missing}"
    both = set(HONOURED) & set(REFUSED)
    assert not both, both
    stale = (set(HONOURED) | set(REFUSED)) - set(paths)
    assert not stale, f"not in the model: {stale}"
    for path, test in HONOURED.items():
        file, _, name = test.partition("::")
        text = (ROOT / file).read_text()
        assert re.search(rf"^def {name}\(", text, re.M), f"{path}: no test {test}"


def _value(shape: Any) -> Any:
    """A valid value of `shape`, with its required members."""
    kind = shape.type_name
    if kind == "structure":
        return {n: _value(shape.members[n]) for n in shape.required_members}
    if kind == "list":
        return [_value(shape.member)]
    if kind == "map":
        return {"k": _value(shape.value)}
    if kind == "boolean":
        return True
    if kind in ("integer", "long"):
        return 1
    if kind == "timestamp":
        return "2030-01-01T00:00:00Z"
    return shape.enum[0] if getattr(shape, "enum", None) else "x"


def _request_with(path: str) -> dict[str, Any]:
    """A valid CreateJob request, plus the member at `path` (and what it sits in)."""
    request: dict[str, Any] = {
        "AccountId": "123456789012", "Priority": 10, "RoleArn": "arn:aws:iam::1:role/r",
        "Operation": {"S3PutObjectTagging": {"TagSet": []}},
        "Report": {"Enabled": False},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                              "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "e"}},
    }
    parts = path.replace("[]", "").split(".")
    if parts[0] == "Operation":
        request["Operation"] = {}
    if parts[0] == "ManifestGenerator":
        del request["Manifest"]
        request["ManifestGenerator"] = {"S3JobManifestGenerator": {
            "SourceBucket": "arn:aws:s3:::b", "EnableManifestOutput": False}}
    node: Any = request
    shape = input_shape()
    for i, name in enumerate(parts):
        shape = shape.members[name]
        last = i == len(parts) - 1
        value = _value(shape)
        if isinstance(node, list):
            node = node[0]
        if last or name not in node:
            node[name] = value
        node = node[name]
        if shape.type_name == "list":
            shape = shape.member
    return request


@pytest.mark.parametrize("path", sorted(REFUSED))
def test_every_refused_member_is_refused_in_one_sentence(path: str) -> None:
    with pytest.raises(SpecError) as caught:
        options_from_request(_request_with(path))
    message = str(caught.value)
    # The member, or the refused member it sits in, is named, with the reason.
    named = [p for p in REFUSED if path.startswith(p) and f"{p}: {REFUSED[p]}" in message]
    assert named and "\n" not in message, message


def test_refusals_through_the_cli(cli, tmp_path: Path) -> None:
    request = _request_with("Operation.S3PutObjectCopy.AnnotationDirective")
    request["Operation"]["S3PutObjectCopy"]["TargetResource"] = "arn:aws:s3:::dst"
    job = tmp_path / "job.json"
    job.write_text(json.dumps(request))
    proc = cli("create-job", "--cli-input-json", f"file://{job}")
    assert proc.returncode == 2 and "AnnotationDirective" in proc.stderr, proc.stderr
    m = write_manifest(tmp_path / "m.csv", [("bkt", "k")])
    proc = cli("run", "--manifest", str(m), "--operation",
               '{"S3PutObjectRetention": {"Retention": {"EventHold": "ON"}}}')
    assert proc.returncode == 2 and "EventHold" in proc.stderr, proc.stderr
    assert not (Path(cli.home) / "jobs").exists() or not any((Path(cli.home) / "jobs").iterdir())


def _create(cli, tmp_path: Path, request: dict[str, Any]):  # type: ignore[no-untyped-def]
    path = tmp_path / f"job-{hashlib.md5(json.dumps(request).encode()).hexdigest()}.json"
    path.write_text(json.dumps(request))
    return cli("create-job", "--cli-input-json", f"file://{path}")


def _manifest(m: Path) -> dict[str, Any]:
    return {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {"ObjectArn": f"file://{m}",
                         "ETag": hashlib.md5(m.read_bytes()).hexdigest()}}


def test_specs_that_cannot_work_are_refused(cli, tmp_path: Path) -> None:
    m = write_manifest(tmp_path / "m.csv", [("bkt", "k")])
    base = {"AccountId": "1", "Priority": 1, "RoleArn": "arn:aws:iam::1:role/r",
            "Report": {"Enabled": False}, "Manifest": _manifest(m),
            "Operation": {"S3PutObjectTagging": {"TagSet": []}}}
    cases = [
        ({"Operation": {"S3ReplicateObject": {}}}, "S3ReplicateObject"),
        ({"Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s4:::x"}}}, "s4"),
        ({"Report": {"Enabled": True, "Bucket": "arn:aws:s3:::r", "Format": "CSV",
                     "ReportScope": "AllTasks"}}, "Report.Format"),
        ({"ManifestGenerator": {"S3JobManifestGenerator": {
            "SourceBucket": "arn:aws:s3:::b", "EnableManifestOutput": False}}},
         "not both"),
    ]
    for change, words in cases:
        proc = _create(cli, tmp_path, {**base, **change})
        assert proc.returncode == 2, (change, proc.stderr)
        lines = [x for x in proc.stderr.splitlines() if x.startswith("batchops:")]
        assert len(lines) == 1 and words in lines[0], (change, proc.stderr)
    proc = cli("run", "--manifest", str(m), "--operation", '{"S3ReplicateObject": {}}')
    assert proc.returncode == 2 and "--target" in proc.stderr, proc.stderr


def test_account_and_role_are_the_jobs(cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(b"1")
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", "k")])
    proc = _create(cli, tmp_path, {
        "AccountId": "111122223333", "Priority": 3, "ConfirmationRequired": False,
        "RoleArn": "arn:aws:iam::111122223333:role/batch", "Report": {"Enabled": False},
        "Manifest": _manifest(m), "Operation": {"BatchopsNoop": {}}})
    assert proc.returncode == 0, proc.stderr
    job_id = json.loads(proc.stdout)["JobId"]
    assert cli("runner").returncode == 0
    job = json.loads(cli("describe-job", "--job-id", job_id).stdout)["Job"]
    assert job["JobArn"].split(":")[4] == "111122223333"
    assert job["RoleArn"] == "arn:aws:iam::111122223333:role/batch"
    assert job["Status"] == "Complete" and not report_manifest_path(Path(cli.home),
                                                                    job_id).exists()


def _copy(cli, tmp_path: Path, rows: list[tuple[str, str]], spec: dict[str, Any],
          code: int = 0):  # type: ignore[no-untyped-def]
    m = write_manifest(tmp_path / f"m{len(list(tmp_path.iterdir()))}.csv", rows)
    proc = cli("run", "--manifest", str(m), "--operation",
               json.dumps({"S3PutObjectCopy": spec}), "--no-progress", "--json")
    assert proc.returncode == code, proc.stderr
    job_id = json.loads(proc.stdout)["Job"]["JobId"]
    _, report = read_report(report_manifest_path(Path(cli.home), job_id))
    return {r[1]: r for r in report}


class _Recorder(FaultProxy):
    """S3 in front of moto that keeps the headers of each CopyObject request (moto
    applies neither copy conditions nor object lock on a copy: what batchops sends is
    what S3 would act on)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, seed=13)
        self.copies: list[dict[str, str]] = []

    async def _forward(self, req: _Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        if req.method == "PUT" and req.header("x-amz-copy-source"):
            self.copies.append({k.lower(): v for k, v in req.headers})
        return await super()._forward(req)


def test_copy_metadata_and_conditions(cli, s3, bucket, s3_endpoint, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dst = f"{bucket}-meta"
    s3.create_bucket(Bucket=dst)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    expires = "2031-02-03T04:05:06Z"
    with _Recorder(s3_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        _copy(cli, tmp_path, [(bucket, "k")], {
            "TargetResource": f"arn:aws:s3:::{dst}", "RedirectLocation": "/moved.html",
            "RequesterPays": True, "ModifiedSinceConstraint": "2001-01-01T00:00:00Z",
            "UnModifiedSinceConstraint": "2099-01-01T00:00:00Z",
            "NewObjectMetadata": {"CacheControl": "max-age=60", "ContentDisposition": "inline",
                                  "ContentEncoding": "identity", "ContentLanguage": "fr",
                                  "HttpExpiresDate": expires, "SSEAlgorithm": "AES256",
                                  "ContentType": "text/x-new"}})
    sent = proxy.copies[-1]
    assert sent["x-amz-copy-source-if-modified-since"] == "Mon, 01 Jan 2001 00:00:00 GMT"
    assert sent["x-amz-copy-source-if-unmodified-since"] == "Thu, 01 Jan 2099 00:00:00 GMT"
    assert sent["x-amz-request-payer"] == "requester"
    head = s3.head_object(Bucket=dst, Key="k")
    assert head["CacheControl"] == "max-age=60" and head["ContentDisposition"] == "inline"
    assert head["ContentEncoding"] == "identity" and head["ContentLanguage"] == "fr"
    assert head["WebsiteRedirectLocation"] == "/moved.html"
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "text/x-new"
    assert head["ExpiresString"] == "Mon, 03 Feb 2031 04:05:06 GMT"


def _kms_key(s3_endpoint: str) -> str:
    import boto3

    kms = boto3.client("kms", endpoint_url=s3_endpoint, region_name="us-east-1")
    return str(kms.create_key()["KeyMetadata"]["Arn"])


def test_copy_grants_and_kms(cli, s3, bucket, s3_endpoint, tmp_path: Path) -> None:
    dst = f"{bucket}-kms"
    s3.create_bucket(Bucket=dst)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    owner = s3.get_object_acl(Bucket=bucket, Key="k")["Owner"]["ID"]
    key = _kms_key(s3_endpoint)
    _copy(cli, tmp_path, [(bucket, "k")], {
        "TargetResource": f"arn:aws:s3:::{dst}", "SSEAwsKmsKeyId": key,
        "BucketKeyEnabled": True,
        "AccessControlGrants": [{"Grantee": {"TypeIdentifier": "id", "Identifier": owner,
                                             "DisplayName": "me"},
                                 "Permission": "READ_ACP"}]})
    head = s3.head_object(Bucket=dst, Key="k")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key
    assert head["BucketKeyEnabled"] is True
    grants = s3.get_object_acl(Bucket=dst, Key="k")["Grants"]
    assert {(g["Grantee"].get("ID"), g["Permission"]) for g in grants} == {(owner, "READ_ACP")}


ALGORITHMS = ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME", "SHA512", "MD5", "XXHASH64",
              "XXHASH3", "XXHASH128")


def test_copy_checksum_algorithms(cli, s3, bucket, tmp_path: Path) -> None:
    """All ten of the model's algorithms reach CopyObject (S3 computes the checksum)."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    for alg in ALGORITHMS:
        _copy(cli, tmp_path, [(bucket, "k")], {"TargetResource": f"arn:aws:s3:::{bucket}",
                                               "TargetKeyPrefix": alg, "ChecksumAlgorithm": alg})
        head = s3.head_object(Bucket=bucket, Key=f"{alg}/k", ChecksumMode="ENABLED")
        assert f"Checksum{alg}" in head, (alg, sorted(head))


def test_copy_object_lock(cli, s3, s3_endpoint, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    src = "lock-src-" + hashlib.md5(str(tmp_path).encode()).hexdigest()[:8]
    dst = src.replace("src", "dst")
    s3.create_bucket(Bucket=src)
    s3.create_bucket(Bucket=dst, ObjectLockEnabledForBucket=True)
    s3.put_object(Bucket=src, Key="k", Body=b"data")
    until = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    with _Recorder(s3_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        # moto refuses every copy with a retention (it wants a body checksum): the
        # request S3 would act on is what is checked here.
        _copy(cli, tmp_path, [(src, "k")], {
            "TargetResource": f"arn:aws:s3:::{dst}", "ObjectLockMode": "GOVERNANCE",
            "ObjectLockRetainUntilDate": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ObjectLockLegalHoldStatus": "ON"}, code=1)
    sent = proxy.copies[-1]
    assert sent["x-amz-object-lock-mode"] == "GOVERNANCE"
    assert sent["x-amz-object-lock-retain-until-date"].startswith(
        until.strftime("%Y-%m-%dT%H:%M:%S"))
    assert sent["x-amz-object-lock-legal-hold"] == "ON"


def test_update_object_encryption(cli, s3, bucket, s3_endpoint, tmp_path: Path) -> None:
    """An S3-compatible endpoint: each object is copied onto itself with the new
    encryption, its data, metadata and tags kept, and the report says so."""
    key = _kms_key(s3_endpoint)
    s3.put_object(Bucket=bucket, Key="doc", Body=b"secret data", ContentType="text/plain",
                  Metadata={"a": "1"}, Tagging="t=1")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "doc")])
    proc = cli("run", "--manifest", str(m), "--operation", "update-encryption",
               "--kms-key-arn", key, "--bucket-key-enabled", "true", "--no-progress",
               "--json")
    assert proc.returncode == 0, proc.stderr
    head = s3.head_object(Bucket=bucket, Key="doc")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key
    assert head["Metadata"] == {"a": "1"} and head["ContentType"] == "text/plain"
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"secret data"
    assert s3.get_object_tagging(Bucket=bucket, Key="doc")["TagSet"] == [
        {"Key": "t", "Value": "1"}]
    job = json.loads(proc.stdout)["Job"]
    assert job["Operation"] == {"S3UpdateObjectEncryption": {"ObjectEncryption": {
        "SSEKMS": {"KMSKeyArn": key, "BucketKeyEnabled": True}}}}
    _, rows = read_report(report_manifest_path(Path(cli.home), job["JobId"]))
    assert "copied onto itself" in rows[0][6], rows


def test_update_object_encryption_keeps_the_storage_class(cli, s3, bucket, s3_endpoint,
                                                         tmp_path: Path) -> None:
    """The copy onto itself keeps what the object had: its storage class (S3 would make
    the copy STANDARD), its metadata, content type and website redirect; only the SSE-KMS
    key changes."""
    old, new = _kms_key(s3_endpoint), _kms_key(s3_endpoint)
    s3.put_object(Bucket=bucket, Key="ia", Body=b"infrequent", StorageClass="STANDARD_IA",
                  ContentType="application/x-ia", Metadata={"m": "2"},
                  WebsiteRedirectLocation="/elsewhere.html",
                  ServerSideEncryption="aws:kms", SSEKMSKeyId=old)
    s3.put_object(Bucket=bucket, Key="std", Body=b"standard")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "ia"), (bucket, "std")])
    proc = cli("run", "--manifest", str(m), "--operation", "update-encryption",
               "--kms-key-arn", new, "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    head = s3.head_object(Bucket=bucket, Key="ia")
    assert head["StorageClass"] == "STANDARD_IA", head
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == new, head
    assert head["Metadata"] == {"m": "2"} and head["ContentType"] == "application/x-ia"
    # (moto keeps the redirect on a COPY of its own; S3 does not: batchops passes it on)
    assert head["WebsiteRedirectLocation"] == "/elsewhere.html", head
    assert s3.get_object(Bucket=bucket, Key="ia")["Body"].read() == b"infrequent"
    head = s3.head_object(Bucket=bucket, Key="std")
    assert head.get("StorageClass", "STANDARD") == "STANDARD" and head["SSEKMSKeyId"] == new
