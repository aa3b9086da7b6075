"""Local-copy benchmark: batchops vs rclone vs cp on many small files, side by side.

    python bench/local_copy.py                       # every case below, ~10-25 min
    python bench/local_copy.py --fs tmpfs --sizes 20000 --repeats 5

Cases: each size of `--sizes` (default 20,000: start-up-bound, and 200,000: steady
state) on each filesystem of `--fs` (default tmpfs = /dev/shm and ext4 = /tmp), files of
4 KiB in `<dir>/src/dNNNN/fNNNNNN.bin`, 100 per folder, and a CSV manifest `bucket,key`
(no header, keys URL-encoded, bucket `src`). In each case, on the same files, times:

  1. batchops run --manifest M --operation copy --target file:///T1
        --bucket-map src=file:///SRC --workers 2 --no-progress
  2. rclone copy SRC T2 --transfers 16 --checkers 16
  3. cp -r SRC T3
  4. the batchops command of 1. into T4 with BATCHOPS_BENCH_NO_SYNCFS=1 (for this
     measurement only: the syncfs(2) that makes each chunk's copies durable before its
     marker is skipped), so that the cost of durability is measured in the same run

Each run writes to a new, empty target folder, and `sync` is called before it so that
no previous run's writeback lands inside the measurement. Nothing is deleted until a
case's runs are done: on ext4, creating files right after deleting many makes the inode
allocator skip "recently deleted" inodes and runs 5-20x slower (seen with perf in
`recently_deleted`/`find_get_block_common`), which would swamp the comparison.
Nothing is dropped from the page cache, and the source tree is read once (untimed)
before anything is timed, so every tool starts from a warm cache. Each tool runs
`--repeats` times (default 3), interleaved; the best (minimum) wall time counts.
Wall time covers the whole command, process start included. CPU is user+sys of the whole
process tree, from getrusage(RUSAGE_CHILDREN) deltas around each run (batchops' worker
processes are waited for by batchops, so they are included). batchops' start-up is the
time from the command's start to the job's first chunk leased (`active` in its log):
interpreter, imports, creating and preparing the job.

After each run: exit code 0 and the target holds exactly the source's files; after
each batchops run ~200 random files are also compared byte for byte. A run that fails
either check is reported (in the output and RESULTS.md), not timed, and run again (at
most MAX_ATTEMPTS times). Worker deaths (`worker-died` in the job log) are counted.

This script installs nothing: a missing rclone is said, and its column is left out.
It writes the section "## Local copy (issue 2 / issue 5 workload 1)" of bench/RESULTS.md:
one block per case (its date, commit, load and table), and a summary table built from
the blocks (the latest run of each case; nothing in it is written by hand). Other
sections are left alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote_plus

BASE_FILES = 20_000
FILE_SIZE = 4096
PER_FOLDER = 100
SPOT_CHECKS = 200
SECTION = "## Local copy (issue 2 / issue 5 workload 1)"
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
RCLONE_FLAGS = ["--transfers", "16", "--checkers", "16"]
MAX_ATTEMPTS = 5  # per tool and repeat; failed attempts are reported, not timed


def n_files() -> int:
    scale = float(os.environ.get("BATCHOPS_BENCH_SCALE", "1.0"))
    return max(1, round(BASE_FILES * scale))


def batchops_exe() -> str:
    exe = Path(sys.executable).with_name("batchops")
    return str(exe) if exe.exists() else (shutil.which("batchops") or "batchops")


# -- data set ------------------------------------------------------------------------------


def make_source(root: Path, n: int) -> tuple[Path, Path, list[str]]:
    src = root / "src"
    src.mkdir(parents=True)
    rng = random.Random(42)
    keys = []
    for i in range(n):
        key = f"d{i // PER_FOLDER:04d}/f{i:06d}.bin"
        path = src / key
        if i % PER_FOLDER == 0:
            path.parent.mkdir()
        path.write_bytes(rng.randbytes(FILE_SIZE))
        keys.append(key)
    manifest = root / "manifest.csv"
    with open(manifest, "w", encoding="utf-8") as f:
        for key in keys:
            f.write(f"src,{quote_plus(key, safe='/')}\n")
    return src, manifest, keys


def warm(src: Path) -> int:
    """Read every source file once (untimed) so that all tools see a warm cache."""
    total = 0
    for dirpath, _, names in os.walk(src):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                total += len(f.read())
    return total


def listing(root: Path) -> set[str]:
    out = set()
    for dirpath, _, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in names:
            out.add(name if rel == "." else f"{rel}/{name}")
    return out


def verify(src: Path, dst: Path, keys: list[str], spot: bool, rng: random.Random) -> str:
    """'' when dst holds exactly the source's files (and the sample matches), else why."""
    if not dst.is_dir():
        return f"{dst} missing"
    have = listing(dst)
    if have != set(keys):
        missing, extra = len(set(keys) - have), len(have - set(keys))
        return f"{len(have)} files at target ({missing} missing, {extra} unexpected)"
    if spot:
        for key in rng.sample(keys, min(SPOT_CHECKS, len(keys))):
            if (src / key).read_bytes() != (dst / key).read_bytes():
                return f"{key} differs"
    return ""


