"""One large object copied server-side in parts (UploadPartCopy): batchops against
aws-cli's `aws s3 cp s3://a/x s3://b/x`, in one run, against the keep-alive S3 server.

    python bench/multipart_copy.py                 # a 1 GiB object, 2 rounds
    python bench/multipart_copy.py --size-mib 256 --repeat 1

The issue asks for a 6 GB object. moto cannot serve that here: its UploadPartCopy reads
the whole source object into memory for every part (`key.value[start:end]`,
moto/s3/models.py `upload_part_copy`), so each part in flight holds the full object:
aws-cli's 10 requests at once on a 6 GB object need ~60 GB, and even one at a time
reads 6 GB per part. The default is the largest that fits beside other work on a
24 GiB machine: 1 GiB (10 in flight: ~10 GiB of moto's memory at the peak).

Both tools use 64 MiB parts (aws-cli through `s3.multipart_chunksize` in a config file
of its own; batchops through BatchopsMultipartPartSize) and start the multipart copy at
aws-cli's 8 MiB threshold (batchops: BatchopsMultipartThreshold; below 5 GB it would
otherwise send one CopyObject). aws-cli copies 10 parts at once, batchops 8
(operations/copy.py PART_CONCURRENCY). The source is zero-filled, uploaded once in 64
MiB parts of one shared zero buffer. Every copy is checked: its size, its part count
(the ETag's `-N`) and the bytes at both ends. Wall time and client CPU (user+sys of
the process tree, getrusage RUSAGE_CHILDREN) per run; writes its own section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from s3_cpu import (  # noqa: E402
    AWS,
    BATCHOPS,
    BenchError,
    become_subreaper,
    measured,
    write_section,
)

SECTION = "## Multipart copy of one large object (issue 15)"
MIB = 1024 * 1024
PART = 64 * MIB
THRESHOLD = 8 * MIB
PART_CONCURRENCY = 8  # operations/copy.py PART_CONCURRENCY (imported there: not here)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    if not BATCHOPS or not AWS:
        raise BenchError("batchops and aws-cli must be installed next to this Python")
    size = args.size_mib * MIB
    reaper = become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="batchops-mpcopy-"))
    n_ports = 1 + 2 * args.repeat
    server = subprocess.Popen([sys.executable, str(HERE / "keepalive_s3.py"), "--ports",
                               str(n_ports)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    load = [os.getloadavg()[0]]
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("["):
            raise BenchError("the keep-alive moto server did not start")
        ports = json.loads(line)
        runs = run(ports, size, args.repeat, work, {server.pid}, load)
        load.append(os.getloadavg()[0])
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    write(runs, size, args, load, reaper)
    return 0


def run(ports: list[int], size: int, repeat: int, work: Path, keep: set[int],
        load: list[float]) -> dict[str, list[tuple[float, float]]]:
    setup = f"http://127.0.0.1:{ports[0]}"
    s3 = boto3.client("s3", endpoint_url=setup, aws_access_key_id="bench",
                      aws_secret_access_key="bench-secret", region_name="us-east-1")
    for b in ("mp-src", "mp-batchops", "mp-awscli"):
        s3.create_bucket(Bucket=b)
    started = time.perf_counter()
    upload = s3.create_multipart_upload(Bucket="mp-src", Key="x")["UploadId"]
    zeros, parts = bytes(PART), []
    for n, start in enumerate(range(0, size, PART), 1):
        body = zeros if start + PART <= size else zeros[:size - start]
        etag = s3.upload_part(Bucket="mp-src", Key="x", UploadId=upload, PartNumber=n,
                              Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    s3.complete_multipart_upload(Bucket="mp-src", Key="x", UploadId=upload,
                                 MultipartUpload={"Parts": parts})
    print(f"source: {size / MIB:,.0f} MiB uploaded in {time.perf_counter() - started:.1f} s",
          flush=True)
    manifest = work / "m.csv"
    manifest.write_text("mp-src,x\n")
    (work / "aws-config").write_text(f"[default]\ns3 =\n  multipart_chunksize = {PART // MIB}MB\n"
                                     f"  multipart_threshold = {THRESHOLD // MIB}MB\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
               AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(work / "aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(work / "none"))
    spec = json.dumps({"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::mp-batchops",
                                           "BatchopsMultipartThreshold": THRESHOLD,
                                           "BatchopsMultipartPartSize": PART}})
    commands = {
        "batchops": lambda: [BATCHOPS, "run", "--manifest", str(manifest), "--operation", spec,
                             "--workers", "1", "--no-progress"],
        "aws-cli": lambda: [AWS, "s3", "cp", "--no-progress", "s3://mp-src/x",
                            "s3://mp-awscli/x"],
    }
    dest = {"batchops": "mp-batchops", "aws-cli": "mp-awscli"}
    fresh = iter(ports[1:])
    runs: dict[str, list[tuple[float, float]]] = {tool: [] for tool in commands}
    for r in range(repeat):
        load.append(os.getloadavg()[0])
        for tool in (commands if r % 2 == 0 else list(commands)[::-1]):
            s3.delete_object(Bucket=dest[tool], Key="x")
            endpoint = f"http://127.0.0.1:{next(fresh)}"
            wall, cpu, _, _ = measured(commands[tool](), env | {
                "AWS_ENDPOINT_URL": endpoint,
                "BATCHOPS_HOME": str(work / f"home-{r}-{tool}")}, keep)
            check(s3, dest[tool], size, tool)
            print(f"round {r + 1}/{repeat} {tool:>9}: {wall:7.2f} s wall, CPU {cpu:6.2f} s",
                  flush=True)
            runs[tool].append((wall, cpu))
    return runs


def check(s3, bucket: str, size: int, tool: str) -> None:  # type: ignore[no-untyped-def]
    head = s3.head_object(Bucket=bucket, Key="x")
    parts = -(-size // PART)
    if head["ContentLength"] != size or not head["ETag"].strip('"').endswith(f"-{parts}"):
        raise BenchError(f"{tool}: s3://{bucket}/x has {head['ContentLength']} bytes, ETag "
                         f"{head['ETag']} (expected {size} bytes in {parts} parts)")
    for rng in ("bytes=0-1023", f"bytes={size - 1024}-{size - 1}"):
        got = s3.get_object(Bucket=bucket, Key="x", Range=rng)["Body"].read()
        if got != bytes(1024):
            raise BenchError(f"{tool}: s3://{bucket}/x {rng} differs from the source")


def write(runs: dict[str, list[tuple[float, float]]], size: int, args: argparse.Namespace,
          load: list[float], reaper: bool) -> None:
    from importlib.metadata import version

    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                         capture_output=True, text=True).stdout.strip()
    aws = subprocess.run([AWS, "--version"], capture_output=True, text=True).stdout.strip()
    wall = {t: statistics.median(w for w, _ in rs) for t, rs in runs.items()}
    cpu = {t: statistics.median(c for _, c in rs) for t, rs in runs.items()}
    rows = ["| tool | runs: wall (s) | median wall (s) | MiB/s | median CPU (s) | "
            "wall vs aws-cli |", "|---|---|---:|---:|---:|---:|"]
    for tool, rs in runs.items():
        rows.append(f"| {tool} | {', '.join(f'{w:.2f}' for w, _ in rs)} | {wall[tool]:.2f} | "
                    f"{size / MIB / wall[tool]:,.0f} | {cpu[tool]:.2f} | "
                    f"{wall[tool] / wall['aws-cli']:.2f}× |")
    loads = ", ".join(f"{x:.2f}" for x in load)
    busy = (" (**the machine was busy**: the wall times carry that noise)"
            if max(load) > 1.5 else "")
    cmd = "python bench/multipart_copy.py" + (
        f" --size-mib {args.size_mib}" if args.size_mib != 1024 else "") + (
        f" --repeat {args.repeat}" if args.repeat != 2 else "")
    spec = json.dumps({"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::mp-batchops",
                                           "BatchopsMultipartThreshold": THRESHOLD,
                                           "BatchopsMultipartPartSize": PART}})
    bo_cmd = f"batchops run --manifest m.csv --operation '{spec}' --workers 1 --no-progress"
    aws_cmd = ("aws s3 cp --no-progress s3://mp-src/x s3://mp-awscli/x  # AWS_CONFIG_FILE: "
               f"s3.multipart_chunksize = {PART // MIB}MB, multipart_threshold = "
               f"{THRESHOLD // MIB}MB")
    section = f"""{SECTION}

