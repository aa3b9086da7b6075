"""Faults on the wire: the real CLI against the S3-API server through a fault-injecting proxy.

Transient faults (503 SlowDown, 500, connection resets, truncated bodies) are retried
until the task succeeds; permanent errors (404, 403) are reported after one request;
a 503 that never stops fails the task after exactly --max-attempts requests.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ACCESS_KEY, REGION, SECRET_KEY
from faultproxy import FaultProxy
from helpers import job_id_of, read_report, report_manifest_path, write_manifest

N_OBJECTS = 300


@pytest.fixture
def proxy(aws_env: dict[str, str], s3_endpoint: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault proxy in front of the S3 server; batchops (not the `s3` fixture) uses it.

    It starts with no faults; a test sets `rates`, `deny`, `throttle` before running.
    """
    px = FaultProxy(s3_endpoint, seed=20240917).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", px.url)
    try:
        yield px
    finally:
        px.stop()


def _new_bucket(s3, suffix: str = "") -> str:  # type: ignore[no-untyped-def]
    name = f"f-{uuid.uuid4().hex[:12]}{suffix}"
    s3.create_bucket(Bucket=name)
    return name


def _run(cli, manifest: Path, *extra: str, workers: int = 2):  # type: ignore[no-untyped-def]
    proc = cli("run", "--manifest", str(manifest), "--operation", "copy", "--json",
               "--no-progress", "--workers", str(workers), *extra, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _rows(cli, proc) -> list[list[str]]:  # type: ignore[no-untyped-def]
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    return rows


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_transient_faults_are_retried_until_every_copy_is_exact(
        cli, s3, proxy: FaultProxy, tmp_path: Path) -> None:
    rng = random.Random(7)
    src, dst = _new_bucket(s3), _new_bucket(s3, "-dst")
    keys = [f"data/{i % 7}/obj-{i:04d}.bin" for i in range(N_OBJECTS)]
    sources: dict[str, str] = {}
    for k in keys:  # straight to the S3 server, not through the proxy
        body = rng.randbytes(rng.randint(1, 48 * 1024))
        s3.put_object(Bucket=src, Key=k, Body=body)
        sources[k] = _md5(body)
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in keys])

    # ~10% of all requests (GETs, server-side copies) fail, of four kinds.
    proxy.rates.update(slowdown=0.025, internal_error=0.025, reset=0.025, truncate=0.025)
    proxy.latency = 0.001
    started = time.monotonic()
    out = tmp_path / "out"
    runs = {"s3": _run(cli, m, "--target", f"s3://{dst}", "--chunk-size", "50",
                       "--max-attempts", "8"),
            "local": _run(cli, m, "--target", f"file://{out}", "--chunk-size", "50",
                          "--max-attempts", "8")}
    elapsed = time.monotonic() - started
    counts = proxy.snapshot()
    proxy.rates.update(slowdown=0.0, internal_error=0.0, reset=0.0, truncate=0.0)
    print(f"fault proxy: {elapsed:.1f}s, {counts}")

    for name, proc in runs.items():
        failed = [r for r in _rows(cli, proc) if r[3] != "succeeded"]
        assert failed == [], f"{name}: {counts}\n" + "\n".join(map(str, failed[:5]))
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        job = json.loads(proc.stdout)["Job"]
        assert job["Status"] == "Complete", name
        assert job["ProgressSummary"]["NumberOfTasksFailed"] == 0, name
        assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == N_OBJECTS, name
        rows = _rows(cli, proc)
        assert len(rows) == N_OBJECTS, name
        assert {tuple(r[3:7]) for r in rows} == {("succeeded", "200", "", "Successful")}, name

    copied = {k: _md5(s3.get_object(Bucket=dst, Key=k)["Body"].read()) for k in keys}
    assert copied == sources
    assert {k: _md5((out / k).read_bytes()) for k in keys} == sources

    # Faults really happened, of every kind, and were all absorbed by retries.
    for kind in ("slowdown", "internal_error", "reset", "truncate"):
        assert counts[kind] > 0, counts
    assert counts["upstream_error"] == 0, counts
    assert counts["requests"] >= 2 * N_OBJECTS + sum(
        counts[k] for k in ("slowdown", "internal_error", "reset")), counts
    assert elapsed < 60, (elapsed, counts)


