"""Reliability and security: kill -9 many times, unwritable stores, secrets, permissions,
rate limits, throttling, hostile keys, fuzzed manifests, unreachable endpoints."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchops.manifest.reader import iter_chunks, prepare
from batchops.model.errors import ManifestError
from conftest import SECRET_KEY
from faultproxy import FaultProxy
from helpers import (
    decoded_keys,
    error_lines,
    job_id_of,
    read_report,
    report_manifest_path,
    write_manifest,
)
from test_resume import _done_chunks, _wait_for_job


def _local_source(root: Path, n: int) -> list[str]:
    keys = [f"d{i % 50:02d}/obj {i:05d}.bin" for i in range(n)]
    for k in keys:
        p = root / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(k.encode() * 4)
    return keys


def test_kill_9_twenty_times_then_resume(cli, tmp_path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    keys = _local_source(src, 20_000)
    m = write_manifest(tmp_path / "m.csv", [("src", k) for k in keys])
    base = ["--bucket-map", f"src=file://{src}"]
    rng = random.Random(20)
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{out}", "--chunk-size", "250", "--workers", "2",
                     "--max-ops-per-second", "1000", "--no-progress", *base,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    job_id = _wait_for_job(cli.home)
    for kill in range(20):
        time.sleep(rng.uniform(0.4, 1.2))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if kill == 19:
            break
        proc = cli.popen("resume", job_id, "--no-progress", stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    assert _done_chunks(cli.home, job_id) < 80, "the job finished before the 20th kill"
    final = cli("resume", job_id, "--json", "--no-progress")
    assert final.returncode == 0, final.stderr
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert Counter(decoded_keys(rows)) == Counter(keys)
    for k in keys:
        assert (out / k).read_bytes() == k.encode() * 4


def test_job_store_becoming_unwritable_stops_cleanly_and_resumes(cli, tmp_path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    keys = _local_source(src, 3000)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = cli.popen("run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{out}", "--chunk-size", "100", "--workers", "1",
                     "--max-ops-per-second", "1500", "--no-progress",
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job_id = _wait_for_job(cli.home)
    while _done_chunks(cli.home, job_id) < 2:
        time.sleep(0.01)
    results = cli.home / "jobs" / job_id / "results"
    results.rename(results.with_name("results.moved"))
    results.write_text("not a folder")  # writes under results/ now fail (ENOTDIR)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert "cannot write" in stderr and "Traceback" not in stderr
    job = json.loads(cli("describe-job", "--job-id", job_id, check=True).stdout)["Job"]
    assert job["Status"] == "Paused"
    results.unlink()
    results.with_name("results.moved").rename(results)  # the fault is fixed
    resumed = cli("resume", job_id, "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    _, rows = read_report(report_manifest_path(cli.home, job_id))
    assert Counter(decoded_keys(rows)) == Counter(keys)


def test_unwritable_report_destination(cli, tmp_path) -> None:
    src = tmp_path / "src"
    keys = _local_source(src, 20)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the report folder should be")
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}", "--report", f"file://{blocker}", "--no-progress")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert str(blocker) in proc.stderr
    blocker.unlink()
    job_id = proc.stderr.split("job ", 1)[1].split()[0]
    resumed = cli("resume", job_id, "--json", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((blocker / f"job-{job_id}" / "manifest.json").read_text())
    assert sum(1 for p in manifest["Results"]) == 1


def test_no_secret_reaches_job_files_logs_or_reports(cli, s3, bucket, tmp_path, monkeypatch):
    token = "IQoJb3JpZ2luX2VjEBatchopsTestSessionToken0123456789"
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    for k in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    m = write_manifest(tmp_path / "m.csv", [(bucket, "a"), (bucket, "b"), (bucket, "missing")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"s3://{bucket}/copy", "--report", f"file://{tmp_path / 'reports'}",
               "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    secrets = [SECRET_KEY, token, "X-Amz-Signature", "X-Amz-Credential", "Signature="]
    for root in (cli.home, tmp_path / "reports"):
        for path in root.rglob("*"):
            if path.is_file():
                text = path.read_bytes().decode(errors="replace")
                for secret in secrets:
                    assert secret not in text, f"{secret[:12]}... found in {path}"
    assert not any(s in proc.stdout + proc.stderr for s in secrets)


def test_job_store_is_readable_by_its_owner_only(cli, tmp_path) -> None:
    src = tmp_path / "src"
    keys = _local_source(src, 5)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}", "--json", "--no-progress", "--chunk-size", "2")
    job_dir = cli.home / "jobs" / job_id_of(proc.stdout)
    for path in [job_dir, *job_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_rate_limit_is_applied(cli, tmp_path) -> None:
    src = tmp_path / "src"
    keys = _local_source(src, 90)
    m = write_manifest(tmp_path / "m.csv", [(f"file://{src}", k) for k in keys])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}", "--max-ops-per-second", "30", "--workers", "1",
               "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["Job"]
    # 90 tasks at 30/s cannot finish in under 2 s (a lower bound: a slow machine only
    # makes it longer). The achieved rate is measured in bench/, not here.
    assert job["ProgressSummary"]["Timers"]["ElapsedTimeInActiveSeconds"] >= 2


def test_slowdown_lowers_concurrency_and_is_counted(cli, s3, bucket, tmp_path, s3_endpoint,
                                                    monkeypatch) -> None:
    keys = [f"k{i}" for i in range(120)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    with FaultProxy(s3_endpoint, seed=7, slowdown=0.3, methods={"GET"}).start() as px:
        monkeypatch.setenv("AWS_ENDPOINT_URL", px.url)
        proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
                   f"file://{tmp_path / 'out'}", "--workers", "1", "--max-attempts", "10",
                   "--json", "--no-progress")
        injected = px.snapshot().get("slowdown", 0)
    assert proc.returncode == 0, proc.stderr
    assert injected > 0
    job_id = job_id_of(proc.stdout)
    extended = json.loads(cli("describe-job", "--job-id", job_id, "--extended",
                              check=True).stdout)
    assert extended["Batchops"]["Throttled"] >= injected - 3  # preflight LIST retries too
    log = (cli.home / "jobs" / job_id / "log").read_text()
    assert '"event":"throttled"' in log


def test_keys_cannot_escape_a_file_target_root(cli, tmp_path) -> None:
    src, out = tmp_path / "src", tmp_path / "deep" / "out"
    src.mkdir()
    (src / "ok").write_bytes(b"fine")
    hostile = ["../escaped", "a/../../escaped2", "../../../../tmp/escaped3", "nul%00byte"]
    lines = [f"file://{src},ok"] + [f"file://{src},{k}" for k in hostile]
    m = tmp_path / "m.csv"
    m.write_text("\n".join(lines) + "\n")
    json_m = tmp_path / "m.jsonl"
    json_m.write_text("".join(json.dumps({"url": "s3://x/ok", "destination": {
        "bucket": f"file://{out}", "key": k}}) + "\n" for k in ["../evil", "/etc/evil"]))
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{out}", "--json", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    failed = {r[1]: r for r in rows if r[3] == "failed"}
    assert len(failed) == 4 and {r[5] for r in failed.values()} <= {"InvalidObjectKey",
                                                                    "NoSuchKey"}
    proc = cli("run", "--manifest", str(json_m), "--operation", "copy", "--target",
               f"file://{out}", "--bucket-map", f"x=file://{src}", "--json", "--no-progress")
    _, rows = read_report(report_manifest_path(cli.home, job_id_of(proc.stdout)))
    assert [r[5] for r in rows if r[3] == "failed"] == ["InvalidObjectKey"]
    assert (out / "etc" / "evil").read_bytes() == b"fine"  # kept inside the root
    outside = [p for p in tmp_path.rglob("*escaped*")] + [p for p in tmp_path.rglob("evil")
                                                          if out not in p.parents]
    assert outside == [] and not Path("/tmp/escaped3").exists()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(["b,k", "b,k%2", "b,%zz", "\ufeffb,k", "b,k\r", "", "b",
                              "b,k,v,x", '"b","k,1"', "b,ü%C3%BC", "b,%FF", "b," + "x" * 1100,
                              "b,k,v", ",k", '"unterminated']),
             max_size=12).map(lambda rows: "\n".join(rows).encode()),
))
def test_fuzzed_manifests_prepare_or_fail_with_a_line(tmp_path_factory, data: bytes) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "m.csv"
    path.write_bytes(data)
    try:
        info = prepare(str(path), str(path), str(folder))
    except ManifestError as exc:
        assert "m.csv" in str(exc) and "\n" not in str(exc)
        return
    rows = sum(len(c) for c in iter_chunks(info, 3))
    assert rows == info.total_tasks


def test_one_bad_row_after_a_million_is_caught_before_any_task(cli, tmp_path) -> None:
    m = tmp_path / "big.csv"
    with m.open("w") as f:
        for i in range(1_000_000):
            f.write(f"src,key-{i:07d}\n")
        f.write("src,bad%zzkey\n")
    out = tmp_path / "out"
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target", f"file://{out}",
               "--bucket-map", f"src=file://{tmp_path}")
    assert proc.returncode == 2
    assert "line 1000001" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(("env", "words"), [
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "cannot reach"),
    ({"AWS_ACCESS_KEY_ID": None}, "no AWS credentials"),
])
def test_unreachable_endpoint_or_missing_credentials(cli, tmp_path, aws_env, monkeypatch,
                                                     env, words) -> None:
    for k, v in env.items():
        if v is None:
            monkeypatch.delenv(k)
        else:
            monkeypatch.setenv(k, v)
    m = write_manifest(tmp_path / "m.csv", [("some-bucket", "k")])
    proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
               f"file://{tmp_path / 'out'}")
    assert proc.returncode == 2 and words in proc.stderr
    assert len(error_lines(proc.stderr)) == 1 and "Traceback" not in proc.stderr
