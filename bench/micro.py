"""Run the micro benchmarks (pytest-benchmark) and write their section of RESULTS.md.

    python bench/micro.py            # bench/test_micro*.py, every group
    python bench/micro.py -k loop    # only what matches (pytest's -k)

Each group holds batchops' path and its baseline, measured in the same run; the section
lists each group's medians and the ratio baseline / batchops (> 1: batchops is faster),
with the command, date and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Micro benchmarks"


def commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                       text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "ext"], cwd=HERE,
                           capture_output=True, text=True).stdout.strip()
    return (r.stdout.strip() or "?") + (" + uncommitted changes" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only the benchmarks matching (pytest -k)")
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               *sorted(str(p) for p in HERE.glob("test_micro*.py")), "--benchmark-enable",
               f"--benchmark-json={out}"] + (["-k", args.k] if args.k else [])
        proc = subprocess.run(cmd, cwd=HERE.parent)
        if proc.returncode != 0 or not out.exists():
            print("micro benchmarks failed", file=sys.stderr)
            return 1
        data = json.loads(out.read_text())
    groups: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"] or b["name"]].append((b["name"], b["stats"]["median"]))
    lines = ["| group | batchops | median | baseline | median | baseline / batchops |",
             "|---|---|---:|---|---:|---:|"]
    for group, entries in sorted(groups.items()):
        ours = [e for e in entries if "baseline" not in e[0]]
        base = [e for e in entries if "baseline" in e[0]]
        for name, median in ours:
            if base:
                bname, bmed = base[0]
                lines.append(f"| {group} | `{name}` | {median * 1e6:,.1f} µs | `{bname}` | "
                             f"{bmed * 1e6:,.1f} µs | {bmed / median:.2f}× |")
            else:
                lines.append(f"| {group} | `{name}` | {median * 1e6:,.1f} µs | | | |")
    command = "python bench/micro.py" + (f" -k {args.k}" if args.k else "")
    section = (f"{SECTION}\n\nReproduce: `{command}`  \ndate: {datetime.now(UTC):%Y-%m-%d}; "
               f"commit {commit()}; nproc {os.cpu_count()}, Python "
               f"{sys.version.split()[0]}; pytest-benchmark medians.\n\n" + "\n".join(lines))
    print(section)
    if not args.no_results:
        body = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
        pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
        body = (pattern.sub(section + "\n\n", body) if pattern.search(body)
                else body.rstrip("\n") + "\n\n" + section + "\n")
        RESULTS.write_text(body.rstrip("\n") + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
