"""Client CPU per task against a keep-alive S3-API server (issue 3, issue 5 workload 2,
issue 15).

    python bench/s3_cpu.py                      # 1,000 objects of 1 KiB, 3 rounds
    BATCHOPS_BENCH_SCALE=0.2 BATCHOPS_BENCH_REPEAT=1 python bench/s3_cpu.py

Starts moto's S3 app with HTTP/1.1 keep-alive (bench/keepalive_s3.py) on loopback,
creates the objects with boto3, then, in one run, measures for each client the wall
time and the CPU (user + sys of the whole process tree: getrusage(RUSAGE_CHILDREN)
around each subprocess; this process is a child subreaper, so helpers a client leaves
behind are reaped and counted too) per task:

- server-side copy to another bucket: batchops (CopyObject through awscrt's signer and
  HTTP client), s5cmd, aws-cli,
  a boto3 thread pool;
- server-side copy inside one bucket: batchops (obstore copy);
- put-object-tagging: batchops (awscrt signer + HTTP client), a boto3 thread pool.

Every client also runs on a quarter of the objects, so its CPU splits into a fixed start
cost and a marginal cost per task, (cpu(N) - cpu(N/4)) / (3N/4): the marginal figure is
what a large job pays. Each figure is the median of BATCHOPS_BENCH_REPEAT rounds (default
3; tools interleaved, order reversed every other round) after one unmeasured warm-up
round. Every run is checked (exit code, the exact keys at the destination, size or tags
of a sample) and the script exits non-zero if one failed.

The server counts the connections and requests of each listening port, and every
measured run talks to a port no earlier run used, so each run's counts are its own
(and no run pays for the TIME_WAIT sockets of the runs before it); during the warm-up
round `ss -tn` is sampled every 20 ms and the distinct client ports connected to the
run's port are counted: both show whether a client reused its connections. Writes its
own section of bench/RESULTS.md.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import boto3
from botocore.config import Config

HERE = Path(__file__).resolve().parent
SCALE = float(os.environ.get("BATCHOPS_BENCH_SCALE", "1"))
REPEAT = max(1, int(os.environ.get("BATCHOPS_BENCH_REPEAT", "3")))
#: A source tree of an earlier batchops (its `src/`, with its extensions built in place):
#: its rows, "batchops @<rev>", are the previous build measured in the same run.
BASELINE_SRC = os.environ.get("BATCHOPS_BENCH_BASELINE_SRC", "")
N = max(40, int(1000 * SCALE))
Q = N // 4
VENV_BIN = Path(sys.executable).parent
BATCHOPS = shutil.which("batchops", path=str(VENV_BIN)) or shutil.which("batchops")
S5CMD = shutil.which("s5cmd", path=str(VENV_BIN)) or shutil.which("s5cmd")
AWS = shutil.which("aws", path=str(VENV_BIN)) or shutil.which("aws")
SRC = "src-bucket"
SECTION = "## S3 client CPU per task (issue 3 / issue 5 workload 2)"
GOAL_MS = 0.25  # S3 copy, marginal client CPU per task; and at most half of s5cmd's
TAG_GOAL_MS = 0.35  # put-tagging; and at most a third of the boto3 thread pool's

# What a user would otherwise write: a thread pool around boto3's put_object_tagging
# (the connection pool sized to the threads, as boto3 warns otherwise).
TAGGER = textwrap.dedent("""\
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    bucket, keyfile = sys.argv[1], sys.argv[2]
    target = sys.argv[3] if len(sys.argv) > 3 else None  # copy there instead of tagging
    keys = open(keyfile).read().split()
    s3 = boto3.client("s3", config=Config(max_pool_connections=32))


    def tag(key):
        s3.put_object_tagging(Bucket=bucket, Key=key,
                              Tagging={"TagSet": [{"Key": "project", "Value": "x"}]})


    def copy(key):
        s3.copy_object(Bucket=target, Key=key, CopySource={"Bucket": bucket, "Key": key})


    with ThreadPoolExecutor(32) as pool:
        list(pool.map(copy if target else tag, keys))
