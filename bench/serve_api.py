"""`batchops serve` (issue 16): DescribeJob and ListJobs requests/s with 10,000 jobs in the
job store, and CreateJob's latency while 4 jobs run, each against a baseline in the same
run.

    python bench/serve_api.py [--seconds 10] [--creates 200]
    SERVE_BENCH_JOBS=1000 python bench/serve_api.py --seconds 3 --creates 40   # quick

1. A job store of SERVE_BENCH_JOBS (default 10,000) jobs: one real job made and run by the
   library, then its job.json written again under new ids (98% Complete, 2% Suspended,
   one account). `batchops serve --runners 4` on it (auth none, loopback).
2. One boto3 s3control client (unchanged, the server as its HTTP proxy), one request at a
   time for --seconds each: DescribeJob of random jobs; ListJobs pages of 50 (newest
   first); ListJobs filtered on Suspended (pages of 50 of the 2%).
   Baselines, same run:
   a. the same boto3 client, the same REST-XML protocol, against moto_server's s3control
      (moto has no jobs): GetAccessPoint of random access points and ListAccessPoints
      pages of 50, with SERVE_BENCH_JOBS access points;
   b. the job store read directly in this process, no HTTP: schedule/control.py's
      `describe` (what `batchops describe-job` does) and `list_jobs` (what `batchops
      list-jobs` does, reading every job file per call), same pages.
3. Four copy jobs made through the API and running (local files, 20,000 rows each, at
   most 100 tasks/s each), then --creates CreateJob requests one after another
   (ConfirmationRequired, so they wait: each is prepared in the background); latency
   p50/p99. Baseline, while the same 4 run: the library's `create_job` in this process
   (what `batchops create-job` does: it answers once the job is prepared).

Writes the section "## batchops serve: the s3control jobs API (issue 16)" of
bench/RESULTS.md (other sections are left alone) and prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import orjson

from local_copy import machine
from micro import commit
from ray_engine import write_results

SECTION = "## batchops serve: the s3control jobs API (issue 16)"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/batchops"
PAGE = 50
ROUNDS = 5  # turns of each request-rate figure, interleaved


def client(url: str) -> Any:
    return boto3.client("s3control", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench",
                        config=botocore.config.Config(proxies={"http": url},
                                                      retries={"max_attempts": 1}))


def rate(call: Callable[[], Any], seconds: float) -> tuple[float, int]:
    """(calls per second, calls) of `call` one after another for `seconds`."""
    call()  # warm: connections, caches
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        call()
        n += 1
    return n / elapsed, n


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- the job store --------------------------------------------------------------------------


def copy_job_request(root: Path, rows: int, files: int = 50, **extra: Any) -> dict[str, Any]:
    """CreateJob's request for a copy of `rows` rows over `files` local files."""
    src = root / f"src-{uuid.uuid4().hex[:8]}"
    src.mkdir(parents=True)
    for i in range(files):
        (src / f"f{i:03d}").write_bytes(b"x" * 256)
    m = root / f"m-{uuid.uuid4().hex[:8]}.csv"
    m.write_text("".join(f"file://{src},f{i % files:03d}\n" for i in range(rows)))
    request = {
        "AccountId": ACCOUNT, "RoleArn": ROLE, "Priority": 10,
        "ClientRequestToken": str(uuid.uuid4()), "ConfirmationRequired": False,
        "Operation": {"S3PutObjectCopy": {"TargetResource": f"file://{root / 'out'}"}},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                              "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": f"file://{m}",
                                  "ETag": hashlib.md5(m.read_bytes()).hexdigest()}},
        "Report": {"Enabled": False}}
    request.update(extra)
    return request


def fill_store(home: Path, root: Path, jobs: int) -> list[str]:
    """One real job run by the library, then `jobs` job.json files from it; their ids."""
    os.environ["BATCHOPS_HOME"] = str(home)
    from batchops.model.request import options_from_request
    from batchops.schedule.coordinator import run_job
    from batchops.schedule.create import create_job

    store = create_job(options_from_request(copy_job_request(root, 10)), str(home))
    run_job(store, in_process=True)
    doc = store.read()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for i in range(jobs):
        job_id = str(uuid.UUID(int=random.getrandbits(128)))
        job = dict(doc["Job"], JobId=job_id,
                   JobArn=f"arn:aws:s3:local:{ACCOUNT}:job/{job_id}",
                   CreationTime=(base + timedelta(seconds=i)).isoformat(
                       timespec="milliseconds").replace("+00:00", "Z"),
                   Description=f"bench job {i}")
        if i % 50 == 7:
            job.update(Status="Suspended", ConfirmationRequired=True,
                       SuspendedCause="AwaitingConfirmation")
            job.pop("TerminationDate", None)
        folder = home / "jobs" / job_id
        (folder / "chunks").mkdir(parents=True)
        (folder / "job.json").write_bytes(orjson.dumps(dict(doc, Job=job)))
        ids.append(job_id)
    return ids


