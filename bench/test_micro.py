"""Micro benchmarks (pytest-benchmark), each beside a baseline measured in the same run.

Run: `pytest bench/test_micro.py --benchmark-enable` (they are not part of `pytest`,
whose testpaths is tests/). Each group holds batchops' path as the pipeline calls it and
a plain-Python baseline; pytest-benchmark's table shows both, and the ratio is theirs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from batchops._scheduler import ChunkRun, RetryPolicy, Scheduler
from batchops.jobstore import JobStore
from batchops.manifest import iter_chunks, prepare
from batchops.report import write_chunk

N = 10_000


class PyChunkRun:
    """The baseline: the same task-state logic in plain Python."""

    def __init__(self, size: int) -> None:
        self.size, self.next, self.state, self.succeeded = size, 0, bytearray(size), 0

    def take(self) -> int:
        i = self.next
        if i >= self.size:
            return -1
        self.next = i + 1
        self.state[i] = 1
        return i

    def succeed(self, i: int) -> None:
        if self.state[i] != 1:
            raise ValueError(i)
        self.state[i] = 2
        self.succeeded += 1


def _dispatch_ack(run) -> int:  # type: ignore[no-untyped-def]
    take, succeed = run.take, run.succeed
    while (i := take()) >= 0:
        succeed(i)
    return run.succeeded


@pytest.mark.benchmark(group="dispatch+ack, 10k tasks")
def test_dispatch_ack_native(benchmark) -> None:  # type: ignore[no-untyped-def]
    policy = RetryPolicy()
    assert benchmark(lambda: _dispatch_ack(ChunkRun(N, policy))) == N


@pytest.mark.benchmark(group="dispatch+ack, 10k tasks")
def test_dispatch_ack_python_baseline(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(lambda: _dispatch_ack(PyChunkRun(N))) == N


@pytest.mark.benchmark(group="chunk leases, 10k chunks")
def test_chunk_leases_native(benchmark) -> None:  # type: ignore[no-untyped-def]
    def cycle() -> int:
        s = Scheduler(N, N * 100)
        while (c := s.next_chunk()) >= 0:
            s.lease(c, 0)
            s.complete(c, 100, 0)
        return s.chunks_done

    assert benchmark(cycle) == N


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("m") / "m.csv"
    with path.open("w") as f:
        for i in range(500_000):
            f.write(f"bucket,photos/2024/{i % 97}/img+{i:08d}%20x.jpg\n")
    return path


@pytest.mark.benchmark(group="manifest 500k rows: prepare + chunks")
def test_manifest_polars(benchmark, manifest, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def read() -> int:
        info = prepare(str(manifest), str(manifest), str(tmp_path))
        return sum(len(c) for c in iter_chunks(info, N))

    assert benchmark.pedantic(read, rounds=3) == 500_000


@pytest.mark.benchmark(group="manifest 500k rows: prepare + chunks")
def test_manifest_csv_module_baseline(benchmark, manifest) -> None:  # type: ignore[no-untyped-def]
    def read() -> int:
        with manifest.open(newline="") as f:
            return sum(1 for row in csv.reader(f) if unquote_plus(row[1]))

    assert benchmark.pedantic(read, rounds=3) == 500_000


@pytest.fixture(scope="module")
def chunk(manifest, tmp_path_factory):  # type: ignore[no-untyped-def]
    info = prepare(str(manifest), str(manifest), str(tmp_path_factory.mktemp("w")))
    return next(iter(iter_chunks(info, N)))


@pytest.mark.benchmark(group="report part, 10k rows")
def test_report_part_write(benchmark, chunk, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BATCHOPS_HOME", str(tmp_path))
    store = JobStore.create("bench")
    marker = benchmark(lambda: write_chunk(store, chunk, {}, {}, "AllTasks"))
    assert marker["succeeded"] == N


@pytest.mark.benchmark(group="report part, 10k rows")
def test_report_part_csv_module_baseline(benchmark, chunk) -> None:  # type: ignore[no-untyped-def]
    def write() -> int:
        buf = io.StringIO()
        w = csv.writer(buf)
        for b, k in zip(chunk.buckets, chunk.report_keys, strict=True):
            w.writerow((b, k, "", "succeeded", 200, "", "Successful"))
        return len(buf.getvalue())

    assert benchmark(write) > 0
