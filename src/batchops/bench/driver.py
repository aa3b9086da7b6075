"""`batchops bench`: start the workers (fresh interpreters, as a job's), show their
progress live, merge their results."""

from __future__ import annotations

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

        preflight(Resolver(), [loc], {loc: "bench URL"})
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
    return merge(spec.to_json(), results)


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
