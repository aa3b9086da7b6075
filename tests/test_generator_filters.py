"""The generated manifest's filters that the listing does not answer: EligibleForReplication
(the source bucket's replication rules), MatchAnyObjectEncryption and
ObjectReplicationStatuses (each object's HEAD), through the CLI against moto.

Where moto keeps less than S3 answers, `_AsS3Answers` (a proxy in front of moto) answers
as S3 does: GetBucketReplication with the configuration it was given (moto answers every
rule's filter as `Prefix: ""`), the key of an aws:kms:dsse object (moto stores it, and
answers it only for aws:kms), a bare HEAD of an SSE-C object with 400 (moto stores no
SSE-C) and the replication status of objects (moto replicates nothing and sets none).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from faultproxy import FaultProxy, _Request
from helpers import decoded_keys, read_report, report_manifest_path
from test_conformance import report, side_by_side

NOOP = {"BatchopsNoop": {}}


class _AsS3Answers(FaultProxy):
    """S3 in front of moto, answering as S3 would where moto keeps less (module doc)."""

    def __init__(self, upstream: str, heads: dict[str, dict[str, str]] | None = None,
                 ssec: frozenset[str] = frozenset()) -> None:
        super().__init__(upstream, seed=11)
        self.replication: dict[str, bytes] = {}
        self.heads = heads or {}
        self.ssec = ssec

    async def _forward(self, req: _Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        query = parse_qs(urlsplit(req.target).query, keep_blank_values=True)
        bucket = req.path.strip("/")
        if "replication" in query and req.method == "GET" and bucket in self.replication:
            return 200, "OK", [("Content-Type", "application/xml")], self.replication[bucket]
        if req.method == "HEAD" and req.path in self.ssec and \
                not req.header("x-amz-server-side-encryption-customer-algorithm"):
            return 400, "Bad Request", [("Content-Type", "application/xml")], b""
        status, reason, headers, body = await super()._forward(req)
        if "replication" in query and req.method == "PUT" and status == 200:
            self.replication[bucket] = req.body
        if req.method == "HEAD" and req.path in self.heads:
            headers = [*headers, *self.heads[req.path].items()]
        return status, reason, headers, body


def _request(tmp_path: Path, bucket: str, flt: dict[str, Any]) -> str:
    """A CreateJob request file (a no-op job over the generated manifest); its URL."""
    request = {"AccountId": "123456789012", "RoleArn": "arn:aws:iam::123456789012:role/r",
               "Operation": NOOP, "Report": report(), "Priority": 10,
               "ManifestGenerator": {"S3JobManifestGenerator": {
                   "SourceBucket": f"arn:aws:s3:::{bucket}", "EnableManifestOutput": False,
                   "Filter": flt}}}
    path = tmp_path / f"job-{len(list(tmp_path.glob('job-*.json')))}.json"
    path.write_text(json.dumps(request))
    return f"file://{path}"


def _selected(cli, tmp_path: Path, bucket: str,  # type: ignore[no-untyped-def]
              filters: list[dict[str, Any]]) -> list[list[str]]:
    """One job per filter (created side by side, then run): the keys each one's report
    holds, sorted."""
    created = side_by_side(cli, [
        ["create-job", "--cli-input-json", _request(tmp_path, bucket, flt), "--workers", "1"]
        for flt in filters])
    assert all(code == 0 for code, _, _ in created), created
    assert cli("runner").returncode == 0
    out = []
    for _, stdout, _ in created:
        _, rows = read_report(report_manifest_path(Path(cli.home), json.loads(stdout)["JobId"]))
        out.append(sorted(decoded_keys(rows)))
    return out


def _kms_key(s3_endpoint: str) -> str:
    import boto3

    kms = boto3.client("kms", endpoint_url=s3_endpoint, region_name="us-east-1")
    return str(kms.create_key()["KeyMetadata"]["Arn"])


def _client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    from conftest import ACCESS_KEY, REGION, SECRET_KEY

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION)


def _versioned(s3, *buckets: str) -> None:  # type: ignore[no-untyped-def]
    for name in buckets:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def _rule(to: str, rule_id: str, flt: dict[str, Any], status: str = "Enabled",
          priority: int = 1) -> dict[str, Any]:
    return {"ID": rule_id, "Priority": priority, "Filter": flt, "Status": status,
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": f"arn:aws:s3:::{to}"}}


ROLE = "arn:aws:iam::123456789012:role/replication"


def test_eligible_for_replication_follows_the_replication_rules(
        cli, s3, bucket, s3_endpoint, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly the objects an Enabled rule takes, by prefix, tag, or prefix and tags; the
    object tags are read only where a rule with tags decides."""
    replica = f"{bucket}-replica"
    s3.create_bucket(Bucket=replica)
    _versioned(s3, bucket, replica)
    objects = {"logs/a": "", "logs/b": "x=1", "tagged/t": "rep=yes", "other/u": "rep=no",
               "docs/1": "x=1&y=2", "docs/2": "x=2", "misc/m": "x=1", "off/o": "",
               "plain": ""}
    for key, tags in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=b"1", Tagging=tags)
    with _AsS3Answers(s3_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        _client(proxy.url).put_bucket_replication(Bucket=bucket, ReplicationConfiguration={
            "Role": ROLE, "Rules": [
                _rule(replica, "by-prefix", {"Prefix": "logs/"}),
                _rule(replica, "by-tag", {"Tag": {"Key": "rep", "Value": "yes"}}, priority=2),
                _rule(replica, "by-both", {"And": {"Prefix": "docs/",
                                          "Tags": [{"Key": "x", "Value": "1"}]}}, priority=3),
                _rule(replica, "disabled", {"Prefix": "off/"}, status="Disabled", priority=4)]})
        [eligible, with_prefix] = _selected(cli, tmp_path, bucket, [
            {"EligibleForReplication": True},
            {"EligibleForReplication": True, "KeyNameConstraint": {"MatchAnyPrefix": ["docs/"]}}])
        assert eligible == ["docs/1", "logs/a", "logs/b", "tagged/t"]
        assert with_prefix == ["docs/1"]
        # GetObjectTagging (a GET of the object's path: the job itself reads no object)
        # only where a rule with tags decides: not for logs/*, which a prefix rule takes.
        assert proxy.requests_for(f"/{bucket}/logs/a", "GET") == 0
        assert proxy.requests_for(f"/{bucket}/other/u", "GET") >= 1

        # The first schema's rules (a Prefix of the rule's own, no Filter): no tags read.
        _client(proxy.url).put_bucket_replication(Bucket=bucket, ReplicationConfiguration={
            "Role": ROLE, "Rules": [
                {"ID": "v1", "Prefix": "docs/", "Status": "Enabled",
                 "Destination": {"Bucket": f"arn:aws:s3:::{replica}"}},
                {"ID": "v1-off", "Prefix": "logs/", "Status": "Disabled",
                 "Destination": {"Bucket": f"arn:aws:s3:::{replica}"}}]})
        before = proxy.requests_for(f"/{bucket}/other/u", "GET")
        [legacy, every] = _selected(cli, tmp_path, bucket, [
            {"EligibleForReplication": True}, {"EligibleForReplication": False}])
        assert legacy == ["docs/1", "docs/2"]
        assert every == sorted(objects)
        assert proxy.requests_for(f"/{bucket}/other/u", "GET") == before


def test_eligible_for_replication_without_a_replication_configuration_fails_the_job(
        cli, s3, bucket, tmp_path: Path) -> None:
    """As Amazon fails a Batch Replication job on a bucket without replication: one
    sentence, exit 2, at creation; the job is Failed with that reason."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    proc = cli("create-job", "--cli-input-json",
               _request(tmp_path, bucket, {"EligibleForReplication": True}))
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("batchops:")]
    assert len(lines) == 1 and "has no replication configuration" in lines[0], proc.stderr
    assert "EligibleForReplication" in lines[0]
    jobs = json.loads(cli("list-jobs").stdout)["Jobs"]
    assert [j["Status"] for j in jobs] == ["Failed"], jobs


def test_eligible_for_replication_with_moto_alone(cli, s3, bucket, tmp_path: Path) -> None:
    """moto's own GetBucketReplication (every rule's filter answered as `Prefix: ""`):
    an Enabled rule takes every object, a configuration with only Disabled rules none."""
    replica = f"{bucket}-replica"
    s3.create_bucket(Bucket=replica)
    _versioned(s3, bucket, replica)
    for key in ("a", "b/c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"1")
    s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration={
        "Role": ROLE, "Rules": [_rule(replica, "off", {"Prefix": ""}, status="Disabled")]})
    assert _selected(cli, tmp_path, bucket, [{"EligibleForReplication": True}]) == [[]]
    s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration={
        "Role": ROLE, "Rules": [_rule(replica, "on", {"Prefix": ""})]})
    assert _selected(cli, tmp_path, bucket, [{"EligibleForReplication": True}]) == [["a", "b/c"]]


def test_every_object_encryption_moto_stores(cli, s3, bucket, s3_endpoint,
                                             tmp_path: Path) -> None:
    """NOTSSE, SSES3, SSEKMS (by key, by BucketKeyEnabled true and false) and DSSEKMS, each
    selecting exactly its objects (SSE-C and a DSSE-KMS key: test_what_moto_does_not_keep)."""
    one, two = _kms_key(s3_endpoint), _kms_key(s3_endpoint)
    s3.put_object(Bucket=bucket, Key="none", Body=b"1")
    s3.put_object(Bucket=bucket, Key="s3", Body=b"1", ServerSideEncryption="AES256")
    s3.put_object(Bucket=bucket, Key="kms", Body=b"1", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=one)
    s3.put_object(Bucket=bucket, Key="kms-bucket-key", Body=b"1",
                  ServerSideEncryption="aws:kms", SSEKMSKeyId=one, BucketKeyEnabled=True)
    s3.put_object(Bucket=bucket, Key="kms-two", Body=b"1", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=two)
    s3.put_object(Bucket=bucket, Key="dsse", Body=b"1", ServerSideEncryption="aws:kms:dsse",
                  SSEKMSKeyId=one)
    cases = [
        ([{"NOTSSE": {}}], ["none"]),
        ([{"SSES3": {}}], ["s3"]),
        ([{"SSEKMS": {}}], ["kms", "kms-bucket-key", "kms-two"]),
        ([{"SSEKMS": {"BucketKeyEnabled": True}}], ["kms-bucket-key"]),
        ([{"SSEKMS": {"BucketKeyEnabled": False}}], ["kms", "kms-two"]),
        ([{"SSEKMS": {"KmsKeyArn": one, "BucketKeyEnabled": False}}], ["kms"]),
        ([{"SSEKMS": {"KmsKeyArn": two}}], ["kms-two"]),
        ([{"DSSEKMS": {}}], ["dsse"]),
        ([{"NOTSSE": {}}, {"DSSEKMS": {}}], ["dsse", "none"]),
    ]
    found = _selected(cli, tmp_path, bucket,
                      [{"MatchAnyObjectEncryption": kinds} for kinds, _ in cases])
    assert found == [want for _, want in cases]


def test_what_moto_does_not_keep(cli, s3, bucket, s3_endpoint, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """SSE-C objects (a bare HEAD answers 400), the key of DSSE-KMS objects and the
    replication statuses (PENDING matches none of the filter's values: it is not NONE), as
    S3 answers them, through _AsS3Answers."""
    one, two = _kms_key(s3_endpoint), _kms_key(s3_endpoint)
    s3.put_object(Bucket=bucket, Key="none", Body=b"1")
    s3.put_object(Bucket=bucket, Key="ssec", Body=b"1", SSECustomerAlgorithm="AES256",
                  SSECustomerKey=os.urandom(32))
    for key, key_arn in (("dsse-one", one), ("dsse-two", two)):
        s3.put_object(Bucket=bucket, Key=key, Body=b"1", ServerSideEncryption="aws:kms:dsse",
                      SSEKMSKeyId=key_arn)
    states = {"done": "COMPLETED", "done-old": "COMPLETE", "pending": "PENDING",
              "failed": "FAILED", "replica": "REPLICA"}
    for key in states:
        s3.put_object(Bucket=bucket, Key=key, Body=b"1")
    heads = {f"/{bucket}/{k}": {"x-amz-replication-status": v} for k, v in states.items()}
    heads |= {f"/{bucket}/dsse-{n}": {"x-amz-server-side-encryption-aws-kms-key-id": arn}
              for n, arn in (("one", one), ("two", two))}
    with _AsS3Answers(s3_endpoint, heads, frozenset({f"/{bucket}/ssec"})) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        cases = [
            ({"MatchAnyObjectEncryption": [{"SSEC": {}}]}, ["ssec"]),
            ({"MatchAnyObjectEncryption": [{"DSSEKMS": {"KmsKeyArn": two}}]}, ["dsse-two"]),
            ({"MatchAnyObjectEncryption": [{"DSSEKMS": {}}]}, ["dsse-one", "dsse-two"]),
            ({"MatchAnyObjectEncryption": [{"NOTSSE": {}}], "ObjectReplicationStatuses":
              ["NONE"]}, ["none"]),
            ({"ObjectReplicationStatuses": ["COMPLETED"]}, ["done", "done-old"]),
            ({"ObjectReplicationStatuses": ["FAILED", "REPLICA"]}, ["failed", "replica"]),
            ({"ObjectReplicationStatuses": ["NONE"]},
             ["dsse-one", "dsse-two", "none", "ssec"]),
        ]
        found = _selected(cli, tmp_path, bucket, [flt for flt, _ in cases])
    assert found == [want for _, want in cases]
