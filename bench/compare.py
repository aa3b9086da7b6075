"""The macro benchmark suite (issue 5): every workload for batchops and, where there is
one, its peer or baseline, in one run; prints a table and writes bench/RESULTS.md.

    python bench/compare.py                 # full sizes
    BATCHOPS_BENCH_SCALE=0.1 python bench/compare.py   # quick run

Workloads here: 3 runner ceiling (noop in its per-task mode, every task through the
per-task loop, 2 workers; beside it plain noop, whose chunks succeed whole without the
loop: the chunk ceiling), 4 memory-store copy (in-process, against plain loops over
obstore on the same objects: sync `obs.copy`, and `copy_async` on uvloop), 5 preparing
pass (10M-row CSV, against Python's csv module on the first 1M rows), 6 memory growth
(peak RSS of the process tree, 1M vs 10M rows), 7 resume (10M-task noop killed at 90%;
BATCHOPS_BENCH_RESUME_ROWS=100000000 for 100M). Workloads 1 and
2 are bench/local_copy.py and bench/s3_cpu.py, which this script runs too (--only to
pick).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

try:
    import psutil
except ImportError:  # the bench extra: nothing here installs anything
    sys.exit("bench/compare.py needs psutil: pip install -e '.[bench]'")

HERE = Path(__file__).resolve().parent
SCALE = float(os.environ.get("BATCHOPS_BENCH_SCALE", "1"))
BATCHOPS = [sys.executable, "-m", "batchops"]


def n(x: int) -> int:
    return max(1000, int(x * SCALE))


def write_manifest(path: Path, rows: int) -> Path:
    with path.open("w") as f:
        block = []
        for i in range(rows):
            block.append(f"bench-bucket,data/{i % 1000:03d}/object-{i:010d}.bin\n")
            if len(block) == 100_000:
                f.writelines(block)
                block.clear()
        f.writelines(block)
    return path


class PeakRss:
    """Peak total RSS of a process and all its descendants, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs
                                               if p.is_running()))
            except psutil.Error:
                pass
            self._stop.wait(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_batchops(home: Path, *args: str) -> tuple[float, int, subprocess.CompletedProcess]:
    env = dict(os.environ, BATCHOPS_HOME=str(home))
    start = time.perf_counter()
    proc = subprocess.Popen([*BATCHOPS, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    rss = PeakRss(proc.pid)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    peak = rss.stop()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if proc.returncode != 0:
        raise SystemExit(f"batchops {' '.join(args)} failed: {err}")
    return elapsed, peak, done


#: A source tree of an earlier batchops (its `src/`, extensions built in place): the
#: runner and preparing figures are then measured for it too, in the same run.
BASELINE_SRC = os.environ.get("BATCHOPS_BENCH_BASELINE_SRC", "")


def _baseline_rev() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BASELINE_SRC,
                          capture_output=True, text=True).stdout.strip() or "baseline"


PER_TASK_NOOP = '{"BatchopsNoop": {"PerTask": true}}'


def runner_ceiling(work: Path) -> list[tuple]:
    """noop over 10M rows, 2 workers: per-task (every task through execute/loop.py's
    per-task loop: the runner ceiling) and whole-chunk (no per-task loop: the chunk
    ceiling). Rate over the whole command, and over the tasks phase alone (the job log's
    `active` to `complete`: without interpreter start, imports and the preparing pass)."""
    rows = n(10_000_000)
    m = write_manifest(work / "noop.csv", rows)
    out = []
    for label, op, target in (
            ("3 runner ceiling (per-task loop)", PER_TASK_NOOP, "target ≥ 1M/s"),
            ("3 chunk ceiling (whole chunks, no per-task loop)", "noop", "")):
        args = ("run", "--manifest", str(m), "--operation", op, "--workers", "2",
                "--no-progress")
        home = work / f"h-noop-{len(out)}"
        cpu = _children_cpu()
        elapsed, _, _ = run_batchops(home, *args)
        cpu = _children_cpu() - cpu  # the command and its workers (it waits for them)
        tasks = _active_seconds(home)
        if target:  # the verdict, for the tasks phase (the runner) and the whole command
            target += "".join(f"; {what} {'met' if rows / t >= 1e6 else '**not met**'}"
                              for what, t in (("tasks phase", tasks), ("whole command", elapsed)))
        out.append((label, f"noop{' PerTask' if op != 'noop' else ''}, {rows:,} tasks, "
                    "2 workers", "batchops", f"{rows / elapsed:,.0f} tasks/s",
                    f"{elapsed:.2f} s wall (whole command); tasks phase {tasks:.2f} s = "
                    f"{rows / tasks:,.0f} tasks/s; CPU {cpu / rows * 1e6:.2f} µs/task "
                    f"({cpu / elapsed:.2f} cores busy)", target))
        if BASELINE_SRC:  # the earlier build, same command, same manifest
            env = dict(os.environ, BATCHOPS_HOME=str(home) + "-old", PYTHONPATH=BASELINE_SRC)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "batchops", *args], env=env, check=True,
                           capture_output=True)
            old = time.perf_counter() - start
            out.append((label, f"noop, {rows:,} tasks, 2 workers",
                        f"batchops @{_baseline_rev()}", f"{rows / old:,.0f} tasks/s",
                        f"{old:.2f} s wall; batchops is {old / elapsed:.2f}× its speed", ""))
    return out


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def memory_copy(work: Path) -> list[tuple]:
    """A copy inside one memory:// store, N objects, all in this process: batchops
    (in-process: a memory store lives in one process, so its job has one worker) against
    plain loops over the same N objects with the same obstore calls: (a) sync `obs.copy`
    in a for loop, (b) `copy_async` on uvloop, 64 in flight. Rates from wall time; CPU
    per task from getrusage of this process."""
    import obstore as obs
    import uvloop
    from obstore.store import MemoryStore

    from batchops import JobOptions, create_job, run_job

    rows = n(200_000)
    store = MemoryStore()
    keys = [f"data/{i % 1000:03d}/object-{i:010d}.bin" for i in range(rows)]
    for k in keys:
        obs.put(store, k, b"x" * 64)
    m = work / "mem.csv"
    with m.open("w") as f:
        f.writelines(f"memory://,{k}\n" for k in keys)
    os.environ["BATCHOPS_HOME"] = str(work / "h-mem")
    job = create_job(JobOptions(manifest=str(m), operation="copy",
                                params={"TargetResource": "memory://",
                                        "TargetKeyPrefix": "copies"}))
    cpu, start = _cpu(), time.perf_counter()
    run_job(job, in_process=True, preset_stores={"memory://": store})
    ours, ours_cpu = rows / (time.perf_counter() - start), (_cpu() - cpu) / rows

    cpu, start = _cpu(), time.perf_counter()
    for k in keys:
        obs.copy(store, k, "plain/" + k)
    plain, plain_cpu = rows / (time.perf_counter() - start), (_cpu() - cpu) / rows

    async def on_uvloop() -> None:
        sem = asyncio.Semaphore(64)

        async def one(k: str) -> None:
            async with sem:
                await obs.copy_async(store, k, "async/" + k)

        await asyncio.gather(*(one(k) for k in keys))

    cpu, start = _cpu(), time.perf_counter()
    uvloop.run(on_uvloop())
    aio, aio_cpu = rows / (time.perf_counter() - start), (_cpu() - cpu) / rows
    size = f"{rows:,} objects, one process"
    return [("4 memory-store copy", size, "batchops (in-process, 1 worker)",
             f"{ours:,.0f} tasks/s", f"{ours_cpu * 1e6:.2f} µs CPU/task; "
             f"{ours / plain:.2f}× (a), {ours / aio:.1f}× (b)",
             "target ≥ 3× (a) with 2 workers"),
            ("4 memory-store copy", size, "(a) plain sync loop: for k: obs.copy",
             f"{plain:,.0f} tasks/s", f"{plain_cpu * 1e6:.2f} µs CPU/task; 1.0×", ""),
            ("4 memory-store copy", size, "(b) plain copy_async on uvloop, 64 in flight",
             f"{aio:,.0f} tasks/s", f"{aio_cpu * 1e6:.2f} µs CPU/task", "")]