""")

KEEPALIVE = HERE / "keepalive_s3.py"


class BenchError(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"s3_cpu: {message}")


@dataclass
class Case:
    tool: str
    workload: str
    tasks: int
    cmd: Callable[[str], list[str]]
    before: Callable[[], None]
    check: Callable[[str], None]
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    orphans: int = 0
    connections: list[int] = field(default_factory=list)  # accepted by the server, per run
    requests: list[int] = field(default_factory=list)
    ss_ports: int = 0  # distinct client ports `ss` saw connected (warm-up round)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


def become_subreaper() -> bool:
    """Orphans of our children get reparented to us, so their CPU reaches RUSAGE_CHILDREN
    once we reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def children(exclude: set[int]) -> list[int]:
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            out.append(int(entry))
    return out


def measured(cmd: list[str], env: dict[str, str],
             keep: set[int]) -> tuple[float, float, str, int]:
    """(wall seconds, CPU seconds of the whole process tree, output, processes it left
    behind) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{Path(cmd[0]).name} timed out after 900 s") from exc
    wall = time.perf_counter() - start
    # Reap whatever the command left behind (reparented to us), so its CPU counts too.
    deadline, orphans = time.monotonic() + 30, set()
    while (left := children(keep)) and time.monotonic() < deadline:
        orphans.update(left)
        for pid in left:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:3])} ... exited {proc.returncode}:\n"
                         f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout + proc.stderr, len(orphans)


def main() -> int:
    if not BATCHOPS:
        raise BenchError("batchops is not installed next to this Python")
    reaper = become_subreaper()
    load = [os.getloadavg()[0]]
    n_cases = 20  # at most: 10 workloads x 2 sizes; one port per run plus one for setup
    work = Path(tempfile.mkdtemp(prefix="batchops-s3cpu-"))
    server = subprocess.Popen([sys.executable, str(KEEPALIVE), "--ports",
                               str(1 + n_cases * (REPEAT + 1))],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    # The clients' environment. Bytecode is cached (outside the source tree) as a normal
    # install has it: PYTHONDONTWRITEBYTECODE would recompile an editable install's
    # modules at every start; the warm-up round fills the cache.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
               AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(work / "none"), AWS_SHARED_CREDENTIALS_FILE=str(work / "none"),
               PYTHONPYCACHEPREFIX=str(work / "pycache"))
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("["):
            raise BenchError("the keep-alive moto server did not start")
        ports = json.loads(line)
        cases = run_all(ports, env, work, {server.pid}, load)
        load.append(os.getloadavg()[0])
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    write_results(cases, reaper, load)
    return 0


def server_counts(stats_url: str, port: str) -> tuple[int, int]:
    """(connections accepted, requests served) on one of the server's ports."""
    import urllib.request

    with urllib.request.urlopen(stats_url, timeout=10) as answer:  # noqa: S310 - loopback
        connections, requests = json.load(answer).get(port, [0, 0])
    return connections, requests