@pytest.mark.parametrize("target", ["s3", "local"])
def test_permanent_errors_are_reported_after_one_request(
        cli, s3, proxy: FaultProxy, tmp_path: Path, target: str) -> None:
    src = _new_bucket(s3)
    dst = _new_bucket(s3, "-dst") if target == "s3" else ""
    out = tmp_path / "out"
    present = [f"here-{i}" for i in range(5)]
    missing = [f"gone-{i}" for i in range(4)]
    for k in present + ["secret"]:
        s3.put_object(Bucket=src, Key=k, Body=k.encode())
    proxy.deny.add(f"/{src}/secret")
    keys = present + missing + ["secret"]
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in keys])

    proc = _run(cli, m, "--target", f"s3://{dst}" if dst else f"file://{out}",
                "--chunk-size", "4", "--max-attempts", "5")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)  # completed, some tasks failed
    rows = {r[1]: r for r in _rows(cli, proc)}
    assert sorted(rows) == sorted(keys)
    for k in missing:
        assert rows[k][2:6] == ["", "failed", "404", "NoSuchKey"], rows[k]
        assert proxy.requests_for(f"/{src}/{k}") == 1, k  # not retried
    assert rows["secret"][2:6] == ["", "failed", "403", "AccessDenied"], rows["secret"]
    assert proxy.requests_for(f"/{src}/secret") == 1
    assert proxy.snapshot()["denied"] == 1
    for k in present:
        assert rows[k][3:5] == ["succeeded", "200"], rows[k]
        got = s3.get_object(Bucket=dst, Key=k)["Body"].read() if dst else (out / k).read_bytes()
        assert got == k.encode()
    job = json.loads(proc.stdout)["Job"]
    assert job["ProgressSummary"]["NumberOfTasksFailed"] == len(missing) + 1


@pytest.mark.parametrize("target", ["s3", "local"])
def test_slowdown_beyond_max_attempts_fails_the_task(
        cli, s3, proxy: FaultProxy, tmp_path: Path, target: str) -> None:
    src = _new_bucket(s3)
    dst = _new_bucket(s3, "-dst") if target == "s3" else ""
    for k in ("hot", "cool"):
        s3.put_object(Bucket=src, Key=k, Body=k.encode())
    proxy.throttle.add(f"/{src}/hot")
    out = tmp_path / "out"
    m = write_manifest(tmp_path / "m.csv", [(src, "hot"), (src, "cool")])

    proc = _run(cli, m, "--target", f"s3://{dst}" if dst else f"file://{out}",
                "--max-attempts", "3")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    rows = {r[1]: r for r in _rows(cli, proc)}
    assert rows["hot"][3:7] == ["failed", "503", "SlowDown",
                                "Please reduce your request rate."], rows["hot"]
    assert rows["cool"][3:5] == ["succeeded", "200"]
    assert proxy.requests_for(f"/{src}/hot") == 3  # exactly --max-attempts requests
    assert proxy.snapshot()["throttled"] == 3
    if dst:
        assert s3.get_object(Bucket=dst, Key="cool")["Body"].read() == b"cool"
        assert s3.list_objects_v2(Bucket=dst, Prefix="hot")["KeyCount"] == 0
    else:
        assert (out / "cool").read_bytes() == b"cool" and not (out / "hot").exists()