Reproduce: `{cmd}`. Date: {time.strftime("%F %H:%M UTC", time.gmtime())}; commit {rev};
one zero-filled object of {size / MIB:,.0f} MiB copied server-side to another bucket in
{-(-size // PART)} parts of {PART // MIB} MiB; {args.repeat} round(s), the tools
alternating; batchops {version("batchops")}, {aws}; moto {version("moto")} behind
bench/keepalive_s3.py (HTTP/1.1 keep-alive). Load average (1 min) at the start, before
each round and at the end: {loads}{busy}. CPU: user+sys of the client's process tree
(getrusage RUSAGE_CHILDREN{", child subreaper" if reaper else ""}).

Why not 6 GB: moto's UploadPartCopy reads the whole source object into memory for every
part (moto/s3/models.py `upload_part_copy`: `get_object(...).value[start:end]`), so each
part in flight holds the full object: aws-cli's 10 requests at once on 6 GB would need
~60 GB of the machine's 24 GiB, and moto's copying (not the clients) sets the time.

```
{bo_cmd}
{aws_cmd}
```

Both: the parts' UploadPartCopy calls run concurrently (aws-cli 10 at once, batchops
{PART_CONCURRENCY}); batchops retries a failed part alone (tests/test_multipart_copy.py).

{chr(10).join(rows)}

batchops / aws-cli wall time: **{wall["batchops"] / wall["aws-cli"]:.2f}×** (below 1:
batchops is faster).
"""
    path = write_section(SECTION, section)
    print("\n".join(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