def preparing(work: Path) -> list[tuple]:
    from batchops.manifest.reader import prepare

    rows = n(10_000_000)
    m = work / "noop.csv"
    if not m.exists() or sum(1 for _ in m.open()) != rows:
        write_manifest(m, rows)
    best = min(_timed(lambda: prepare(str(m), str(m), str(work))) for _ in range(3))
    sample = min(rows, 1_000_000)

    def csv_module() -> None:
        with m.open(newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                if i >= sample:
                    break
                if not row[0] or not row[1]:
                    raise ValueError(i)

    base = sample / _timed(csv_module)
    out = [("5 preparing pass", f"{rows:,}-row CSV", "batchops (Polars)",
            f"{rows / best:,.0f} rows/s", f"{rows / best / base:.1f}× csv module",
            "target ≥ 10M/s"),
           ("5 preparing pass", f"first {sample:,} rows", "Python csv module",
            f"{base:,.0f} rows/s", "1.0×", "")]
    if BASELINE_SRC:  # the earlier build's preparing pass, best of 3 in a process of its own
        code = ("import sys, time\nfrom batchops.manifest import prepare\nbest = 9e9\n"
                "for _ in range(3):\n    t = time.perf_counter()\n"
                "    prepare(sys.argv[1], sys.argv[1], sys.argv[2])\n"
                "    best = min(best, time.perf_counter() - t)\nprint(best)\n")
        (work / "old").mkdir(exist_ok=True)
        old = float(subprocess.run(
            [sys.executable, "-c", code, str(m), str(work / "old")], check=True, text=True,
            capture_output=True, env=dict(os.environ, PYTHONPATH=BASELINE_SRC)).stdout)
        out.append(("5 preparing pass", f"{rows:,}-row CSV", f"batchops @{_baseline_rev()}",
                    f"{rows / old:,.0f} rows/s",
                    f"batchops is {old / best:.2f}× its speed (it copies and indexes the "
                    "manifest too)", ""))
    return out


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def memory_growth(work: Path) -> list[tuple]:
    small, big = n(1_000_000), n(10_000_000)
    out = []
    peaks = {}
    for rows in (small, big):
        m = write_manifest(work / f"rss-{rows}.csv", rows)
        _, peak, _ = run_batchops(work / f"h-rss-{rows}", "run", "--manifest", str(m),
                                  "--operation", "noop", "--workers", "2", "--no-progress")
        peaks[rows] = peak
        out.append(("6 memory growth", f"noop, {rows:,} rows", "batchops",
                    f"{peak / 2**20:,.0f} MiB peak RSS (tree)", "", ""))
    out[-1] = (*out[-1][:4], f"{peaks[big] / peaks[small]:.2f}× the {small:,}-row peak",
               "target ≤ 1.3× and ≤ 1 GiB")
    return out


def resume(work: Path) -> list[tuple]:
    """A noop job killed at 90%, then `resume`: seconds until it leases its first new chunk
    (the "active" log event) and until that chunk is done, end to end from the command.
    Beside it, in the same run, what the resume did before its first task until the job
    kept its own indexed copy of the manifest: digest the whole manifest, then parse it
    from row 0 up to the first chunk not done (timed here in-process, so without the
    process start both pay). Rows: BATCHOPS_BENCH_RESUME_ROWS (default 10M x scale)."""
    import json
    from dataclasses import replace

    from batchops.manifest.reader import ChunkReader, ManifestInfo, file_digest, iter_chunks

    rows = int(os.environ.get("BATCHOPS_BENCH_RESUME_ROWS") or n(10_000_000))
    m = work / f"resume-{rows}.csv"
    if not m.exists():
        write_manifest(m, rows)
    home = work / "h-resume"
    env = dict(os.environ, BATCHOPS_HOME=str(home))
    proc = subprocess.Popen([*BATCHOPS, "run", "--manifest", str(m), "--operation", "noop",
                             "--workers", "2", "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while not (home / "jobs").exists() or not any((home / "jobs").iterdir()):
        time.sleep(0.01)
    job_dir = next((home / "jobs").iterdir())
    while True:  # the chunk size is known once the job is prepared
        try:
            settings = json.loads((job_dir / "job.json").read_text())["Batchops"]
        except (OSError, ValueError):
            settings = {}
        if settings.get("manifest"):
            break
        time.sleep(0.05)
    size = int(settings["chunk_size"])
    chunks = -(-rows // size)
    while len(os.listdir(job_dir / "chunks")) < 0.9 * chunks:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = set(os.listdir(job_dir / "chunks"))
    done = {int(name.split(".")[0]) for name in before}
    first_undone = min(set(range(chunks)) - done)

    started = datetime.now(UTC)
    start = time.perf_counter()
    resumed = subprocess.Popen([*BATCHOPS, "resume", job_dir.name, "--no-progress"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while resumed.poll() is None:
        if first is None and set(os.listdir(job_dir / "chunks")) - before:
            first = time.perf_counter() - start
        time.sleep(0.002)
    total = time.perf_counter() - start
    first = first if first is not None else total
    events = [json.loads(line) for line in (job_dir / "log").read_text().splitlines()]
    active = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in events
              if e["event"] == "active"][-1]  # the resumed run's: its first lease follows
    leasing = (active - started).total_seconds()

    import polars  # noqa: F401 - imported by both, outside the timings

    info = ManifestInfo.from_json(settings["manifest"])
    t = time.perf_counter()  # today: the index, then the first chunk not done, alone
    with ChunkReader(info, size) as reader:
        reader.read(first_undone)
    new = time.perf_counter() - t
    t = time.perf_counter()  # before: digest the manifest, then stream it from row 0
    file_digest(str(m))
    legacy = replace(info, path=str(m), rows_index="", row_stride=0)
    next(iter(iter_chunks(legacy, size, lambda i: i >= first_undone)))
    old = time.perf_counter() - t
    return [("7 resume", f"noop, {rows:,} tasks killed at {len(before) / chunks:.0%}",
             "batchops", f"leasing after {leasing:.2f} s; first new chunk done after "
             f"{first:.2f} s", f"complete after {total:.2f} s", "target first task ≤ 10 s"),
            ("7 resume", f"reading chunk {first_undone:,} of {chunks:,} ({rows:,} rows)",
             "batchops (indexed copy)", f"{new:.3f} s", f"{old / new:,.0f}× faster", ""),
            ("7 resume", f"reading chunk {first_undone:,} of {chunks:,} ({rows:,} rows)",
             "before: digest + parse from row 0", f"{old:.2f} s", "1.0×", "")]


def _active_seconds(home: Path) -> float:
    """Seconds between the job's "active" and "complete" log events."""
    import json

    job_dir = next((home / "jobs").iterdir())
    events = {e["event"]: e["time"] for e in map(json.loads,
                                                 (job_dir / "log").read_text().splitlines())}
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return (parse(events["complete"]) - parse(events["active"])).total_seconds()


def rate_limits(work: Path) -> list[tuple]:
    """--max-ops-per-second and --max-bytes-per-second: achieved rate vs the limit."""
    src = work / "rl-src"
    files, size = max(500, n(3000)), 64 * 1024
    for i in range(files):
        p = src / f"d{i % 20:02d}" / f"f{i:05d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"r" * size)
    m = work / "rl.csv"
    m.write_text("".join(f"src,d{i % 20:02d}/f{i:05d}\n" for i in range(files)))
    out = []
    for flag, limit, unit, per_task in (("--max-ops-per-second", 1000.0, "tasks/s", 1),
                                        ("--max-bytes-per-second", 20e6, "bytes/s", size)):
        home = work / f"h-rl-{flag}"
        run_batchops(home, "run", "--manifest", str(m), "--operation", "copy", "--target",
                     f"file://{work}/rl-out-{flag}", "--bucket-map", f"src=file://{src}",
                     flag, str(limit), "--workers", "2", "--no-progress")
        achieved = files * per_task / _active_seconds(home)
        out.append(("rate limit", f"{files:,} local copies, {flag} {limit:,.0f}", "batchops",
                     f"{achieved:,.0f} {unit}", f"{achieved / limit:.1%} of the limit",
                     "target within 10%"))
    return out


def peer_scripts(only: set[str]) -> None:
    for name in ("local_copy.py", "s3_cpu.py"):
        if (HERE / name).exists() and (not only or name.split(".")[0] in only):
            print(f"== {name}", flush=True)
            subprocess.run([sys.executable, str(HERE / name)], check=False)


WORKLOADS = {"runner": runner_ceiling, "memory": memory_copy, "prepare": preparing,
             "rss": memory_growth, "resume": resume, "ratelimit": rate_limits}


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                          capture_output=True, text=True).stdout.strip() or "?"


def write_results(rows: list[tuple], command: str) -> str:
    """Replace the rows of the workloads just measured (by workload number: "3", "4",
    ...); keep the others' rows, each with the date, commit and command of its own run."""
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    measured = {str(r[0]).split()[0] for r in rows}
    kept = []
    old = re.search(r"## Macro suite \(issue 5 workloads 3–7\)\n.*?(?=\n## |\Z)", text, re.S)
    if old:
        for line in old.group(0).splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            # (rows without the run column are from before it: stale, dropped)
            if line.startswith("| ") and len(cells) == 7 and cells[0] != "workload" \
                    and cells[0].split()[0] not in measured:
                kept.append(line)
    run = f"{datetime.now(UTC).date()} {_commit()} `{command}`"
    table = ["| workload | size | tool | figure | comparison | target | run (date, commit, "
             "command) |", "|---|---|---|---:|---|---|---|"]
    table += kept + ["| " + " | ".join(str(c) for c in (*r, run)) + " |" for r in rows]
    section = (f"## Macro suite (issue 5 workloads 3–7)\n\nReproduce: `python "
               f"bench/compare.py` (every workload; `--only NAME ...` for some: "
               f"{', '.join(WORKLOADS)}); each row names the run it comes from. Last run: "
               f"`{command}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}; "
               f"scale {SCALE}; machine: nproc {os.cpu_count()}, Python "
               f"{sys.version.split()[0]}; load average {_load()} at the end\n\n"
               + "\n".join(table) + "\n")
    pattern = re.compile(r"## Macro suite \(issue 5 workloads 3–7\)\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n"), text) if pattern.search(text) \
        else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    return "\n".join(table)


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[],
                        help=f"workloads: {', '.join(WORKLOADS)}, local_copy, s3_cpu")
    parser.add_argument("--no-results", action="store_true")
    args = parser.parse_args()
    only = set(args.only)
    work = Path(tempfile.mkdtemp(prefix="batchops-bench-"))
    rows: list[tuple] = []
    try:
        for name, fn in WORKLOADS.items():
            if not only or name in only:
                print(f"== {name}", flush=True)
                rows += fn(work)
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = ("BATCHOPS_BENCH_BASELINE_SRC=<earlier checkout>/src " if BASELINE_SRC else "") \
        + "python bench/compare.py" + (f" --only {' '.join(args.only)}" if only else "")
    if rows:
        table = write_results(rows, command) if not args.no_results else ""
        print(table or "\n".join(map(str, rows)))
    peer_scripts(only)


if __name__ == "__main__":
    main()