@pytest.mark.parametrize("target", ["s3", "local"])
@pytest.mark.parametrize("kind", ["slowdown", "internal_error", "reset", "truncate"])
def test_each_transient_fault_is_retried(cli, s3, proxy: FaultProxy, tmp_path: Path,
                                         kind: str, target: str) -> None:
    """Deterministic: the first 5 requests for one object fail with `kind`; the task
    must still succeed (S3 → S3 is a server-side copy, S3 → local a GET)."""
    src = _new_bucket(s3)
    for k in ("flaky", "steady"):
        s3.put_object(Bucket=src, Key=k, Body=k.encode() * 100)
    proxy.script[f"/{src}/flaky"] = [kind] * 5
    dst = _new_bucket(s3, "-dst") if target == "s3" else ""
    out = tmp_path / "out"
    m = write_manifest(tmp_path / "m.csv", [(src, "flaky"), (src, "steady")])

    proc = _run(cli, m, "--target", f"s3://{dst}" if dst else f"file://{out}",
                "--max-attempts", "8", workers=1)
    rows = {r[1]: r for r in _rows(cli, proc)}
    assert rows["flaky"][3:7] == ["succeeded", "200", "", "Successful"], str(rows["flaky"])
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proxy.script[f"/{src}/flaky"] == [] and proxy.snapshot()[kind] == 5
    assert proxy.requests_for(f"/{src}/flaky") >= 6
    for k in ("flaky", "steady"):
        got = (s3.get_object(Bucket=dst, Key=k)["Body"].read() if dst
               else (out / k).read_bytes())
        assert got == k.encode() * 100


def _signed(proxy: FaultProxy, method: str, path: str) -> dict[str, str]:
    """SigV4 headers for a raw request (moto refuses anonymous reads)."""
    req = AWSRequest(method=method, url=proxy.url + path,
                     headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    return {k: v for k, v in req.headers.items() if k.lower() != "host"}


def test_proxy_keeps_client_connections_alive_and_forwards_chunked_bodies(
        s3, proxy: FaultProxy) -> None:
    """The proxy itself: several requests on one client connection, a chunked body."""
    b = _new_bucket(s3)
    path = f"/{b}/chunked"
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request("PUT", path, body=iter([b"hello ", b"chunked ", b"world"]),
                     headers=_signed(proxy, "PUT", path), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
        conn.request("GET", path, headers=_signed(proxy, "GET", path))
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"hello chunked world")
        proxy.deny.add(path)
        conn.request("GET", path, headers=_signed(proxy, "GET", path))
        resp = conn.getresponse()
        assert resp.status == 403 and b"<Code>AccessDenied</Code>" in resp.read()
    finally:
        conn.close()
    assert s3.get_object(Bucket=b, Key="chunked")["Body"].read() == b"hello chunked world"
    counts = proxy.snapshot()
    assert (counts["connections"], counts["requests"], counts["forwarded"]) == (1, 3, 2)
    assert proxy.requests_for(path, "GET") == 2


def test_a_slowdown_slows_every_worker_of_the_job(cli, s3, proxy: FaultProxy,
                                                 tmp_path: Path) -> None:
    """AIMD is shared: only the first chunk's objects answer SlowDown, yet the worker on
    the second chunk halves its concurrency too (the store's limit is the job's)."""
    src = _new_bucket(s3)
    keys = [f"a{i:04d}" for i in range(400)] + [f"b{i:04d}" for i in range(400)]
    for k in keys:
        s3.put_object(Bucket=src, Key=k, Body=b"x")
    for k in keys[:30]:  # early in chunk 0: one SlowDown each, then they succeed
        proxy.script[f"/{src}/{k}"] = ["slowdown"]
    m = write_manifest(tmp_path / "m.csv", [(src, k) for k in keys])
    proc = _run(cli, m, "--target", f"file://{tmp_path / 'out'}", "--chunk-size", "400",
                "--concurrency", "64", workers=2)
    assert proc.returncode == 0, proc.stderr
    log = [json.loads(line) for line in
           (cli.home / "jobs" / job_id_of(proc.stdout) / "log").read_text().splitlines()]
    throttled = {e["chunk"] for e in log if e["event"] == "throttled"}
    slowed = {e["chunk"]: e["concurrency"] for e in log if e["event"] == "slowed"}
    assert throttled == {0}, log
    assert any(e["event"] == "slowdown-shared" for e in log), log
    assert 1 in slowed and slowed[1] < 64, log  # chunk 1 never saw a SlowDown itself
