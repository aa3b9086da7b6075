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


class _TimedProxy(FaultProxy):
    """A FaultProxy (no faults) that records when each request arrived."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.arrivals: list[tuple[float, str, str]] = []  # (monotonic time, method, path)

    def _scripted(self, req):  # type: ignore[no-untyped-def]
        self.arrivals.append((time.monotonic(), req.method, req.path))
        return super()._scripted(req)


def test_rate_limit_is_applied(cli, s3, bucket, tmp_path, s3_endpoint, monkeypatch) -> None:
    limit, n = 50, 150
    keys = [f"k{i:03d}" for i in range(n)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    m = write_manifest(tmp_path / "m.csv", [(bucket, k) for k in keys])
    with _TimedProxy(s3_endpoint).start() as px:
        monkeypatch.setenv("AWS_ENDPOINT_URL", px.url)
        proc = cli("run", "--manifest", str(m), "--operation", "copy", "--target",
                   f"file://{tmp_path / 'out'}", "--max-ops-per-second", str(limit),
                   "--workers", "1", "--concurrency", "64", "--json", "--no-progress")
        gets = sorted(t for t, method, path in px.arrivals
                      if method == "GET" and path.startswith(f"/{bucket}/k"))
    assert proc.returncode == 0, proc.stderr
    assert len(gets) == n  # one GET per task, no retries
    # The limiter (a token bucket: `burst` = limit/10 tokens at the start, then one
    # token every 1/limit s) lets request i leave no earlier than (i - burst)/limit s
    # after the first. So, from the server's clock, the last of the n GETs arrives at
    # least (n - 1 - burst)/limit s after the first, whatever the machine's speed (a
    # stall can only bunch requests that were due, never send one early). The 0.8
    # allows the first request to arrive up to ~0.5 s late. Without the limiter,
    # 64 concurrent GETs put the 150 through in a small fraction of that.
    burst = limit / 10
    span = gets[-1] - gets[0]
    assert span >= 0.8 * (n - 1 - burst) / limit, (span, (n - 1) / span)


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
                   "--concurrency", "64", "--chunk-size", "30", "--json", "--no-progress")
        injected = px.snapshot().get("slowdown", 0)
    assert proc.returncode == 0, proc.stderr
    assert injected > 0
    job_id = job_id_of(proc.stdout)
    extended = json.loads(cli("describe-job", "--job-id", job_id, "--extended",
                              check=True).stdout)
    assert extended["Batchops"]["Throttled"] >= injected - 3  # preflight LIST retries too
    events = [json.loads(line) for line in
              (cli.home / "jobs" / job_id / "log").read_text().splitlines()]
    throttled = [e for e in events if e["event"] == "throttled"]
    assert throttled and sum(e["times"] for e in throttled) >= injected - 3
    # Concurrency dropped: a SlowDown halves the allowed concurrency (64 -> 32 at the
    # first) and it grows back by 1/limit per success, so the 120 tasks add at most
    # 120/32 < 4 to it. Every chunk that was throttled ends at 35 or below, not 64.
    assert all(e["concurrency"] <= 35 for e in throttled), throttled


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


# Manifest lines and what is wrong with each (None: a good row), for the fuzz test's
# oracle: the preparing pass must name the first bad line.
FUZZ_LINES = {
    "b,k": None, "\ufeffb,k": None, "b,k\r": None, '"b","k,1"': None, "b,ü%C3%BC": None,
    "b,k,v": None, "b,k%2": "percent-encoding", "b,%zz": "percent-encoding",
    "": "blank line", "b": "missing key", ",k": "missing bucket", "b,k,v,x": "4 fields",
    "b,%FF": "does not decode to UTF-8", "b," + "x" * 1100: "longer than 1024 bytes",
}


def _expected_problem(lines: list[str]) -> tuple[int, str] | None:
    """(line number, words of the problem) of the first bad line; None if all are good."""
    for number, line in enumerate(lines, 1):
        if line == "" and number == len(lines):
            break  # the text ends with a line end: no line follows it
        if number > 1 and line.startswith("\ufeff"):
            continue  # not at the start of the file: a character of the bucket name
        if FUZZ_LINES[line]:
            return number, str(FUZZ_LINES[line])
    return None


def _prepare_fuzzed(folder: Path, data: bytes):  # type: ignore[no-untyped-def]
    path = folder / "m.csv"
    path.write_bytes(data)
    return prepare(str(path), str(path), str(folder))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(FUZZ_LINES)), max_size=12))
def test_fuzzed_manifests_name_the_first_bad_line(tmp_path_factory, lines: list[str]) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    expected = _expected_problem(lines)
    try:
        info = _prepare_fuzzed(folder, "\n".join(lines).encode())
    except ManifestError as exc:
        assert expected is not None, f"refused a good manifest: {exc}"
        line, words = expected
        assert (exc.line, str(exc).count("\n")) == (line, 0), (str(exc), expected)
        assert f"m.csv, line {line}: " in str(exc) and words in exc.problem, (str(exc), expected)
        return
    assert expected is None, f"accepted a manifest whose line {expected[0]} is bad"
    assert info.total_tasks == len(lines) - (lines[-1:] == [""])
    assert sum(len(c) for c in iter_chunks(info, 3)) == info.total_tasks


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([*FUZZ_LINES, '"unterminated']),
             max_size=12).map(lambda rows: "\n".join(rows).encode()),
))
def test_fuzzed_bytes_prepare_or_fail_naming_a_line(tmp_path_factory, data: bytes) -> None:
    try:
        info = _prepare_fuzzed(tmp_path_factory.mktemp("fuzz"), data)
    except ManifestError as exc:
        # Whatever the bytes, a refusal names the file and a line that exists (or, for a
        # JSON document of the wrong shape, says what the whole document lacks).
        if exc.line is None and '"entries"' in exc.problem:
            return
        lines = data.count(b"\n") + 1
        assert exc.line is not None and 1 <= exc.line <= lines, (str(exc), data)
        assert f"m.csv, line {exc.line}: " in str(exc) and "\n" not in str(exc)
        return
    assert sum(len(c) for c in iter_chunks(info, 3)) == info.total_tasks


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