# -- timing --------------------------------------------------------------------------------


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str], env: dict[str, str]
          ) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """(wall, CPU of the process tree, time.time() at the start, the finished process)."""
    cpu0 = children_cpu()
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return wall, children_cpu() - cpu0, started, proc


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def worker_deaths(home: Path, stderr: str) -> int:
    """'worker-died' events in the job log of the batchops run that printed `stderr`."""
    m = re.search(r"^job ([0-9a-f-]{36})", stderr, re.M)
    if not m:
        return 0
    try:
        log = (home / "jobs" / m.group(1) / "log").read_text(encoding="utf-8")
    except OSError:
        return 0
    return log.count('"event":"worker-died"')


def find_rclone() -> str | None:
    """rclone's path, or None (said on stderr): this script installs nothing."""
    exe = shutil.which("rclone")
    if exe is None:
        print("rclone is not on PATH: its column is left out (on Debian: apt-get install "
              "rclone)", file=sys.stderr)
    return exe


def startup_seconds(home: Path, stderr: str, started: float) -> float | None:
    """Seconds from the command's start (`started`, time.time()) to the job's first lease
    (`active` in the job log of the batchops run that printed `stderr`)."""
    import json
    from datetime import datetime

    m = re.search(r"^job ([0-9a-f-]{36})", stderr, re.M)
    if not m:
        return None
    try:
        lines = (home / "jobs" / m.group(1) / "log").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        event = json.loads(line)
        if event.get("event") == "active":
            when = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
            return when.timestamp() - started
    return None


# -- report --------------------------------------------------------------------------------


def machine() -> str:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return (f"nproc {nproc}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}" + (f", {cpu}" if cpu else ""))


def fs_type(path: Path) -> str:
    r = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True)
    lines = r.stdout.split()
    return lines[-1] if r.returncode == 0 and lines else "?"


#: Targets of issue 15, by (filesystem, steady state): (at least × rclone, at least × cp).
TARGETS = {("tmpfs", True): (5.0, 1.2), ("tmpfs", False): (4.0, 0.8),
           ("ext4", True): (3.0, 3.0), ("ext4", False): (3.0, 3.0)}
