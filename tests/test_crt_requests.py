"""Tagging through awscrt's signer and HTTP client (storage/s3api.py `CrtRequests`):
the real CLI against the S3-API server, directly and through the fault proxy.

Errors are classified as every other client's: a missing key and a refusal are report
rows after one request, a refused signature stops the job in one sentence, a SlowDown
is retried (honouring Retry-After) up to --max-attempts; requests reuse connections.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from conftest import KeyedStore
from faultproxy import FaultProxy
from helpers import job_id_of, read_report, report_manifest_path, write_manifest
from test_faults import proxy  # noqa: F401 - the fixture: batchops talks through it

TAGS = [{"Key": "project", "Value": "x"}, {"Key": "owner", "Value": "y z+-=._:/@"}]


def _tag(cli, tmp_path: Path, rows, *extra: str, expect: int | None = None):  # type: ignore[no-untyped-def]
    m = write_manifest(tmp_path / f"m{uuid.uuid4().hex[:6]}.csv", rows)
    proc = cli("run", "--manifest", str(m), "--operation", "put-tagging", "--tag", "project=x",
               "--tag", "owner=y z+-=._:/@", "--json", "--no-progress", "--workers", "1", *extra,
               timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    if expect is not None:
        assert proc.returncode == expect, (proc.stdout, proc.stderr)
    if proc.returncode in (0, 1):
        _, report = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
        return proc, {r[1]: r for r in report}
    return proc, {}


def test_tagging_errors_are_rows_after_one_request(cli, s3, bucket, proxy: FaultProxy,  # noqa: F811
                                                   tmp_path: Path) -> None:
    for k in ("here", "secret"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    proxy.deny.add(f"/{bucket}/secret")
    _, rows = _tag(cli, tmp_path, [(bucket, k) for k in ("here", "gone", "secret")],
                   "--max-attempts", "4", expect=1)
    assert rows["here"][3:5] == ["succeeded", "200"], rows["here"]
    assert rows["gone"][3:6] == ["failed", "404", "NoSuchKey"], rows["gone"]
    assert rows["secret"][3:6] == ["failed", "403", "AccessDenied"], rows["secret"]
    assert proxy.requests_for(f"/{bucket}/gone") == 1  # not retried
    assert proxy.requests_for(f"/{bucket}/secret") == 1
    got = s3.get_object_tagging(Bucket=bucket, Key="here")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in got) == sorted(
        (t["Key"], t["Value"]) for t in TAGS)


def test_tagging_slowdown_is_retried_then_fails_after_max_attempts(
        cli, s3, bucket, proxy: FaultProxy, tmp_path: Path) -> None:  # noqa: F811
    for k in ("hot", "flaky"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    proxy.throttle.add(f"/{bucket}/hot")
    proxy.script[f"/{bucket}/flaky"] = ["slowdown", "internal_error", "reset"]
    _, rows = _tag(cli, tmp_path, [(bucket, "hot"), (bucket, "flaky")], "--max-attempts", "4",
                   expect=1)
    assert rows["hot"][3:7] == ["failed", "503", "SlowDown",
                                "Please reduce your request rate."], rows["hot"]
    assert proxy.requests_for(f"/{bucket}/hot") == 4  # exactly --max-attempts
    assert rows["flaky"][3:5] == ["succeeded", "200"], rows["flaky"]
    assert proxy.script[f"/{bucket}/flaky"] == []
    assert s3.get_object_tagging(Bucket=bucket, Key="flaky")["TagSet"]


def test_tagging_reuses_connections(cli, s3, bucket, proxy: FaultProxy,  # noqa: F811
                                    tmp_path: Path) -> None:
    keys = [f"k{i:03d}" for i in range(60)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    before = proxy.snapshot()
    _, rows = _tag(cli, tmp_path, [(bucket, k) for k in keys], "--concurrency", "4",
                   expect=0)
    after = proxy.snapshot()
    assert len(rows) == len(keys)
    requests = after["requests"] - before["requests"]
    assert requests >= len(keys)
    assert after["connections"] - before["connections"] <= 8, (before, after)


def test_delete_tagging_of_a_version(cli, s3, bucket, proxy: FaultProxy,  # noqa: F811
                                     tmp_path: Path) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="a=1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"2", Tagging="b=2")
    m = write_manifest(tmp_path / "d.csv", [(bucket, "k", v1)])
    proc = cli("run", "--manifest", str(m), "--operation", "delete-tagging", "--json",
               "--no-progress", "--workers", "1", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)["TagSet"] == []
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "b", "Value": "2"}]


def test_a_refused_signature_stops_the_job_in_one_sentence(
        cli, keyed_stores: tuple[KeyedStore, KeyedStore], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = keyed_stores[0]
    client = store.client()
    name = f"c-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="k", Body=b"x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.access_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.secret_key)
    proc, _ = _tag(cli, tmp_path, [(name, "k")], expect=0)  # the right keys: signed by CRT
    assert client.get_object_tagging(Bucket=name, Key="k")["TagSet"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    proc, _ = _tag(cli, tmp_path, [(name, "k")])
    assert proc.returncode in (2, 3), (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if "SignatureDoesNotMatch" in line]
    assert len(lines) == 1 and "renew" in lines[0], proc.stderr
    assert "not-the-secret" not in proc.stderr + proc.stdout


def test_an_unreachable_endpoint_is_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from batchops.model.spec import AwsSettings
    from batchops.storage.aws import AwsContext
    from batchops.storage.outcomes import classify
    from batchops.storage.s3api import CrtRequests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")

    async def send() -> BaseException:
        requests = CrtRequests(AwsContext(AwsSettings()), 4)
        try:
            await requests.send("DELETE", "bkt", "k", "tagging")
        except Exception as exc:  # noqa: BLE001 - the error under test
            return exc
        finally:
            requests.close()
        raise AssertionError("the request succeeded")

    outcome = classify(asyncio.run(send()))
    assert outcome.retryable and outcome.fatal and outcome.error_code == "EndpointUnreachable"