class PortWatch:
    """Samples `ss -tn` every 20 ms while a run lasts; counts the distinct client ports
    seen connected to the server's `port` (only in the unmeasured warm-up round: the
    `ss` processes are children of this one, and their CPU would count)."""

    def __init__(self, port: str) -> None:
        import threading

        self.port, self.seen = port, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ss", "-tnH", "state", "established",
                                  f"( dport = :{self.port} )"], capture_output=True,
                                 text=True).stdout
            for line in out.splitlines():
                fields = line.split()
                if len(fields) >= 4:
                    self.seen.add(fields[2].rsplit(":", 1)[1])
            self._stop.wait(0.02)

    def __enter__(self) -> PortWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_all(ports: list[int], env: dict[str, str], work: Path, keep: set[int],
            load: list[float]) -> list[Case]:
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{ports[0]}",
                      aws_access_key_id="bench", aws_secret_access_key="bench-secret",
                      region_name="us-east-1", config=Config(max_pool_connections=16))
    fresh = iter(ports[1:])
    for b in (SRC, "dst-bucket", "dst2", "dst3", "dst4", "dst-old"):
        s3.create_bucket(Bucket=b)
    keys = {"data": [f"data/obj-{i:06d}.bin" for i in range(N)],
            "quarter": [f"quarter/obj-{i:06d}.bin" for i in range(Q)]}
    body = os.urandom(1024)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=SRC, Key=k, Body=body),
                      keys["data"] + keys["quarter"]))
    manifests, keyfiles = {}, {}
    for prefix, ks in keys.items():
        manifests[prefix] = work / f"{prefix}.csv"
        manifests[prefix].write_text("".join(f"{SRC},{k}\n" for k in ks))
        keyfiles[prefix] = work / f"{prefix}.keys"
        keyfiles[prefix].write_text("\n".join(ks) + "\n")
    tagger = work / "tagger.py"
    tagger.write_text(TAGGER)
    rng = random.Random(5)

    def listed(bucket: str, prefix: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for p in pages for o in p.get("Contents", [])]

    def clear(bucket: str, prefix: str) -> Callable[[], None]:
        def run() -> None:
            found = listed(bucket, prefix)
            for i in range(0, len(found), 1000):
                s3.delete_objects(Bucket=bucket, Delete={
                    "Objects": [{"Key": k} for k in found[i:i + 1000]], "Quiet": True})
            if listed(bucket, prefix):
                raise BenchError(f"could not empty s3://{bucket}/{prefix}")
        return run

    def copied(bucket: str, into: str, src_prefix: str) -> Callable[[str], None]:
        """Check that s3://bucket/{into}{key} exists for every source key under src_prefix."""
        def run(tool: str) -> None:
            expect = {into + k for k in keys[src_prefix]}
            prefix = f"{into}{src_prefix}/"
            got = set(listed(bucket, prefix))
            if got != expect:
                raise BenchError(f"{tool}: s3://{bucket}/{prefix} holds {len(got)} objects, "
                                 f"{len(got & expect)} of the {len(expect)} expected")
            for k in rng.sample(sorted(expect), min(20, len(expect))):
                size = s3.head_object(Bucket=bucket, Key=k)["ContentLength"]
                if size != len(body):
                    raise BenchError(f"{tool}: s3://{bucket}/{k} has {size} bytes")
        return run

    samples = {p: sorted(set(rng.sample(ks, min(25, len(ks))) + [ks[0], ks[-1]]))
               for p, ks in keys.items()}

    def untag(prefix: str) -> Callable[[], None]:
        def run() -> None:
            for k in samples[prefix]:
                s3.delete_object_tagging(Bucket=SRC, Key=k)
        return run

    def tagged(prefix: str) -> Callable[[str], None]:
        def run(tool: str) -> None:
            for k in samples[prefix]:
                tags = s3.get_object_tagging(Bucket=SRC, Key=k)["TagSet"]
                if tags != [{"Key": "project", "Value": "x"}]:
                    raise BenchError(f"{tool}: s3://{SRC}/{k} has tags {tags}")
        return run

    def bo(prefix: str, *args: str) -> Callable[[str], list[str]]:
        return lambda _: [BATCHOPS, "run", "--manifest", str(manifests[prefix]), *args,
                          "--workers", "2", "--no-progress"]

    def old(prefix: str, *args: str) -> Callable[[str], list[str]]:
        return lambda _: ["env", f"PYTHONPATH={BASELINE_SRC}", sys.executable, "-m", "batchops",
                          "run", "--manifest", str(manifests[prefix]), *args, "--workers", "2",
                          "--no-progress"]

    def s5(p: str) -> Callable[[str], list[str]]:
        return lambda e: [S5CMD, "--endpoint-url", e, "cp", f"s3://{SRC}/{p}/*",
                          f"s3://dst2/{p}/"]

    def aws(p: str) -> Callable[[str], list[str]]:
        return lambda e: [AWS, "--endpoint-url", e, "s3", "cp", "--recursive", "--no-progress",
                          f"s3://{SRC}/{p}/", f"s3://dst3/{p}/"]

    def boto(p: str, *target: str) -> Callable[[str], list[str]]:
        return lambda _: [sys.executable, str(tagger), SRC, str(keyfiles[p]), *target]

    cases: list[Case] = []
    sizes = (("data", N), ("quarter", Q))
    for p, n in sizes:
        cases.append(Case("batchops", "copy to another bucket", n,
                          bo(p, "--operation", "copy", "--target", "s3://dst-bucket"),
                          clear("dst-bucket", p + "/"), copied("dst-bucket", "", p)))
    for p, n in sizes:
        cases.append(Case("batchops", "copy inside one bucket", n,
                          bo(p, "--operation", "copy", "--target", f"s3://{SRC}",
                             "--target-key-prefix", "copies"),
                          clear(SRC, "copies/"), copied(SRC, "copies/", p)))
    if BASELINE_SRC:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BASELINE_SRC,
                             capture_output=True, text=True).stdout.strip() or "baseline"
        for p, n in sizes:
            cases.append(Case(f"batchops @{rev}", "copy to another bucket", n,
                              old(p, "--operation", "copy", "--target", "s3://dst-old"),
                              clear("dst-old", p + "/"), copied("dst-old", "", p)))
        for p, n in sizes:
            cases.append(Case(f"batchops @{rev}", "copy inside one bucket", n,
                              old(p, "--operation", "copy", "--target", f"s3://{SRC}",
                                  "--target-key-prefix", "oldcopies"),
                              clear(SRC, "oldcopies/"), copied(SRC, "oldcopies/", p)))
    for p, n in sizes if S5CMD else ():
        cases.append(Case("s5cmd", "copy to another bucket", n, s5(p),
                          clear("dst2", p + "/"), copied("dst2", "", p)))
    for p, n in sizes if AWS else ():
        cases.append(Case("aws-cli", "copy to another bucket", n, aws(p),
                          clear("dst3", p + "/"), copied("dst3", "", p)))
    for p, n in sizes:
        cases.append(Case("boto3 ThreadPoolExecutor(32)", "copy to another bucket", n,
                          boto(p, "dst4"), clear("dst4", p + "/"), copied("dst4", "", p)))
    for p, n in sizes:
        cases.append(Case("batchops", "put-object-tagging", n,
                          bo(p, "--operation", "put-tagging", "--tag", "project=x"),
                          untag(p), tagged(p)))
    for p, n in sizes:
        cases.append(Case("boto3 ThreadPoolExecutor(32)", "put-object-tagging", n, boto(p),
                          untag(p), tagged(p)))

    warmup = [c for c in cases if c.tasks == Q]
    rounds = [(0, warmup)] + [(r, cases if r % 2 else cases[::-1])
                              for r in range(1, REPEAT + 1)]
    stats_url = f"http://127.0.0.1:{ports[0]}/_keepalive/stats"
    for r, order in rounds:
        load.append(os.getloadavg()[0])
        for case in order:
            case.before()
            port = str(next(fresh))
            endpoint = f"http://127.0.0.1:{port}"
            run_env = env | {"AWS_ENDPOINT_URL": endpoint,
                             "BATCHOPS_HOME": str(work / f"home-{r}-{cases.index(case)}")}
            if r:
                wall, cpu, out, orphans = measured(case.cmd(endpoint), run_env, keep)
            else:
                with PortWatch(port) as watch:
                    wall, cpu, out, orphans = measured(case.cmd(endpoint), run_env, keep)
                case.ss_ports = len(watch.seen)
            conns, reqs = server_counts(stats_url, port)
            if case.tool == "batchops":
                m = re.search(r"([\d,]+) succeeded, ([\d,]+) failed", out)
                if not m or int(m[1].replace(",", "")) != case.tasks or m[2] != "0":
                    raise BenchError(f"batchops {case.workload}: unexpected summary: {out}")
            case.check(case.tool)
            label = f"round {r}/{REPEAT}" if r else "warm-up  "
            print(f"{label} {case.tool:>28} | {case.workload:<22} | {case.tasks:>6} tasks | "
                  f"{wall:6.2f} s | CPU {cpu:6.3f} s ({cpu / case.tasks * 1000:.3f} ms/task) | "
                  f"{reqs} requests on {conns} connections"
                  + (f" (ss saw {case.ss_ports} client ports)" if not r else "")
                  + (f", left {orphans} process(es) behind" if orphans else ""), flush=True)
            if r:
                case.walls.append(wall)
                case.cpus.append(cpu)
                case.orphans = max(case.orphans, orphans)
                case.connections.append(conns)
                case.requests.append(reqs)
    return cases