STEADY = 100_000  # files: at and above, a case is "steady state"; below, start-up-bound
FILESYSTEMS = {"tmpfs": "/dev/shm", "ext4": "/tmp"}
DATA = re.compile(r"^<!-- local-copy case: (\{.*\}) -->$", re.M)


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def summary(cases: list[dict]) -> str:
    """The summary table, from the cases' data (each block carries its own)."""
    rows = ["| case | batchops files/s | CPU µs/file | cores busy | start-up (s) | rclone "
            "files/s | cp files/s | × rclone (target) | × cp (target) | targets | run |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in sorted(cases, key=lambda c: (c["fs"], c["files"])):
        rate = c["rate"]
        t_rclone, t_cp = TARGETS.get((c["fs"], c["files"] >= STEADY), (0.0, 0.0))
        r_rclone = rate["batchops"] / rate["rclone"] if "rclone" in rate else None
        r_cp = rate["batchops"] / rate["cp"]
        met = (r_rclone is None or r_rclone >= t_rclone) and r_cp >= t_cp
        rows.append(
            f"| {c['fs']}, {c['files']:,} × {FILE_SIZE} B | {rate['batchops']:,.0f} | "
            f"{c['cpu_us']['batchops']:.1f} | {c['cores']['batchops']:.2f} | "
            f"{c['startup']:.2f} | "
            + (f"{rate['rclone']:,.0f}" if r_rclone is not None else "—") + " | "
            f"{rate['cp']:,.0f} | "
            + (f"{r_rclone:.2f}× (≥ {t_rclone:g}×)" if r_rclone is not None else "—")
            + f" | {r_cp:.2f}× (≥ {t_cp:g}×) | {'met' if met else '**not met**'} | "
            f"{c['date']} {c['commit']}, load {c['load']} |")
    return "\n".join(rows)


def write_section(preamble: str, blocks_new: dict[str, str], results: Path = RESULTS) -> None:
    """Write our section of RESULTS.md: the preamble, the summary built from every case's
    data, then one `###` block per case; the cases just run replace theirs, the others'
    blocks are kept (they carry their own date and commit); blocks without data (from
    before this format) are dropped. Other `##` sections are left alone."""
    body = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    m = pattern.search(body)
    blocks: dict[str, str] = {}
    if m:
        for part in re.split(r"^(?=### )", m.group(0), flags=re.M)[1:]:
            heading, _, rest = part.partition("\n")
            if DATA.search(rest):
                blocks[heading] = rest.strip("\n")
    blocks.update({h: b.strip("\n") for h, b in blocks_new.items()})
    import json

    cases = [json.loads(d) for b in blocks.values() for d in DATA.findall(b)]
    order = sorted(blocks, key=lambda h: [(c["fs"], c["files"]) for c in cases
                                          if c["heading"] == h] or [("~", 0)])
    section = "\n\n".join([SECTION, preamble.strip("\n"), "### Summary\n\nBuilt by the "
                           "script from the blocks below (the latest run of each case).\n\n"
                           + summary(cases)]
                          + [f"{h}\n\n{blocks[h]}" for h in order]) + "\n\n"
    if m:
        body = body[:m.start()] + section + body[m.end():]
    else:
        body = body.rstrip("\n") + "\n\n" + section
    results.write_text(body.rstrip("\n") + "\n", encoding="utf-8")


# -- one case --------------------------------------------------------------------------------


def installed_env(home: Path, pycache: Path) -> dict[str, str]:
    """The environment batchops runs in here: job home `home`, and bytecode cached (under
    `pycache`) as a normal install has it: PYTHONDONTWRITEBYTECODE would recompile an
    editable install at every start (~0.3 s)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(BATCHOPS_HOME=str(home), PYTHONPYCACHEPREFIX=str(pycache))
    return env


def run_case(root: Path, where: Path, n: int, repeats: int, rclone: str | None,
             keep_targets: bool, rng: random.Random) -> tuple[dict, str, str]:
    """Make the files under `root` (in folder `where`), time every tool; returns (data,
    block heading, block)."""
    import json

    print(f"making {n:,} files of {FILE_SIZE} B in {root}/src ...", file=sys.stderr)
    src, manifest, keys = make_source(root, n)
    home = root / "home"
    home.mkdir()
    env = installed_env(home, root.parent / "pycache")
    exe = batchops_exe()

    def command(tool: str, target: Path) -> list[str]:
        if tool.startswith("batchops"):
            return [exe, "run", "--manifest", str(manifest), "--operation", "copy",
                    "--target", f"file://{target}", "--bucket-map", f"src=file://{src}",
                    "--workers", "2", "--no-progress"]
        if tool == "rclone":
            assert rclone is not None
            return [rclone, "copy", str(src), str(target), *RCLONE_FLAGS]
        return ["cp", "-r", str(src), str(target)]

    # batchops-nosync right after batchops: the durability ratio compares neighbours.
    tools = {"batchops": "T1", "batchops-nosync": "T4", "rclone": "T2", "cp": "T3"}
    if rclone is None:
        del tools["rclone"]
    warm(src)
    # An untimed batchops run over ten rows fills the bytecode cache.
    small = root / "warmup.csv"
    small.write_text("".join(manifest.read_text().splitlines(keepends=True)[:10]))
    subprocess.run([exe, "run", "--manifest", str(small), "--operation", "copy", "--target",
                    f"file://{root / 'W'}", "--bucket-map", f"src=file://{src}",
                    "--no-progress"], env=env, capture_output=True, check=True)
    runs: dict[str, list[tuple[float, float]]] = {t: [] for t in tools}
    startups: list[float] = []
    failures: list[str] = []   # failed attempts (any tool), reported, never timed
    respawns: list[int] = []   # worker-died events in each successful batchops run
    loads = [load_average()]
    for rep in range(repeats):
        for tool in tools:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                target = root / f"{tools[tool]}-run{rep + 1}-{attempt}"  # new, empty
                cmd = command(tool, target)
                os.sync()
                wall, cpu, started, proc = timed(
                    cmd, dict(env, BATCHOPS_BENCH_NO_SYNCFS="1")
                    if tool == "batchops-nosync" else env)
                problem = "" if proc.returncode == 0 else (
                    f"exit {proc.returncode}: {last_line(proc.stderr or proc.stdout)}")
                if not problem:
                    problem = verify(src, target, keys, spot=tool.startswith("batchops"),
                                     rng=rng)
                died = worker_deaths(home, proc.stderr) if tool.startswith("batchops") else 0
                if not keep_targets:
                    shutil.rmtree(target, ignore_errors=True)
                if not problem:
                    break
                failures.append(f"{tool} run {rep + 1} attempt {attempt} ({wall:.2f} s, "
                                f"{died} worker deaths): {problem}")
                print("FAILED " + failures[-1], file=sys.stderr)
            else:
                sys.exit(f"{tool} failed {MAX_ATTEMPTS} times in a row: {' '.join(cmd)}")
            runs[tool].append((wall, cpu))
            if tool == "batchops":
                respawns.append(died)
                up = startup_seconds(home, proc.stderr, started)
                if up is not None:
                    startups.append(up)
            print(f"run {rep + 1} {tool:15s} {wall:7.3f} s wall, {cpu:7.3f} s cpu"
                  + (f", {died} worker deaths" if died else ""), file=sys.stderr)
        loads.append(load_average())

    floor = durable_floor(root, n) if fs_type(root) != "tmpfs" else None
    best = {t: min(r) for t, r in runs.items()}  # (wall, cpu of that run)
    rate = {t: n / best[t][0] for t in tools}
    rows = ["| tool | best wall (s) | files/s | CPU user+sys (s) | CPU µs/file | cores busy "
            "| all runs wall (s) |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for t in tools:
        wall, cpu = best[t]
        rows.append(f"| {t} | {wall:.3f} | {rate[t]:,.0f} | {cpu:.3f} | "
                    f"{cpu / n * 1e6:,.1f} | {cpu / wall:.2f} | "
                    + ", ".join(f"{w:.3f}" for w, _ in runs[t]) + " |")
    ratios = [f"batchops/cp throughput: **{rate['batchops'] / rate['cp']:.2f}×**"]
    if "rclone" in rate:
        ratios.insert(0, "batchops/rclone throughput: "
                         f"**{rate['batchops'] / rate['rclone']:.2f}×**")
    text = ("; ".join(ratios) + " (>1 means batchops is faster). Durability (a syncfs of "
            "the target before each chunk's marker) costs "
            f"**{best['batchops'][0] / best['batchops-nosync'][0]:.2f}×** wall (batchops / "
            "batchops-nosync, BATCHOPS_BENCH_NO_SYNCFS=1). batchops start-up (command start "
            "to the first chunk leased), best run: "
            + (f"**{min(startups):.3f} s**" if startups else "not found in the log") + ".")
    if floor is not None:
        mb_s, seconds = floor
        text += (f" The disk under this folder writes {mb_s:,.0f} MB/s (256 MiB written "
                 f"sequentially, then fsync, measured after the runs): the files' data "
                 f"alone, {n:,} × {FILE_SIZE} B, needs at least **{seconds:.3f} s** to be "
                 f"durable, and batchops' durable copy took "
                 f"{best['batchops'][0] / seconds:.2f}× that; rclone and cp return before "
                 "their data is on the disk.")
    notes = []
    if rclone is None:
        notes.append("rclone was not on PATH: no rclone column.")
    if failures:
        notes.append(f"**{len(failures)} failed attempt(s)** (not timed; the run was "
                     "repeated):")
        notes += [f"  - {f}" for f in failures]
    if any(respawns):
        notes.append(f"Worker deaths (`worker-died` in the job log) in the timed batchops "
                     f"runs: {', '.join(map(str, respawns))}.")
    table = "\n".join(rows)
    print(table + "\n\n" + text + ("\n\n" + "\n".join(notes) if notes else ""))
    fs = fs_type(root)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "ext"], cwd=HERE,
                           capture_output=True, text=True).stdout.strip()
    rev += " + uncommitted changes" if dirty else ""
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    heading = f"### {fs} ({where}), {n:,} files"
    data = {"heading": heading, "fs": fs, "files": n, "date": date, "commit": rev,
            "load": loads[0], "rate": {t: round(r) for t, r in rate.items()},
            "cpu_us": {t: round(best[t][1] / n * 1e6, 1) for t in tools},
            "cores": {t: round(best[t][1] / best[t][0], 2) for t in tools},
            "startup": round(min(startups), 3) if startups else float("nan"),
            "durable_floor_s": round(floor[1], 3) if floor else None}
    block = (f"- date: {date}; commit {rev}; {n:,} files; best of {repeats}; machine: "
             f"{machine()}; load average (1 / 5 / 15 min) before each round: "
             f"{'; '.join(loads)}\n\n{table}\n\n{text}\n"
             + ("\n" + "\n".join(notes) + "\n" if notes else "")
             + f"\n<!-- local-copy case: {json.dumps(data, ensure_ascii=False)} -->")
    return data, heading, block


def durable_floor(root: Path, n: int) -> tuple[float, float]:
    """(MB/s, seconds): how fast the disk under `root` makes data durable (256 MiB
    written in 1 MiB blocks, then fsync), and so the least time `n` files' data can take
    to be on the disk, as batchops' copy has it before each chunk's marker."""
    block, blocks = b"\xa5" * 2**20, 256
    path = root / "durable-floor.bin"
    os.sync()
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(blocks):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    mb_s = blocks * len(block) / 1e6 / (time.perf_counter() - start)
    path.unlink()
    return mb_s, n * FILE_SIZE / 1e6 / mb_s


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fs", nargs="*", default=list(FILESYSTEMS), choices=list(FILESYSTEMS),
                    help="filesystems: tmpfs (/dev/shm), ext4 (/tmp); default both")
    ap.add_argument("--dir", help="one work folder instead (its filesystem is one case)")
    ap.add_argument("--sizes", nargs="*", type=int, default=[BASE_FILES, 10 * BASE_FILES],
                    help="files per case (default 20000 200000; scaled by "
                         "BATCHOPS_BENCH_SCALE)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the work folders")
    ap.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    ap.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = ap.parse_args()

    scale = float(os.environ.get("BATCHOPS_BENCH_SCALE", "1.0"))
    sizes = [max(1, round(s * scale)) for s in args.sizes]
    dirs = [args.dir] if args.dir else [FILESYSTEMS[f] for f in args.fs]
    rclone = find_rclone()
    rng = random.Random(7)
    shown = {
        "batchops": "batchops run --manifest M --operation copy --target file:///T1 "
                    "--bucket-map src=file:///SRC --workers 2 --no-progress",
        "rclone": "rclone copy SRC T2 " + " ".join(RCLONE_FLAGS),
        "cp": "cp -r SRC T3",
        "batchops-nosync": "BATCHOPS_BENCH_NO_SYNCFS=1 batchops run ... (as above) into "
                           "file:///T4",
    }
    rclone_ver = subprocess.run([rclone, "version"], capture_output=True, text=True
                                ).stdout.split("\n", 1)[0] if rclone else "no rclone"
    preamble = f"""Reproduce: `python bench/local_copy.py` (every case: tmpfs and ext4, 20,000
and 200,000 files; `--fs tmpfs`, `--sizes 20000`, `--repeats N` for fewer or more).

Workload: files of {FILE_SIZE} B, {PER_FOLDER} per folder, CSV manifest `bucket,key`, local
folder to local folder, `--workers 2` on this 2-core machine. Source read once before timing
(warm cache); a new empty target folder and `sync` before each run; best of N interleaved
runs; wall time of the whole command including process start; CPU = user+sys of the
process tree (getrusage RUSAGE_CHILDREN); cores busy = CPU / wall. Every timed run exited 0
and its target held exactly the source's files; after each batchops run
{SPOT_CHECKS} random files were compared byte for byte. The load average in each block
is the machine's: other work running beside the benchmark shows there.

Caveat (ext4): after many files were deleted on the same filesystem (by anyone), ext4's
inode allocator spends most of the time in `recently_deleted`/`find_inode_bit` (seen
with perf); then every tool's file creation gets 3-20x slower and the comparison
measures the kernel, not the tools. tmpfs has no such state.

Peer commands ({rclone_ver}, GNU cp):

```
{shown['batchops']}
{shown['rclone']}
{shown['cp']}
{shown['batchops-nosync']}
```"""
    for d in dirs:
        base = Path(d).resolve()
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="batchops-local-copy-", dir=base))
        # On tmpfs every target is removed after its run (memory); elsewhere nothing is
        # deleted until the filesystem's cases are done (see the docstring: ext4).
        keep_targets = fs_type(work) != "tmpfs"
        try:
            for n in sizes:
                _, heading, block = run_case(work / f"n{n}", base, n, args.repeats,
                                             rclone, keep_targets, rng)
                if not args.no_results:  # each case as soon as it is measured
                    write_section(preamble, {heading: block}, args.results)
                    print(f"\nwrote {args.results}", file=sys.stderr)
        finally:
            if args.keep:
                print(f"kept {work}", file=sys.stderr)
            else:  # (rm: several times faster than shutil.rmtree on millions of files)
                subprocess.run(["rm", "-rf", "--", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
