"""`batchops bench` against fair baselines, in one run (issue 12):

    python bench/store_bench.py                 # 5 s per memory run, 2,000 S3 operations
    python bench/store_bench.py --seconds 2 --ops 500

1. Client overhead on memory://: `batchops bench memory:// --workload put|get --size 4KiB`
   against a plain loop doing the same obstore calls (`put_async`, `get_async` + stream)
   on the same event loop (uvloop) with the same concurrency (16 coroutines), in a fresh
   interpreter. Figure: operations per second per busy core (ops/s divided by the CPU
   seconds per second of the measured phase), and batchops' ratio to the plain loop
   (target: the plain loop within 1.25× of batchops).
2. Against the S3 API (moto's server on loopback): `batchops bench s3://...` for PUT, GET
   and HEAD against a boto3 thread pool (16 threads) doing the same calls on the same
   objects, and s5cmd when it is installed. Figure: client CPU per operation of the
   measured phase (target: batchops the lowest).

Writes its section of bench/RESULTS.md with the command, date and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## `batchops bench` against plain loops (issue 12)"
CONCURRENCY = 16
S5_MISSING = "(not installed: pip install 'batchops[bench]' brings it)"

PLAIN_MEMORY = textwrap.dedent("""
    import asyncio, os, resource, sys, time
    import obstore as obs, uvloop
    from obstore.store import MemoryStore
    workload, seconds = sys.argv[1], float(sys.argv[2])
    size, conc = int(sys.argv[3]), int(sys.argv[4])
    store = MemoryStore(); payload = memoryview(os.urandom(size)); keys = []
    async def prep():
        for i in range(1000):
            k = f"o/{i}"; await obs.put_async(store, k, payload[:size]); keys.append(k)
    async def worker(n, stop):
        done = 0; i = 0
        while time.monotonic() < stop:
            i += 1
            if workload == "put":
                await obs.put_async(store, f"p/{n}/{i}", payload[:size], use_multipart=False)
            else:
                r = await obs.get_async(store, keys[(n * 7919 + i) % len(keys)])
                async for b in r.stream(min_chunk_size=1 << 20): pass
            done += 1
        return done
    async def main():
        if workload == "get": await prep()
        r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
        stop = time.monotonic() + seconds
        done = sum(await asyncio.gather(*(worker(n, stop) for n in range(conc))))
        t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        print(done, t1 - t0, cpu)
    uvloop.run(main())