def write_section(heading: str, section: str) -> Path:
    """Put `section` (starting with `heading`) in bench/RESULTS.md in place of the
    section of that heading (or at the end); the rest of the file is left as it is."""
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(heading) + r".*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_suffix(f".md.{os.getpid()}-tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def command_text(case: Case) -> str:
    cmd = case.cmd("http://127.0.0.1:PORT")
    cmd = [Path(cmd[0]).name, *cmd[1:]]
    if cmd[0].startswith("python"):
        cmd = ["python", "tagger.py", *cmd[2:3], "keys.txt", *cmd[4:]]
    text = " ".join(f"'{a}'" if "*" in a else a for a in cmd)
    return re.sub(r"\S*/(data|quarter)\.csv", "m.csv", text)


def write_results(cases: list[Case], reaper: bool, load: list[float]) -> None:
    full = [c for c in cases if c.tasks == N]
    quarter = {(c.tool, c.workload): c for c in cases if c.tasks == Q}
    base = {c.workload: c for c in full if c.tool == "batchops"}
    base["copy to another bucket"] = base.get("copy to another bucket") or full[0]
    table = ["| tool | workload | tasks | wall (s) | ops/s | CPU ms/task | CPU/task vs batchops "
             "| requests / connections (server) | client ports seen by `ss` (N/4 warm-up) |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for c in full:
        b = base[c.workload]
        q = quarter[(c.tool, c.workload)]
        reused = " · ".join(f"{r:,} / {n:,}" for r, n in zip(c.requests, c.connections,
                                                            strict=True))
        table.append(f"| {c.tool} | {c.workload} | {c.tasks:,} | {c.wall:.2f} | "
                     f"{c.tasks / c.wall:,.0f} | {c.cpu / c.tasks * 1000:.3f} | "
                     f"{(c.cpu / c.tasks) / (b.cpu / b.tasks):.2f}× | {reused} | "
                     f"{q.ss_ports:,} |")
    split = ["| tool | workload | CPU N (s), each round | CPU N/4 (s), each round | "
             "start cost (ms) | marginal CPU ms/task | marginal vs batchops |",
             "|---|---|---|---|---:|---:|---:|"]
    marginal: dict[tuple[str, str], float] = {}
    for c in full:
        q = quarter[(c.tool, c.workload)]
        marginal[(c.tool, c.workload)] = (c.cpu - q.cpu) / (N - Q) * 1000
    for c in full:
        m = marginal[(c.tool, c.workload)]
        start = c.cpu * 1000 - m * N
        ref = marginal[("batchops", c.workload)] if ("batchops", c.workload) in marginal \
            else m
        runs = " / ".join(f"{x:.2f}" for x in c.cpus)
        qruns = " / ".join(f"{x:.2f}" for x in quarter[(c.tool, c.workload)].cpus)
        split.append(f"| {c.tool} | {c.workload} | **{c.cpu:.3f}**: {runs} | "
                     f"**{quarter[(c.tool, c.workload)].cpu:.3f}**: {qruns} | {start:,.0f} | "
                     f"{m:.3f} | {m / ref:.2f}× |")
    nan = float("nan")
    cross = marginal.get(("batchops", "copy to another bucket"), nan)
    inside = marginal.get(("batchops", "copy inside one bucket"), nan)
    tag = marginal.get(("batchops", "put-object-tagging"), nan)
    s5_copy = marginal.get(("s5cmd", "copy to another bucket"), nan)
    boto_tag = marginal.get(("boto3 ThreadPoolExecutor(32)", "put-object-tagging"), nan)

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    verdicts = "\n".join([
        f"- S3 copy to another bucket: {cross:.3f} ms marginal, {cross / s5_copy:.2f}× s5cmd's "
        f"{s5_copy:.3f} ms; target ≤ {GOAL_MS} ms and ≤ 0.5× s5cmd: "
        f"{verdict(cross <= GOAL_MS and cross <= 0.5 * s5_copy)}.",
        f"- S3 copy inside one bucket: {inside:.3f} ms marginal, {inside / s5_copy:.2f}× "
        f"s5cmd's copy; target ≤ {GOAL_MS} ms and ≤ 0.5× s5cmd: "
        f"{verdict(inside <= GOAL_MS and inside <= 0.5 * s5_copy)}.",
        f"- put-object-tagging: {tag:.3f} ms marginal, {tag / boto_tag:.2f}× the boto3 thread "
        f"pool's {boto_tag:.3f} ms; target ≤ {TAG_GOAL_MS} ms and ≤ ⅓ of boto3: "
        f"{verdict(tag <= TAG_GOAL_MS and tag <= boto_tag / 3)}."])
    left = sorted({f"{c.tool} ({c.workload})" for c in cases if c.orphans})
    orphans = (f"Left a process behind after exiting (reaped and counted): {', '.join(left)}."
               if left else "No client left a process behind after exiting.")
    peers = "\n".join(f"- {c.tool}, {c.workload}: `{command_text(c)}`" for c in full)
    versions = ", ".join(f"{p} {version(p)}" for p in ("batchops", "obstore", "awscrt",
                                                       "aiobotocore", "boto3", "moto",
                                                       "werkzeug"))
    s5 = subprocess.run([S5CMD, "version"], capture_output=True, text=True).stdout.strip() \
        if S5CMD else "absent"
    aws = subprocess.run([AWS, "--version"], capture_output=True, text=True).stdout.strip() \
        if AWS else "absent"
    REV = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,  # noqa: N806
                         capture_output=True, text=True).stdout.strip()
    RUN = ("BATCHOPS_BENCH_BASELINE_SRC=<checkout of "  # noqa: N806
           f"{Path(BASELINE_SRC).parent.name if BASELINE_SRC else ''}>/src "
           if BASELINE_SRC else "") + "python bench/s3_cpu.py"
    loads = ", ".join(f"{x:.2f}" for x in load)
    busy = (" (**the machine was busy**: wall times carry that noise; CPU per task is the "
            "steadier figure)") if max(load) > 1.5 else ""
    section = f"""{SECTION}

Reproduce: `{RUN}` (`BATCHOPS_BENCH_SCALE` scales N,
`BATCHOPS_BENCH_REPEAT` the rounds; `BATCHOPS_BENCH_BASELINE_SRC=<tree>/src` adds an
earlier build, extensions built in place, as rows `batchops @<rev>`).

Date: {time.strftime("%F %H:%M UTC", time.gmtime())}; commit {REV}; N = {N:,} objects of 1 KiB
(and N/4 = {Q:,} for the split); median of {REPEAT} rounds after an unmeasured warm-up round, tools
interleaved, order reversed every other round; machine: nproc {os.cpu_count()}, Python
{platform.python_version()}; {versions}; s5cmd {s5}; {aws}. Load average (1 min) at the
start, before each round and at the end: {loads}{busy}.

CPU = user+sys of the client's whole process tree (getrusage RUSAGE_CHILDREN around each
command{", with this script as child subreaper so left-behind helpers count" if reaper else ""}),
including process start; Python clients run with their bytecode cached, as a normal
install has it (`PYTHONPYCACHEPREFIX`, filled by the warm-up). Each run was checked: exit
code 0 (batchops: all tasks succeeded), the destination held exactly the expected keys
(emptied before each run) and a sample had 1,024 bytes; for tagging, a sample's tags were
cleared before and checked after. {orphans}

Server: moto's S3 app with HTTP/1.1 keep-alive (`bench/keepalive_s3.py`: moto's request
handler with `protocol_version = "HTTP/1.1"`, a Content-Length on every response, the
unread rest of each request body drained), one in-memory backend in one process
listening on many loopback ports; every measured run talks to a port no earlier run
used, so the server's count of the connections it accepted on that port and the
requests it served there are the run's own (the table gives them for each round); in
the warm-up round `ss -tn state established` was sampled every 20 ms and the distinct
client ports connected to the run's port counted. moto serves a few hundred requests/s
on this machine, so ops/s is moto's; CPU per task is what tells the clients apart.

Commands (PORT: a fresh port per run; s5cmd's `--numworkers` defaults to 256, no env
var; aws-cli v1's `s3.max_concurrent_requests` defaults to 10; environment for all:
`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_REGION=us-east-1`,
`BATCHOPS_HOME` a fresh temp dir):

{peers}

`tagger.py` is `boto3.client("s3", config=Config(max_pool_connections=32))` and
`ThreadPoolExecutor(32)` mapping `put_object_tagging` (or, given a target bucket,
`copy_object`) over the keys (the script embeds it). batchops copies to another bucket
(CopyObject) and tags through awscrt's signer and HTTP client on kept connections
(storage/s3api.py `CrtRequests`), and copies inside one bucket with obstore's
`copy_async`. aws-cli has
no batch form of put-object-tagging (`aws s3api put-object-tagging` is one process per
object), so it is measured on copies only.

{chr(10).join(table)}

Start cost vs per-task cost: marginal = (CPU(N) - CPU(N/4)) / (3N/4); start = CPU(N) -
N × marginal.

{chr(10).join(split)}

Targets (issue 15), from the marginal figures:

{verdicts}
"""
    path = write_section(SECTION, section)
    print("\n".join(table))
    print()
    print("\n".join(split))
    print(verdicts)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
