"""Client CPU per task against an S3-API server (issue 3, issue 5 workload 2).

    python bench/s3_cpu.py                      # 1,000 objects of 1 KiB
    BATCHOPS_BENCH_SCALE=0.2 python bench/s3_cpu.py

Starts moto_server on a free loopback port, creates the objects with boto3, then, in
one run, measures for each client the wall time and the CPU (user + sys of the whole
process tree: getrusage(RUSAGE_CHILDREN) around each subprocess) per task:

- server-side copy to another bucket: batchops, s5cmd, aws-cli (`aws s3 cp --recursive`);
- server-side copy inside one bucket: batchops;
- put-object-tagging: batchops, and a plain boto3 thread pool (what a user would write).

moto handles a few hundred requests/s, so throughput is moto's; CPU per task is what
tells the clients apart. batchops' marginal CPU per task, (cpu(N) - cpu(N/4)) / (3N/4),
removes its fixed start cost. Writes a section of bench/RESULTS.md.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent
SCALE = float(os.environ.get("BATCHOPS_BENCH_SCALE", "1"))
N = max(40, int(1000 * SCALE))
VENV_BIN = Path(sys.executable).parent
AWS = shutil.which("aws", path="/tmp/awsvenv/bin") or shutil.which("aws")
S5CMD = shutil.which("s5cmd", path=str(VENV_BIN)) or shutil.which("s5cmd")

TAGGER = textwrap.dedent("""
    import sys, boto3
    from concurrent.futures import ThreadPoolExecutor
    bucket, keys = sys.argv[1], sys.argv[2:]
    s3 = boto3.client("s3")
    def tag(k):
        s3.put_object_tagging(Bucket=bucket, Key=k,
                              Tagging={"TagSet": [{"Key": "project", "Value": "x"}]})
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(tag, keys))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0,):
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="batchops-s3cpu-"))
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
               AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL=endpoint, BATCHOPS_HOME=str(work / "home"))
    rows: list[tuple[str, str, int, float, float, float]] = []
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                          aws_secret_access_key="bench-secret", region_name="us-east-1")
        for b in ("src", "dst-batchops", "dst-batchops-small", "dst-s5cmd", "dst-aws"):
            s3.create_bucket(Bucket=b)
        keys = [f"data/obj-{i:06d}.bin" for i in range(N)]
        body = os.urandom(1024)
        for k in keys:
            s3.put_object(Bucket="src", Key=k, Body=body)
        manifest = work / "m.csv"
        manifest.write_text("".join(f"src,{k}\n" for k in keys))
        quarter = work / "q.csv"
        quarter.write_text("".join(f"src,{k}\n" for k in keys[: N // 4]))
        bo = [sys.executable, "-m", "batchops", "run", "--workers", "2", "--no-progress"]

        def record(tool: str, workload: str, n: int, cmd: list[str]) -> float:
            wall, cpu = measured(cmd, env)
            rows.append((tool, workload, n, wall, n / wall, cpu / n * 1000))
            print(rows[-1], flush=True)
            return cpu

        full = record("batchops", "copy to another bucket", N,
                      [*bo, "--manifest", str(manifest), "--operation", "copy", "--target",
                       "s3://dst-batchops"])
        small = record("batchops", "copy to another bucket", N // 4,
                       [*bo, "--manifest", str(quarter), "--operation", "copy", "--target",
                        "s3://dst-batchops-small"])
        marginal_copy = (full - small) / (N - N // 4) * 1000
        record("batchops", "copy inside one bucket", N,
               [*bo, "--manifest", str(manifest), "--operation", "copy", "--target",
                "s3://src/copies"])
        if S5CMD:
            record("s5cmd", "copy to another bucket", N,
                   [S5CMD, "--endpoint-url", endpoint, "cp", "s3://src/data/*",
                    "s3://dst-s5cmd/data/"])
        if AWS:
            record("aws-cli", "copy to another bucket", N,
                   [AWS, "--endpoint-url", endpoint, "s3", "cp", "--recursive", "--quiet",
                    "s3://src/data/", "s3://dst-aws/data/"])
        full = record("batchops", "put-object-tagging", N,
                      [*bo, "--manifest", str(manifest), "--operation", "put-tagging",
                       "--tag", "project=x"])
        small = record("batchops", "put-object-tagging", N // 4,
                       [*bo, "--manifest", str(quarter), "--operation", "put-tagging",
                        "--tag", "project=y"])
        marginal_tag = (full - small) / (N - N // 4) * 1000
        record("boto3 thread pool (32)", "put-object-tagging", N,
               [sys.executable, "-c", TAGGER, "src", *keys])
        # Correctness: every copy is there, tags are set.
        for b in ["dst-batchops"] + (["dst-s5cmd"] if S5CMD else []) + (
                ["dst-aws"] if AWS else []):
            count = sum(len(p.get("Contents", [])) for p in
                        s3.get_paginator("list_objects_v2").paginate(Bucket=b))
            assert count == N, (b, count)
        assert s3.get_object_tagging(Bucket="src", Key=keys[-1])["TagSet"] == [
            {"Key": "project", "Value": "x"}]
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    write_results(rows, marginal_copy, marginal_tag)


def write_results(rows: list[tuple], marginal_copy: float, marginal_tag: float) -> None:
    base = {w: cpu for tool, w, n, _, _, cpu in rows if tool == "batchops" and n == N}
    table = ["| tool | workload | tasks | wall (s) | ops/s | CPU ms/task | CPU vs batchops |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for tool, workload, n, wall, ops, cpu in rows:
        ratio = cpu / base[workload] if workload in base else 1.0
        table.append(f"| {tool} | {workload} | {n:,} | {wall:.2f} | {ops:,.0f} | {cpu:.3f} |"
                     f" {ratio:.2f}× |")
    section = (
        "## S3 client CPU per task (issue 3 / issue 5 workload 2)\n\n"
        f"Reproduce: `python bench/s3_cpu.py` — date {datetime.now(UTC).date()}, "
        f"{N:,} objects of 1 KiB, moto_server on loopback, 2 cores.\n\n"
        "Peers: `s5cmd --endpoint-url E cp 's3://src/data/*' s3://dst-s5cmd/data/`; "
        "`aws --endpoint-url E s3 cp --recursive --quiet s3://src/data/ s3://dst-aws/data/`; "
        "a boto3 `ThreadPoolExecutor(32)` calling `put_object_tagging` per key. batchops: "
        "`batchops run --workers 2 --operation copy --target s3://dst` (awscrt CopyObject) "
        "or `--target s3://src/copies` (obstore copy), `--operation put-tagging` "
        "(aiobotocore).\n\n" + "\n".join(table) + "\n\n"
        f"batchops marginal CPU per task (start cost removed: (cpu(N) - cpu(N/4)) / (3N/4)): "
        f"copy to another bucket **{marginal_copy:.3f} ms**, put-object-tagging "
        f"**{marginal_tag:.3f} ms**.\n")
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"## S3 client CPU per task.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n"), text) if pattern.search(text) \
        else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print("\n".join(table))
    print(f"marginal CPU/task: copy {marginal_copy:.3f} ms, tagging {marginal_tag:.3f} ms")


if __name__ == "__main__":
    main()
