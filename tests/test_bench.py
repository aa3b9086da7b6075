"""`batchops bench` (issue 12), through the real CLI: every workload against memory://,
a folder and the moto server, with counts checked against what the store holds (read
back independently: boto3, the filesystem), clean-up, injected latency and errors, the
Parquet output, the picture and `bench compare`."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import polars as pl
import pytest

from batchops.bench.run import is_stable
from faultproxy import FaultProxy

WORKLOADS = ("put", "get", "stat", "delete", "list", "copy", "mixed", "checksum")


def bench(cli, url: str, *flags: str, code: int = 0) -> dict:  # type: ignore[no-untyped-def]
    proc = cli("bench", url, *flags, "--json", "--no-progress", timeout=300)
    assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout) if code == 0 else {"stderr": proc.stderr}


def _s3_keys(s3, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_workload_on_memory(cli, workload: str) -> None:
    doc = bench(cli, "memory://", "--workload", workload, "--count", "40", "--objects", "40",
                "--concurrency", "4", "--size", "1KiB")
    ops = doc["operations"]
    assert sum(op["ops"] for op in ops.values()) == 40, ops
    assert all(not op["errors"] for op in ops.values()), ops
    expected = {"mixed": {"get", "stat", "put", "delete"}}.get(workload, {workload})
    assert set(ops) <= expected and ops
    for op in ops.values():
        lat = op["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert doc["cpu"]["ms_per_op"] > 0 and doc["bound"] in ("client", "store")


def test_put_counts_match_the_objects_in_s3_and_keep_keeps_them(cli, s3, bucket) -> None:
    doc = bench(cli, f"s3://{bucket}/b", "--workload", "put", "--count", "37",
                "--size", "3KiB", "--keep")
    keys = _s3_keys(s3, bucket)
    assert len(keys) == 37 and all(k.startswith("b/batchops-bench-") for k in keys)
    assert {s3.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in keys} == {3072}
    assert doc["operations"]["put"]["ops"] == 37
    assert doc["operations"]["put"]["bytes"] == 37 * 3072


@pytest.mark.parametrize("workload", ["get", "stat", "delete", "list", "copy", "mixed",
                                      "multipart", "tagging", "restore", "checksum"])
def test_workloads_on_s3_leave_the_prefix_clean(cli, s3, bucket, workload: str) -> None:
    s3.put_object(Bucket=bucket, Key="other/keep-me", Body=b"1")
    size = "5MiB" if workload == "multipart" else "2KiB"
    doc = bench(cli, f"s3://{bucket}", "--workload", workload, "--count", "12",
                "--objects", "12", "--concurrency", "3", "--size", size, "--prefix", "bp")
    ops = doc["operations"]
    assert sum(op["ops"] for op in ops.values()) == 12 and not any(
        op["errors"] for op in ops.values()), ops
    if workload == "get":
        assert ops["get"]["bytes"] == 12 * 2048 and "ttfb_ms" in ops["get"]
    if workload in ("get", "stat", "delete", "copy", "tagging", "restore", "checksum"):
        assert doc["prepare"]["objects"] == 12
    assert _s3_keys(s3, bucket) == ["other/keep-me"]  # the benchmark's prefix is gone


def test_tagging_runs_the_jobs_operation(cli, s3, bucket) -> None:
    bench(cli, f"s3://{bucket}", "--workload", "tagging", "--count", "5", "--objects", "5",
          "--keep")
    keys = _s3_keys(s3, bucket)
    assert len(keys) == 5
    tagged = [k for k in keys if s3.get_object_tagging(Bucket=bucket, Key=k)["TagSet"]]
    assert tagged and all(s3.get_object_tagging(Bucket=bucket, Key=k)["TagSet"] ==
                          [{"Key": "bench", "Value": "1"}] for k in tagged)


def test_a_folder_delete_and_clean_up(cli, tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "mine.txt").write_bytes(b"1")
    doc = bench(cli, f"file://{root}", "--workload", "delete", "--objects", "25")
    assert doc["operations"]["delete"]["ops"] == 25  # every prepared object, once
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["mine.txt"]
    doc = bench(cli, f"file://{root}", "--workload", "put", "--count", "9", "--keep")
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "mine.txt"]
    assert len(files) == 9 and doc["operations"]["put"]["ops"] == 9


def test_injected_latency_and_errors_show(cli, s3, bucket, s3_endpoint, monkeypatch) -> None:
    with FaultProxy(s3_endpoint, latency=0.05, methods=["HEAD"]) as slow:
        monkeypatch.setenv("AWS_ENDPOINT_URL", slow.url)
        doc = bench(cli, f"s3://{bucket}", "--workload", "stat", "--count", "20",
                    "--objects", "5", "--concurrency", "2")
    lat = doc["operations"]["stat"]["latency_ms"]
    assert lat["min"] >= 50 and lat["p50"] >= 50, lat
    # HEAD only: preparation (PUT) and clean-up (LIST, DELETE) are not faulted.
    with FaultProxy(s3_endpoint, internal_error=0.3, methods=["HEAD"], seed=3) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
        doc = bench(cli, f"s3://{bucket}", "--workload", "stat", "--count", "60",
                    "--objects", "5", "--concurrency", "2")
    stat = doc["operations"]["stat"]
    injected = faulty.counts["internal_error"]
    assert injected > 0 and sum(stat["errors"].values()) == injected, (stat, injected)
    assert stat["ops"] + injected == 60 and stat["retries"] == 0  # none dropped or retried
    with FaultProxy(s3_endpoint, internal_error=0.3, methods=["HEAD"], seed=4) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
        doc = bench(cli, f"s3://{bucket}", "--workload", "stat", "--count", "60",
                    "--objects", "5", "--concurrency", "2", "--retries", "5")
    stat = doc["operations"]["stat"]
    injected = faulty.counts["internal_error"]
    assert injected > 0 and stat["retries"] + sum(stat["errors"].values()) == injected
    assert stat["ops"] + sum(stat["errors"].values()) == 60 and stat["retries"] > 0


def test_autoterm_rule() -> None:
    assert is_stable([100, 104, 97, 101, 99], 0.075)
    assert not is_stable([100, 104, 97, 120, 99], 0.075)  # one second off by 20 %
    assert is_stable([100, 104, 97, 120, 99], 0.25)
    assert not is_stable([0, 0, 0], 0.075) and not is_stable([], 0.075)


def test_autoterm_stops_once_throughput_is_stable(cli) -> None:
    # The rule is the one above; here it must end a run early. A loose tolerance keeps
    # a busy CI machine's second-to-second noise from deciding the outcome.
    doc = bench(cli, "memory://", "--workload", "put", "--duration", "60s", "--autoterm",
                "--autoterm-segments", "3", "--autoterm-pct", "40", "--concurrency", "8")
    assert 3 <= doc["elapsed_s"] < 30, doc["elapsed_s"]
    assert doc["spec"]["autoterm_segments"] == 3, doc["spec"]
    # Without --autoterm the same run goes its whole duration.
    doc = bench(cli, "memory://", "--workload", "put", "--duration", "5s", "--concurrency", "8")
    assert doc["elapsed_s"] >= 5, doc["elapsed_s"]


@pytest.mark.parametrize("workload", ["get", "stat", "list", "copy", "mixed", "checksum"])
def test_workloads_on_a_folder_leave_it_clean(cli, tmp_path: Path, workload: str) -> None:
    root = tmp_path / "store"
    root.mkdir()
    doc = bench(cli, f"file://{root}", "--workload", workload, "--count", "20",
                "--objects", "10", "--concurrency", "2", "--size", "1KiB")
    ops = doc["operations"]
    assert sum(op["ops"] for op in ops.values()) == 20 and not any(
        op["errors"] for op in ops.values()), ops
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_out_plot_show_and_compare_a_known_slowdown(cli, s3, bucket, s3_endpoint, tmp_path,
                                                    monkeypatch) -> None:
    runs = []
    for n, latency in enumerate((0.01, 0.02)):  # the second run: every HEAD twice as slow
        with FaultProxy(s3_endpoint, latency=latency, methods=["HEAD"]) as proxy:
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
            out = tmp_path / f"run{n}.parquet"
            bench(cli, f"s3://{bucket}", "--workload", "stat", "--duration", "4s",
                  "--objects", "3", "--concurrency", "1", "--out", str(out),
                  "--plot", str(tmp_path / f"run{n}.png"))
            runs.append(out)
    frame = pl.read_parquet(runs[0])
    assert set(frame.columns) == {"kind", "op", "second", "width_s", "ops", "bytes", "errors",
                                  "p50_ms", "p90_ms", "p99_ms", "histogram", "run"}
    segments = frame.filter(pl.col("kind") == "segment")
    assert segments.height >= 3 and set(segments["op"]) == {"stat"}
    assert frame.filter(pl.col("kind") == "histogram")["op"].to_list() == ["stat"]
    png = (tmp_path / "run0.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1000, 1100)  # three panels stacked
    compared = cli("bench", "compare", str(runs[0]), str(runs[1]), "--json")
    assert compared.returncode == 0, compared.stderr
    stat = json.loads(compared.stdout)["stat"]
    assert stat["verdict"].startswith("slower by"), stat
    assert -65 < stat["throughput_change_pct"] < -35, stat
    assert stat["latency_p50_change_pct"] > 50, stat
    shown = cli("bench", "show", str(runs[1]))
    assert shown.returncode == 0 and "stat" in shown.stdout and "p99" in shown.stdout


def test_workers_are_merged_and_shown_one_by_one(cli, tmp_path: Path) -> None:
    out = tmp_path / "w.parquet"
    doc = bench(cli, "memory://", "--workload", "put", "--count", "60", "--workers", "2",
                "--out", str(out))
    assert doc["operations"]["put"]["ops"] == 60
    assert [w["ops"] for w in doc["workers"]] == [30, 30]
    shown = cli("bench", "show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[:2] for line in shown.stdout.splitlines()
            if line.strip().startswith(("0 ", "1 ")) and len(line.split()) == 5] == [
        ["0", "30"], ["1", "30"]]


def test_bad_bench_flags_are_one_sentence(cli, aws_env, tmp_path: Path) -> None:
    for flags, words in ((["memory://", "--workload", "juggle"], "--workload"),
                         (["memory://", "--size", "4 parsecs"], "--size"),
                         (["memory://", "--duration", "soon"], "--duration"),
                         (["memory://", "--mix", "get=x"], "--mix"),
                         (["memory://", "--workload", "tagging"], "S3"),
                         (["memory://", "--plot", "x.jpg"], "--plot"),
                         (["s3://no-such-bench-bucket"], "does not exist"),
                         (["compare", str(tmp_path / "nope.parquet")], "compare"),
                         (["show", str(tmp_path / "nope.parquet")], "nope.parquet")):
        proc = cli("bench", *flags)
        assert proc.returncode == 2, (flags, proc.stderr)
        lines = [x for x in proc.stderr.splitlines() if x.startswith("batchops:")]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, (
            flags, proc.stderr)


def test_warmup_mix_and_deletes_read_back(cli, s3, bucket, tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    doc = bench(cli, f"file://{root}", "--workload", "put", "--warmup", "1s", "--count", "30",
                "--keep", "--concurrency", "2")
    assert doc["operations"]["put"]["ops"] == 30  # the warm-up's puts are not counted
    assert len([p for p in root.rglob("*") if p.is_file()]) > 30  # but they happened
    doc = bench(cli, "memory://", "--workload", "mixed", "--mix", "get=3,stat=1",
                "--count", "400", "--objects", "20")
    ops = doc["operations"]
    assert set(ops) == {"get", "stat"} and ops["get"]["ops"] > ops["stat"]["ops"] > 0
    doc = bench(cli, f"s3://{bucket}", "--workload", "delete", "--objects", "20",
                "--count", "15", "--keep")
    assert doc["operations"]["delete"]["ops"] == 15
    assert len(_s3_keys(s3, bucket)) == 5  # read back: 20 made, 15 deleted
