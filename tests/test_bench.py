"""`batchops bench` (issue 12), through the real CLI: every workload against memory://,
a folder and the moto server, with counts checked against what the store holds (read
back independently: boto3, the filesystem), clean-up, injected latency and errors, the
Parquet output, the picture and `bench compare`."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import polars as pl
import pytest

from batchops.bench import report
from batchops.bench.run import Worker, is_stable
from batchops.bench.spec import BenchSpec
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


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


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
    # A HEAD's error response has no body: its status is the only code there is.
    assert injected > 0 and stat["errors"] == {"HTTP500": injected}, (stat, injected)
    assert stat["ops"] + injected == 60 and stat["retries"] == 0  # none dropped or retried
    with FaultProxy(s3_endpoint, internal_error=0.3, methods=["HEAD"], seed=4) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
        doc = bench(cli, f"s3://{bucket}", "--workload", "stat", "--count", "60",
                    "--objects", "5", "--concurrency", "2", "--retries", "5")
    stat = doc["operations"]["stat"]
    injected = faulty.counts["internal_error"]
    assert injected > 0 and stat["retries"] + sum(stat["errors"].values()) == injected
    assert set(stat["errors"]) <= {"HTTP500"}, stat
    assert stat["ops"] + sum(stat["errors"].values()) == 60 and stat["retries"] > 0


def test_get_errors_are_counted_by_their_code(cli, s3, bucket, s3_endpoint,
                                              monkeypatch) -> None:
    # GET errors carry S3's XML body, so the code is S3's. (The proxy faults every GET:
    # the preflight's and the clean-up's LIST too, which are tried again, so the count
    # measured is at most the count injected.)
    with FaultProxy(s3_endpoint, internal_error=0.3, methods=["GET"], seed=3) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
        doc = bench(cli, f"s3://{bucket}", "--workload", "get", "--count", "40",
                    "--objects", "5", "--concurrency", "2")
    get = doc["operations"]["get"]
    errors = get["errors"].get("InternalError", 0)
    assert set(get["errors"]) == {"InternalError"} and 0 < errors <= faulty.counts[
        "internal_error"], (get, faulty.counts)
    assert get["ops"] + errors == 40 and get["bytes"] == get["ops"] * 4096


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
    # The second run: the latency the proxy adds to every HEAD twice as long (50 ms against
    # 100 ms, so that the loopback server's own few ms, which grow on a busy machine, do
    # not blur the 2x).
    for n, latency in enumerate((0.05, 0.1)):
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
    # Latency carries its spread and a verdict too: every HEAD took longer.
    for name in ("p50", "p90", "p99"):
        verdict = stat[f"latency_{name}_verdict"]
        assert verdict.startswith("slower by") and verdict.count("%") == 2, stat
        assert stat[f"latency_{name}_uncertainty_pct"] >= 0, stat
    assert f"slower by {stat['latency_p50_change_pct']:.0f} % ±" in stat["latency_p50_verdict"]
    table = cli("bench", "compare", str(runs[0]), str(runs[1]))
    assert table.returncode == 0, table.stderr
    p50 = [line for line in table.stdout.splitlines() if "p50 ms" in line]
    assert len(p50) == 1 and "slower by" in p50[0], table.stdout
    assert "two standard errors" in table.stdout and "per-second" in table.stdout
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


def test_aws_flags_reach_the_driver_and_every_worker(cli, s3, bucket, s3_endpoint,
                                                     monkeypatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    doc = bench(cli, f"s3://{bucket}/f", "--endpoint-url", s3_endpoint, "--workload", "put",
                "--count", "10", "--workers", "2", "--size", "1KiB", "--keep")
    assert doc["operations"]["put"]["ops"] == 10 and [w["ops"] for w in doc["workers"]] == [
        5, 5]
    assert len(_s3_keys(s3, bucket)) == 10  # both workers wrote through the flag's endpoint
    assert doc["spec"]["aws"] == {"endpoint_url": s3_endpoint}  # names only: no keys
    doc = bench(cli, f"s3://{bucket}/g", "--endpoint-url", s3_endpoint, "--region",
                "us-east-1", "--workload", "get", "--count", "10", "--objects", "3",
                "--workers", "2")
    assert doc["operations"]["get"]["ops"] == 10 and not doc["operations"]["get"]["errors"]
    # The flag wins over the environment: a closed port, with the right endpoint set.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    failed = bench(cli, f"s3://{bucket}", "--endpoint-url", "http://127.0.0.1:9",
                   "--count", "1", code=2)
    assert "127.0.0.1:9" in failed["stderr"], failed


def test_demo_takes_no_aws_flags(cli) -> None:
    demo = cli("demo", "--help").stdout
    assert "--profile" not in demo and "--endpoint-url" not in demo and "Local folders" in demo
    assert cli("demo", "--profile", "x").returncode == 2


def test_bench_help_describes_its_own_json_and_aws_flags(cli) -> None:
    text = cli("bench", "--help").stdout
    assert "DescribeJob" not in text and "--bucket-map" not in text, text
    assert "one JSON document" in text and "for an s3:// URL" in text
    assert "two standard errors" in text and "per-second" in text  # what compare's ± is
    assert "DescribeJob JSON" in cli("run", "--help").stdout  # the jobs' text is theirs


def test_copy_runs_the_jobs_copy_operation_on_a_folder_and_s3(cli, s3, bucket,
                                                              tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    doc = bench(cli, f"file://{root}", "--workload", "copy", "--count", "15", "--objects", "4",
                "--size", "2KiB", "--concurrency", "3", "--keep")
    assert doc["operations"]["copy"]["ops"] == 15 and not doc["operations"]["copy"]["errors"]
    copies = [p for p in _files(root) if p.parent.name == "copies"]
    sources = [p for p in _files(root) if p.parent.name != "copies"]
    assert len(copies) == 15 and len(sources) == 4, (copies, sources)
    assert {p.read_bytes() for p in copies} <= {p.read_bytes() for p in sources}
    doc = bench(cli, f"s3://{bucket}/c", "--workload", "copy", "--count", "12", "--objects",
                "3", "--size", "2KiB", "--concurrency", "3", "--keep")
    assert doc["operations"]["copy"]["ops"] == 12 and not doc["operations"]["copy"]["errors"]
    keys = _s3_keys(s3, bucket)
    copied = [k for k in keys if "/copies/" in k]
    assert len(copied) == 12 and len(keys) == 15, keys
    assert all(k.startswith("c/batchops-bench-") for k in keys)
    assert {s3.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in copied} == {2048}


def test_copy_on_memory_is_the_jobs_operation_and_its_copies_are_there() -> None:
    # memory:// lives in the worker's process: run one worker here, and read its store.
    import obstore as obs

    spec = BenchSpec(url="memory://", workload="copy", count=25, objects=5, concurrency=4,
                     sizes=(1024,), keep=True)
    worker = Worker(spec, 0, lambda doc: None)
    result = asyncio.run(worker.run())
    assert type(worker.job_op).__name__ == "CopyOperation"
    assert result["kinds"]["copy"]["ops"] == 25 and not result["kinds"]["copy"]["errors"]
    keys = [m["path"] for batch in obs.list(worker.store, prefix=worker.root) for m in batch]
    assert len([k for k in keys if k.startswith(worker.root + "copies/")]) == 25
    assert len(keys) == 30


@pytest.mark.parametrize("where", ["memory", "folder"])
def test_mixed_reads_never_race_deletes(cli, tmp_path: Path, where: str) -> None:
    url = "memory://" if where == "memory" else f"file://{tmp_path}"
    doc = bench(cli, url, "--workload", "mixed", "--mix", "get=40,stat=10,put=10,delete=40",
                "--count", "1500", "--objects", "30", "--concurrency", "16", "--size", "1KiB")
    ops = doc["operations"]
    assert sum(op["ops"] for op in ops.values()) == 1500, ops
    assert all(not op["errors"] for op in ops.values()), ops
    assert ops["delete"]["ops"] <= 30 + ops["put"]["ops"]  # the reserve, then the run's PUTs
    assert doc["prepare"]["objects"] == 60  # 30 to read, 30 for the deletes


@pytest.mark.parametrize("where", ["memory", "folder"])
def test_multipart_on_memory_and_a_folder(cli, tmp_path: Path, where: str) -> None:
    root = tmp_path / "store"
    root.mkdir()
    url = "memory://" if where == "memory" else f"file://{root}"
    doc = bench(cli, url, "--workload", "multipart", "--size", "5MiB", "--count", "4",
                "--concurrency", "2", "--keep")
    mp = doc["operations"]["multipart"]
    assert mp["ops"] == 4 and not mp["errors"] and mp["bytes"] == 4 * 5 * 1024**2, mp
    if where == "folder":
        assert sorted(p.stat().st_size for p in _files(root)) == [5 * 1024**2] * 4


def test_size_lists_and_random_sizes_are_counted_as_written(cli, tmp_path: Path) -> None:
    root = tmp_path / "list"
    root.mkdir()
    doc = bench(cli, f"file://{root}", "--workload", "put", "--size", "1KiB,4KiB",
                "--count", "10", "--concurrency", "2", "--keep")
    sizes = sorted(p.stat().st_size for p in _files(root))
    assert sizes == [1024] * 5 + [4096] * 5, sizes  # each size in turn
    assert doc["operations"]["put"]["bytes"] == sum(sizes)
    root = tmp_path / "random"
    root.mkdir()
    doc = bench(cli, f"file://{root}", "--workload", "put", "--size-random", "1KiB..8KiB",
                "--count", "20", "--concurrency", "2", "--keep")
    sizes = [p.stat().st_size for p in _files(root)]
    assert len(sizes) == 20 and all(1024 <= n <= 8192 for n in sizes) and len(set(sizes)) > 1
    assert doc["operations"]["put"]["bytes"] == sum(sizes)


def test_get_counts_and_bytes_match_what_was_prepared(cli, tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    doc = bench(cli, f"file://{root}", "--workload", "get", "--size", "3KiB", "--objects", "7",
                "--count", "20", "--concurrency", "2", "--keep")
    assert doc["prepare"]["objects"] == 7
    assert sorted(p.stat().st_size for p in _files(root)) == [3072] * 7
    get = doc["operations"]["get"]
    assert get["ops"] == 20 and get["bytes"] == 20 * 3072 and not get["errors"], get
    assert get["ttfb_ms"]["max"] <= get["latency_ms"]["max"]
    doc = bench(cli, "memory://", "--workload", "get", "--size", "5KiB", "--objects", "4",
                "--count", "30", "--concurrency", "3")
    get = doc["operations"]["get"]
    assert doc["prepare"]["objects"] == 4 and get["ops"] == 30 and get["bytes"] == 30 * 5120


def test_client_cpu_counts_the_workers_and_the_driver(cli) -> None:
    doc = bench(cli, "memory://", "--workload", "put", "--duration", "2s", "--workers", "2",
                "--concurrency", "4")
    cpu = doc["cpu"]
    assert cpu["workers_s"] == pytest.approx(sum(w["cpu_s"] for w in doc["workers"]), abs=0.01)
    assert cpu["driver_s"] >= 0 and "driver" in cpu["counted"]
    total = cpu["user_s"] + cpu["sys_s"]
    assert total == pytest.approx(cpu["workers_s"] + cpu["driver_s"], abs=0.01)
    ops = doc["operations"]["put"]["ops"]
    assert cpu["ms_per_op"] == pytest.approx(total * 1000 / ops, rel=0.01)
    shown = cli("bench", "memory://", "--count", "50", "--no-progress")
    assert shown.returncode == 0 and "driver" in shown.stdout, shown.stdout


def test_plot_draws_the_three_panels_one_colour_per_operation(cli, tmp_path: Path) -> None:
    doc = bench(cli, "memory://", "--workload", "mixed", "--duration", "3s", "--objects", "20",
                "--concurrency", "2")
    ops = sorted(doc["operations"])
    assert ops == ["delete", "get", "put", "stat"]
    panels = report.plot(doc, str(tmp_path / "run.png"))
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top, middle, bottom = panels
    assert top["title"].startswith("throughput over time") and top["xlabel"] == "second"
    assert top["ylabel"] == "operations per second"
    assert middle["title"].startswith("latency percentiles over time")
    assert (middle["xlabel"], middle["ylabel"]) == ("second", "ms")
    assert bottom["title"].startswith("latency distribution per operation")
    assert (bottom["xlabel"], bottom["ylabel"]) == ("percentile", "ms")
    colour = {line["label"]: line["colour"] for line in top["lines"]}
    assert sorted(colour) == ops and len(set(colour.values())) == 4
    assert {line["label"]: line["colour"] for line in bottom["lines"]} == colour
    assert {line["label"]: line["colour"] for line in middle["lines"]} == {
        f"{op} {p}": colour[op] for op in ops for p in ("p50", "p90", "p99")}