def start_server(home: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "batchops", "serve", "--listen",
                             "127.0.0.1:0", *flags],
                            env={**os.environ, "BATCHOPS_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], 300)
    line = proc.stderr.readline() if ready else ""
    if "listening on " not in line:
        proc.kill()
        raise SystemExit(f"batchops serve did not start: {line}")
    return proc, line.split("listening on ")[1].split()[0]


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- the run --------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per request-rate figure")
    ap.add_argument("--creates", type=int, default=200, help="CreateJob requests timed")
    ap.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    args = ap.parse_args()
    jobs = int(os.environ.get("SERVE_BENCH_JOBS", "10000"))
    began = time.monotonic()
    load0 = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="batchops-serve-bench-"))
    home, root = work / "home", work / "data"
    procs: list[subprocess.Popen[Any]] = []
    try:
        t = time.perf_counter()
        ids = fill_store(home, root, jobs)
        fill_s = time.perf_counter() - t
        t = time.perf_counter()
        server, url = start_server(home, "--runners", "4", "--workers", "1",
                                   "--max-ops-per-second", "100")
        procs.append(server)
        start_s = time.perf_counter() - t
        c = client(url)
        suspended = sum(1 for i in range(jobs) if i % 50 == 7)
        assert len(c.list_jobs(AccountId=ACCOUNT, MaxResults=PAGE)["Jobs"]) == PAGE
        from batchops.results.stores import job_store
        from batchops.schedule.control import describe, list_jobs

        # Baseline a: moto_server's s3control, same client and protocol.
        moto, moto_url = start_moto()
        procs.append(moto)
        m = boto3.client("s3control", endpoint_url=moto_url, region_name="us-east-1",
                         aws_access_key_id="bench", aws_secret_access_key="bench",
                         config=botocore.config.Config(proxies={"http": moto_url},
                                                       retries={"max_attempts": 1}))
        t = time.perf_counter()
        names = [f"ap-{i:05d}" for i in range(jobs)]
        for name in names:
            m.create_access_point(AccountId=ACCOUNT, Name=name, Bucket="bench-bucket")
        moto_fill_s = time.perf_counter() - t
        # Baseline c: the CLI, one command per request (interpreter start included).
        env = {**os.environ, "BATCHOPS_HOME": str(home)}

        def cli(*argv: str) -> None:
            subprocess.run([sys.executable, "-m", "batchops", *argv], env=env, check=True,
                           stdout=subprocess.DEVNULL)

        calls: dict[str, Callable[[], Any]] = {
            "describe": lambda: c.describe_job(AccountId=ACCOUNT, JobId=random.choice(ids)),
            "moto_get": lambda: m.get_access_point(AccountId=ACCOUNT,
                                                   Name=random.choice(names)),
            "lib_describe": lambda: describe(job_store(random.choice(ids), str(home))),
            "cli_describe": lambda: cli("describe-job", "--job-id", random.choice(ids)),
            "list": lambda: c.list_jobs(AccountId=ACCOUNT, MaxResults=PAGE),
            "moto_list": lambda: m.list_access_points(AccountId=ACCOUNT, MaxResults=PAGE),
            "lib_list": lambda: list_jobs(str(home), max_results=PAGE),
            "cli_list": lambda: cli("list-jobs", "--max-results", str(PAGE)),
            "list_filtered": lambda: c.list_jobs(AccountId=ACCOUNT, MaxResults=PAGE,
                                                 JobStatuses=["Suspended"]),
            "lib_list_filtered": lambda: list_jobs(str(home), statuses=("Suspended",),
                                                   max_results=PAGE),
        }
        # Interleaved: every figure takes a turn in each round (the load of a busy
        # machine changes within minutes); each figure is the median of its rounds.
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(ROUNDS):
            for name, call in calls.items():
                samples[name].append(rate(call, args.seconds / ROUNDS)[0])
        figures = {name: statistics.median(v) for name, v in samples.items()}
        stop(moto)

        # CreateJob while 4 jobs run.
        running = [c.create_job(**copy_job_request(root, 20000))["JobId"] for _ in range(4)]
        deadline = time.monotonic() + 120
        while any(c.describe_job(AccountId=ACCOUNT, JobId=j)["Job"]["Status"] != "Active"
                  for j in running):
            if time.monotonic() > deadline:
                raise SystemExit("the 4 jobs did not all become Active in 120 s")
            time.sleep(0.2)
        requests = [copy_job_request(root, 100, ConfirmationRequired=True)
                    for _ in range(args.creates)]
        from batchops.model.request import options_from_request
        from batchops.schedule.create import create_job

        api_ms: list[float] = []
        lib_ms: list[float] = []
        for request in requests:  # in turn: one through the API, one by the library
            t = time.perf_counter()
            c.create_job(**request)
            api_ms.append((time.perf_counter() - t) * 1000)
            opts = options_from_request(copy_job_request(root, 100, ConfirmationRequired=True))
            t = time.perf_counter()
            create_job(opts, str(home))
            lib_ms.append((time.perf_counter() - t) * 1000)
        still = [c.describe_job(AccountId=ACCOUNT, JobId=j)["Job"]["Status"] for j in running]
        for j in running:
            c.update_job_status(AccountId=ACCOUNT, JobId=j, RequestedJobStatus="Cancelled")
        load1 = os.getloadavg()[0]
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if b else "–"

    f = figures
    busy = (f" **The machine was busy** (load above its {os.cpu_count()} cores: other work "
            "ran beside this benchmark): absolute figures carry that noise; the ratios, "
            "measured in the same run, less so." if max(load0, load1) > (os.cpu_count() or 1)
            else "")

    def row(*cells: str) -> str:
        return "| " + " | ".join(cells) + " |"

    def vs(mine: str, base: str, label: str, digits: int = 0) -> list[str]:
        return [f"{f[base]:,.{digits}f} ({label})", ratio(f[mine], f[base])]

    rates = "\n".join([
        row("requests/s", "batchops serve", "a. moto_server s3control (same client)", "ratio",
            "b. job store read in process, no HTTP", "ratio",
            "c. the CLI, a command a request", "ratio"),
        row(*["---"] * 8),
        row("DescribeJob (random job)", f"{f['describe']:,.0f}",
            *vs("describe", "moto_get", "GetAccessPoint"),
            *vs("describe", "lib_describe", "`describe`"),
            *vs("describe", "cli_describe", "`describe-job`", 1)),
        row(f"ListJobs, pages of {PAGE}", f"{f['list']:,.0f}",
            *vs("list", "moto_list", "ListAccessPoints"),
            *vs("list", "lib_list", "`list_jobs`", 1),
            *vs("list", "cli_list", "`list-jobs`", 1)),
        row("ListJobs, Suspended only", f"{f['list_filtered']:,.0f}", "–", "–",
            *vs("list_filtered", "lib_list_filtered", "`list_jobs`", 1), "–", "–")])

    def ms(values: list[float]) -> list[str]:
        return [f"{statistics.median(values):.1f}", f"{percentile(values, 99):.1f}",
                f"{max(values):.1f}"]

    latency = "\n".join([
        row("CreateJob latency, ms", "p50", "p99", "max"), row(*["---"] * 4),
        row("batchops serve (answers once job.json exists; prepares in the background)",
            *ms(api_ms)),
        row("library `create_job` in process (what `batchops create-job` does: answers "
            "once prepared)", *ms(lib_ms)),
        row("ratio serve / library", ratio(statistics.median(api_ms),
                                           statistics.median(lib_ms)),
            ratio(percentile(api_ms, 99), percentile(lib_ms, 99)), "")])
    command = "python bench/serve_api.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:]
                                             else "")
    if jobs != 10000:
        command = f"SERVE_BENCH_JOBS={jobs} {command}"
    section = f"""{SECTION}

Reproduce: `{command}`{"  "}
date: {datetime.now(UTC):%Y-%m-%d}; commit {commit()}; machine: {machine()}.
Load average (1 min) {load0:.2f} at the start, {load1:.2f} at the end; whole run
{(time.monotonic() - began) / 60:.1f} min.{busy} Job store: {jobs:,} jobs ({suspended:,}
Suspended, the rest Complete) written in {fill_s:.1f} s; the server read them into its
index at start ({start_s:.1f} s from the command to listening). One boto3 s3control client,
unchanged, one request at a time, the server as its HTTP proxy; {args.seconds:g} s a figure,
in {ROUNDS} turns interleaved with the others' (each figure the median of its turns).

{rates}

moto's {jobs:,} access points took {moto_fill_s:.1f} s to create (CreateAccessPoint, one
client). Baseline a is the same client and protocol against another Python REST-XML server
(moto has no jobs; its nearest calls of the same shape). Baseline b is what `batchops
describe-job` and `batchops list-jobs` do, without HTTP and without their interpreter
start: a floor for DescribeJob (the server does the same read, plus HTTP, SigV4-free
routing and botocore's parse in the client); `list_jobs` reads every job file on each call,
the server answers from its index (serve/index.py: only jobs not finished are looked at
again, by a stat). Baseline c is those commands as a script without the server would run
them.

CreateJob while 4 copy jobs run (20,000 rows each, at most 100 tasks/s each, started
through the API; still {', '.join(still)} at the end): {args.creates} requests one after
another, each a 100-row local manifest with ConfirmationRequired, in turn with as many
`create_job` calls of the library.

{latency}
"""
    print(section)
    if not args.no_results:
        write_results(section)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
