"""Multipart server-side copies (UploadPartCopy): parts copied concurrently, each retried
on its own. The real CLI against the S3-API server through the fault proxy; small
objects stand in for large ones (BatchopsMultipartThreshold, BatchopsMultipartPartSize).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from faultproxy import FaultProxy
from helpers import job_id_of, read_report, report_manifest_path, write_manifest
from test_faults import proxy  # noqa: F401 - the fixture: batchops talks through it

MIB = 1024 * 1024


def _copy(cli, tmp_path: Path, bucket: str, key: str, dst: str, **options: int):  # type: ignore[no-untyped-def]
    spec = {"S3PutObjectCopy": {"TargetResource": f"arn:aws:s3:::{dst}",
                                "BatchopsMultipartThreshold": 5 * MIB,
                                "BatchopsMultipartPartSize": 5 * MIB, **options}}
    m = write_manifest(tmp_path / f"m{uuid.uuid4().hex[:6]}.csv", [(bucket, key)])
    proc = cli("run", "--manifest", str(m), "--operation", json.dumps(spec), "--json",
               "--no-progress", "--workers", "1", "--max-attempts", "1", timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    return proc, rows


def _parts(px: FaultProxy) -> list[tuple[int, str]]:
    """(part number, copy-source range) of every UploadPartCopy the proxy saw."""
    out = []
    for method, target, copy_range in px.log:
        query = parse_qs(urlsplit(target).query)
        if method == "PUT" and "partNumber" in query and copy_range:
            out.append((int(query["partNumber"][0]), copy_range))
    return out


def test_a_multipart_copy_is_byte_identical(cli, s3, bucket, proxy: FaultProxy,  # noqa: F811
                                            tmp_path: Path) -> None:
    data = os.urandom(23 * MIB + 12345)
    s3.put_object(Bucket=bucket, Key="big", Body=data, ContentType="x/big", Metadata={"a": "b"})
    dst = f"d-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=dst)
    proc, rows = _copy(cli, tmp_path, bucket, "big", dst)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    got = s3.get_object(Bucket=dst, Key="big")
    assert got["Body"].read() == data
    assert got["ETag"].strip('"').endswith("-5")  # 4 parts of 5 MiB and the rest
    assert got["ContentType"] == "x/big" and got["Metadata"] == {"a": "b"}
    parts = _parts(proxy)
    assert sorted(n for n, _ in parts) == [1, 2, 3, 4, 5]  # each part once
    assert dict(parts)[5] == f"bytes={20 * MIB}-{len(data) - 1}"


def test_a_failed_part_is_retried_alone(cli, s3, bucket, proxy: FaultProxy,  # noqa: F811
                                        tmp_path: Path) -> None:
    data = os.urandom(20 * MIB)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    dst = f"d-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=dst)
    failed: list[str] = []

    def fail_part_three_once(method: str, target: str, headers: list) -> str | None:  # type: ignore[type-arg]
        if method == "PUT" and "partNumber=3" in target and not failed:
            failed.append(target)
            return "internal_error"
        return None

    proxy.fault_when = fail_part_three_once
    # --max-attempts 1: a retry of the whole object would fail the task instead.
    proc, rows = _copy(cli, tmp_path, bucket, "big", dst)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert rows[0][3] == "succeeded", rows
    assert failed, "the fault was not injected"
    assert s3.get_object(Bucket=dst, Key="big")["Body"].read() == data
    sent = sorted(n for n, _ in _parts(proxy))
    assert sent == [1, 2, 3, 3, 4], sent  # part 3 twice, every other part once
    creates = [t for m, t, _ in proxy.log if m == "POST" and "uploads" in t]
    assert len(creates) == 1  # one multipart upload: the object did not start over


def test_a_part_that_keeps_failing_fails_the_object_and_aborts(
        cli, s3, bucket, proxy: FaultProxy, tmp_path: Path) -> None:  # noqa: F811
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(16 * MIB))
    dst = f"d-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=dst)
    proxy.fault_when = lambda method, target, headers: (
        "slowdown" if method == "PUT" and "partNumber=2" in target else None)
    proc, rows = _copy(cli, tmp_path, bucket, "big", dst, BatchopsMultipartConcurrency=2)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert rows[0][3:6] == ["failed", "503", "SlowDown"], rows
    from batchops.operations.copy import PART_ATTEMPTS

    assert sum(1 for n, _ in _parts(proxy) if n == 2) == PART_ATTEMPTS
    assert s3.list_objects_v2(Bucket=dst).get("KeyCount", 0) == 0
    assert not s3.list_multipart_uploads(Bucket=dst).get("Uploads")  # aborted
