"""`batchops bench`: start the workers (fresh interpreters, as a job's), show their
progress live, merge their results.

The workers get the spec as JSON on stdin, AWS settings included (names only: a
profile, a region, an endpoint; never keys). This process's own CPU time while the
workers measure (from the first worker's start of measuring to the last one's end) is
part of the client CPU reported: it reads the workers' pipes and draws the live
display.
"""

from __future__ import annotations

import resource
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from batchops.bench.report import merge
from batchops.bench.spec import BenchSpec
from batchops.model.errors import BatchopsError

Progress = Callable[[dict[str, Any]], None]


class BenchError(BatchopsError):
    """A benchmark worker could not run (the store refused it, say)."""

    exit_code = 3


def run_bench(spec: BenchSpec, on_progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; return its summary document (report.merge). An S3 store is
    checked first (credentials, endpoint, bucket): bad input is one sentence, exit 2."""
    from batchops.storage.locations import Resolver, is_s3, split_location

    loc = split_location(spec.url)
    if is_s3(loc):
        from batchops.storage.preflight import preflight

        preflight(Resolver(aws=spec.aws), [loc], {loc: "bench URL"})
    procs = []
    for index in range(spec.workers):
        proc = subprocess.Popen([sys.executable, "-P", "-m", "batchops.bench.run"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(orjson.dumps({"spec": spec.to_json(), "index": index}))
        proc.stdin.close()
        procs.append(proc)
    results: list[dict[str, Any]] = []
    failure: str | None = None
    ticks: dict[int, dict[str, Any]] = {}
    started = time.monotonic()
    sel = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {}
    for i, proc in enumerate(procs):
        assert proc.stdout is not None
        sel.register(proc.stdout, selectors.EVENT_READ, i)
        buffers[i] = b""
    open_pipes = len(procs)
    # This process's CPU over the measured window: rusage at the first worker's
    # "measuring" and at the last one's "measured".
    cpu_marks: list[resource.struct_rusage] = []
    measured = 0
    try:
        while open_pipes:
            for key, _ in sel.select(timeout=1.0):
                i = key.data
                chunk = key.fileobj.read1(65536)  # type: ignore[union-attr]
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                buffers[i] += chunk
                *lines, buffers[i] = buffers[i].split(b"\n")
                for line in lines:
                    doc = orjson.loads(line)
                    if "tick" in doc:
                        ticks[i] = doc["tick"]
                        if on_progress:
                            on_progress(_progress(spec, ticks, started))
                    elif "phase" in doc:
                        if doc["phase"] == "measuring" and not cpu_marks:
                            cpu_marks.append(resource.getrusage(resource.RUSAGE_SELF))
                        elif doc["phase"] == "measured":
                            measured += 1
                            if measured == len(procs):
                                cpu_marks.append(resource.getrusage(resource.RUSAGE_SELF))
                        if on_progress and i == 0:
                            on_progress({"phase": doc["phase"]})
                    elif "result" in doc:
                        results.append(doc["result"])
                    elif "error" in doc:
                        failure = failure or str(doc["error"])
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    finally:
        sel.close()
    for proc in procs:
        proc.wait()
        if proc.returncode and failure is None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            failure = (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    if failure is not None or len(results) != len(procs):
        raise BenchError(f"bench {spec.url}: a worker failed: {failure or 'no result'}")
    driver = {"user": 0.0, "sys": 0.0}
    if len(cpu_marks) == 2:
        before, after = cpu_marks
        driver = {"user": after.ru_utime - before.ru_utime,
                  "sys": after.ru_stime - before.ru_stime}
    return merge(spec.to_json(), results, driver)


def _progress(spec: BenchSpec, ticks: dict[int, dict[str, Any]],
              started: float) -> dict[str, Any]:
    second = max(t["second"] for t in ticks.values())
    ops = sum(sum(t["ops"].values()) for t in ticks.values())
    nbytes = sum(t["bytes"] for t in ticks.values())
    return {"second": second, "ops": ops, "ops_per_s": ops / max(second, 1),
            "mib_per_s": nbytes / max(second, 1) / 1024 / 1024,
            "errors": sum(t["errors"] for t in ticks.values()),
            "p50_ms": max(t.get("p50_ms", 0.0) for t in ticks.values()),
            "p99_ms": max(t.get("p99_ms", 0.0) for t in ticks.values()),
            "remaining": None if spec.count else max(0.0, spec.duration - second),
            "wall": time.monotonic() - started}
