"""Micro benchmarks (pytest-benchmark), each beside a baseline measured in the same run.

Run: `pytest bench/test_micro.py --benchmark-enable` (they are not part of `pytest`,
whose testpaths is tests/). Each group holds batchops' path as the pipeline calls it and
a plain-Python baseline; pytest-benchmark's table shows both, and the ratio is theirs.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from batchops._scheduler import ChunkRun, RetryPolicy, Scheduler
from batchops.manifest import reader as manifest_module
from batchops.manifest.reader import iter_chunks, prepare
from batchops.results.jobstore import JobStore
from batchops.results.report import write_chunk

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


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("s") / "m.csv"
    path.write_text("".join(f"src,d{i // 100:04d}%2Ff{i:06d}.bin\n" for i in range(20_000)))
    return path


@pytest.mark.benchmark(group="manifest 20k rows (small file): prepare + chunks")
def test_small_manifest_csv_module(benchmark, small_manifest, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def read() -> int:
        info = prepare(str(small_manifest), str(small_manifest), str(tmp_path))
        return sum(len(c) for c in iter_chunks(info, 2_500))

    assert benchmark.pedantic(read, rounds=10) == 20_000


@pytest.mark.benchmark(group="manifest 20k rows (small file): prepare + chunks")
def test_small_manifest_polars_baseline(benchmark, small_manifest, tmp_path,  # type: ignore[no-untyped-def]
                                        monkeypatch) -> None:
    # Polars is already imported here: its ~130 ms import, what the small-file reader
    # saves a short job, is not in this figure.
    monkeypatch.setattr(manifest_module, "SMALL_CSV_BYTES", 0)

    def read() -> int:
        info = prepare(str(small_manifest), str(small_manifest), str(tmp_path))
        return sum(len(c) for c in iter_chunks(info, 2_500))

    assert benchmark.pedantic(read, rounds=10) == 20_000


@pytest.fixture()
def folders(tmp_path):  # type: ignore[no-untyped-def]
    """2,000 files, on tmpfs where there is one (ext4 times file creation erratically
    after many deletions; see RESULTS.md)."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else tmp_path
    src, dst = root / "src", root / "dst"
    src.mkdir()
    dst.mkdir()
    data = bytes(4096)
    for i in range(2_000):
        (src / f"f{i:05d}").write_bytes(data)
    yield src, dst
    shutil.rmtree(root, ignore_errors=True)


def _timed_copies(benchmark, copy_one) -> None:  # type: ignore[no-untyped-def]
    names = [f"f{i:05d}" for i in range(2_000)]

    def copy_all() -> int:
        return sum(copy_one(n) for n in names)

    assert benchmark.pedantic(copy_all, rounds=5) == 2_000 * 4096


@pytest.mark.benchmark(group="local copy, 2,000 files of 4 KiB")
def test_folder_copy_native(benchmark, folders) -> None:  # type: ignore[no-untyped-def]
    from batchops.storage.localfs import FolderCopier

    src, dst = folders
    copier = FolderCopier()
    _timed_copies(benchmark, lambda n: copier.copy(str(src), n, str(dst), n))
    copier.release()


@pytest.mark.benchmark(group="local copy, 2,000 files of 4 KiB")
def test_folder_copy_python_baseline(benchmark, folders) -> None:  # type: ignore[no-untyped-def]
    """The same copy (temporary name, copy_file_range, rename) from Python, by full path."""
    src, dst = folders
    create = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

    def copy_one(name: str) -> int:
        fd_in = os.open(os.path.join(src, name), os.O_RDONLY | os.O_CLOEXEC)
        target = os.path.join(dst, name)
        fd_out = os.open(target + ".tmp", create, 0o666)
        size = os.fstat(fd_in).st_size
        n = os.copy_file_range(fd_in, fd_out, size)
        os.close(fd_in)
        os.close(fd_out)
        os.rename(target + ".tmp", target)
        return n

    _timed_copies(benchmark, copy_one)


@pytest.mark.benchmark(group="local copy, 2,000 files of 4 KiB")
def test_folder_copy_whole_chunk(benchmark, folders) -> None:  # type: ignore[no-untyped-def]
    """The same 2,000 copies as one chunk: CopyOperation.run_chunk_sync, one native call
    without the GIL. `extra_info` holds the per-file cost of both paths, measured here
    alternately on the same files, and their ratio (per-file calls / whole chunk)."""
    import time

    from batchops.model.chunk import Chunk
    from batchops.operations.copy import CopyOperation
    from batchops.storage.locations import Resolver

    src, dst = folders
    names = [f"f{i:05d}" for i in range(2_000)]
    chunk = Chunk(0, 0, [f"file://{src}"] * len(names), names, [None] * len(names), names)
    op = CopyOperation({"TargetResource": f"file://{dst}"}, Resolver(), "bench")
    indices = list(range(len(names)))

    def whole() -> int:
        results = op.run_chunk_sync(chunk, indices)
        op.sync_chunk_done()
        assert results is not None
        return results.count(None)

    def per_file() -> int:
        for n in names:
            op.folders.copy(str(src), n, str(dst), n)
        op.sync_chunk_done()
        return len(names)

    import resource

    best = {"whole": float("inf"), "per_file": float("inf")}
    # User CPU (the part outside the kernel), summed over the rounds: getrusage counts in
    # ticks, coarser than one round.
    user = {"whole": 0.0, "per_file": 0.0}
    rounds = 15
    for _ in range(rounds):
        for name, fn in (("whole", whole), ("per_file", per_file)):
            u = resource.getrusage(resource.RUSAGE_SELF).ru_utime
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
            user[name] += resource.getrusage(resource.RUSAGE_SELF).ru_utime - u
    info = benchmark.extra_info
    info.update(
        whole_chunk_us_per_file=round(best["whole"] / len(names) * 1e6, 2),
        per_file_call_us_per_file=round(best["per_file"] / len(names) * 1e6, 2),
        ratio_per_file_over_whole_chunk=round(best["per_file"] / best["whole"], 2),
        whole_chunk_user_cpu_us_per_file=round(user["whole"] / rounds / len(names) * 1e6, 2),
        per_file_call_user_cpu_us_per_file=round(user["per_file"] / rounds / len(names) * 1e6,
                                                 2))
    print(f"\nlocal copy per file, wall: whole chunk {info['whole_chunk_us_per_file']} µs, "
          f"FolderCopier.copy per file {info['per_file_call_us_per_file']} µs, ratio "
          f"{info['ratio_per_file_over_whole_chunk']}x; user CPU: whole chunk "
          f"{info['whole_chunk_user_cpu_us_per_file']} µs, per file "
          f"{info['per_file_call_user_cpu_us_per_file']} µs")
    assert benchmark.pedantic(whole, rounds=5) == len(names)