""")

PLAIN_BOTO3 = textwrap.dedent("""
    import resource, sys, time, boto3
    from concurrent.futures import ThreadPoolExecutor
    from botocore.config import Config
    endpoint, bucket, workload, n, size, conc = sys.argv[1:7]
    n, size, conc = int(n), int(size), int(conc)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      config=Config(max_pool_connections=conc, retries={"total_max_attempts": 1}))
    body = b"x" * size
    keys = [f"boto3/{i}" for i in range(200)]
    if workload != "put":
        for k in keys: s3.put_object(Bucket=bucket, Key=k, Body=body)
    def one(i):
        if workload == "put": s3.put_object(Bucket=bucket, Key=f"boto3p/{i}", Body=body)
        elif workload == "get": s3.get_object(Bucket=bucket, Key=keys[i % 200])["Body"].read()
        else: s3.head_object(Bucket=bucket, Key=keys[i % 200])
    r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as pool: list(pool.map(one, range(n)))
    t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(n, t1 - t0, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
""")


def batchops_bench(url: str, *flags: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-m", "batchops", "bench", url, *flags, "--json",
                          "--no-progress", "--concurrency", str(CONCURRENCY)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def figures(doc: dict) -> tuple[int, float, float]:
    ops = sum(op["ops"] for op in doc["operations"].values())
    cpu = doc["cpu"]["user_s"] + doc["cpu"]["sys_s"]
    return ops, doc["elapsed_s"], cpu


def plain(script: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                         text=True, env=env, check=True).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def s5cmd_run(exe: str, endpoint: str, bucket: str, workload: str, n: int,
              env: dict[str, str]) -> tuple[int, float, float]:
    """s5cmd's `run` over N commands (cp up / cat / head), 16 workers; CPU of the whole
    s5cmd process (a Go binary: its start costs a few ms)."""
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body"
        body.write_bytes(b"x" * 4096)
        if workload != "put":  # objects to read, made by s5cmd itself (not measured)
            prep = Path(tmp) / "prep.txt"
            prep.write_text("".join(f"cp {body} s3://{bucket}/s5/{i}\n" for i in range(200)))
            subprocess.run([exe, "--endpoint-url", endpoint, "run", str(prep)], env=env,
                           check=True, capture_output=True)
        verb = {"put": "cp {body} s3://{b}/s5p/{i}", "get": "cat s3://{b}/s5/{j}",
                "stat": "head s3://{b}/s5/{j}"}[workload]
        cmds = Path(tmp) / "cmds.txt"
        cmds.write_text("".join(verb.format(body=body, b=bucket, i=i, j=i % 200) + "\n"
                                for i in range(n)))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([exe, "--endpoint-url", endpoint, "--numworkers", str(CONCURRENCY),
                        "run", str(cmds)], env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return n, wall, cpu


def moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--no-results", action="store_true")
    a = ap.parse_args()
    rows_mem = []
    for workload in ("put", "get"):
        doc = batchops_bench("memory://", "--workload", workload, "--size", "4KiB",
                             "--duration", f"{a.seconds}s")
        b_ops, b_wall, b_cpu = figures(doc)
        p_ops, p_wall, p_cpu = plain(PLAIN_MEMORY, workload, str(a.seconds), "4096",
                                     str(CONCURRENCY))
        b_core, p_core = b_ops / b_cpu, p_ops / p_cpu
        rows_mem.append((workload, b_ops / b_wall, b_core, p_ops / p_wall, p_core,
                         p_core / b_core))
    proc, endpoint = moto()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    rows_s3 = []
    s5cmd = shutil.which("s5cmd")
    try:
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket="bench-store")
        for workload in ("put", "get", "stat"):
            doc = batchops_bench("s3://bench-store/b", "--workload", workload,
                                 "--size", "4KiB", "--count", str(a.ops), "--objects", "200",
                                 env=env)
            b_ops, b_wall, b_cpu = figures(doc)
            p_ops, p_wall, p_cpu = plain(PLAIN_BOTO3, endpoint, "bench-store",
                                         "head" if workload == "stat" else workload,
                                         str(a.ops), "4096", str(CONCURRENCY), env=env)
            if s5cmd:
                s_ops, s_wall, s_cpu = s5cmd_run(s5cmd, endpoint, "bench-store", workload,
                                                 a.ops, env)
                s5 = (s_ops / s_wall, s_cpu / s_ops * 1000)
            else:
                s5 = (float("nan"), float("nan"))
            rows_s3.append((workload, b_ops / b_wall, b_cpu / b_ops * 1000, p_ops / p_wall,
                            p_cpu / p_ops * 1000, *s5))
    finally:
        proc.terminate()
        proc.wait(10)
    mem_table = ["| workload | batchops ops/s | batchops ops/s per busy core | plain loop ops/s "
                 "| plain ops/s per busy core | plain ÷ batchops per core |",
                 "|---|---:|---:|---:|---:|---:|"]
    mem_table += [f"| {w} 4 KiB | {b:,.0f} | {bc:,.0f} | {p:,.0f} | {pc:,.0f} | {r:.2f}× |"
                  for w, b, bc, p, pc, r in rows_mem]
    s3_table = ["| operation | batchops ops/s | batchops CPU ms/op | boto3 pool ops/s | "
                "boto3 CPU ms/op | s5cmd ops/s | s5cmd CPU ms/op | boto3 ÷ batchops | "
                "s5cmd ÷ batchops |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    s3_table += [f"| {w} 4 KiB | {b:,.0f} | {bc:.3f} | {p:,.0f} | {pc:.3f} | {so:,.0f} | "
                 f"{sc:.3f} | {pc / bc:.2f}× | {sc / bc:.2f}× |"
                 for w, b, bc, p, pc, so, sc in rows_s3]
    print("\n".join(mem_table))
    print("\n".join(s3_table))
    if a.no_results:
        return 0
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                         capture_output=True, text=True).stdout.strip()
    worst = max(r[5] for r in rows_mem)
    s3_best = all(r[2] <= r[4] and not r[6] < r[2] for r in rows_s3)
    s5_version = subprocess.run([s5cmd, "version"], capture_output=True, text=True
                                ).stdout.strip() if s5cmd else ""
    section = f"""{SECTION}

Reproduce: `python bench/store_bench.py --seconds {a.seconds:g} --ops {a.ops}`. Date:
{time.strftime("%F", time.gmtime())}; commit {rev}; machine: nproc {os.cpu_count()};
{CONCURRENCY} operations in flight for every client. CPU is user + sys of the measured
phase only (preparation and interpreter start out), from getrusage in each process.

**Client overhead, memory://** (the client's ceiling: the store costs next to nothing).
batchops bench vs a plain loop of the same obstore calls on uvloop in a fresh interpreter
({a.seconds:g} s each). Target: the plain loop within 1.25× of batchops per busy core;
worst today {worst:.2f}× ({"met" if worst <= 1.25 else "not met"}).

{chr(10).join(mem_table)}

**Against the S3 API** (moto on loopback, {a.ops:,} operations each, 4 KiB objects;
moto sets the throughput, so CPU per operation tells the clients apart). batchops and
the boto3 pool: CPU of the measured phase; s5cmd {s5_version or S5_MISSING}:
`s5cmd --numworkers {CONCURRENCY} run` over
one command per operation (`cp`, `cat`, `head`), CPU of its whole process (a Go binary
whose start costs a few ms). Target: batchops the lowest CPU per operation of the
three: {"met" if s3_best else "not met"}.

{chr(10).join(s3_table)}
"""
    body = RESULTS.read_text(encoding="utf-8")
    if SECTION in body:
        start = body.index(SECTION)
        nxt = body.find("\n## ", start + len(SECTION))
        body = body[:start] + section.rstrip("\n") + "\n" + (body[nxt:] if nxt >= 0 else "")
    else:
        body = body.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(body.rstrip("\n") + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    tempfile.tempdir = None
    raise SystemExit(main())
