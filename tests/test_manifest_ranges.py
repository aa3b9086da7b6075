"""The job's own copy of the manifest, and chunks read on their own from byte ranges.

Each case compares the range reader with the streaming reader (the one a job prepared
before `rows.idx` existed uses), which reads the manifest from row 0.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from batchops.manifest.reader import (
    ROW_STRIDE,
    ChunkReader,
    iter_chunks,
    prepare,
    write_chunk_index,
)
from batchops.model.errors import ManifestError


def _fields(chunks):  # type: ignore[no-untyped-def]
    return [(c.index, c.first_row, c.buckets, c.keys, c.versions, c.report_keys,
             c.dest_buckets, c.dest_keys) for c in chunks]


def _streamed(info, size):  # type: ignore[no-untyped-def]
    return _fields(iter_chunks(replace(info, rows_index="", row_stride=0), size))


def test_chunks_from_ranges_equal_the_stream_across_blocks(tmp_path: Path) -> None:
    # Over 16 MiB: several Polars blocks, row numbers that cross ROW_STRIDE inside them,
    # keys of many lengths, escapes, version ids on some rows, a last row with no line end.
    m = tmp_path / "m.csv"
    with m.open("w") as f:
        for i in range(600_000):
            version = f",v{i}" if i % 7 == 0 else ""
            f.write(f"bkt{i % 3},dir%2F{'x' * (i % 23)}+{i}{version}\n")
        f.write("bkt,last")
    (tmp_path / "job").mkdir()
    info = prepare(str(m), str(m), str(tmp_path / "job"))
    assert info.total_tasks == 600_001 and info.size > 16 * 1024 * 1024
    for size in (10 * ROW_STRIDE, 777):
        assert _fields(iter_chunks(info, size)) == _streamed(info, size), size
    write_chunk_index(info, 777)
    with ChunkReader(info, 777) as reader:
        assert reader._chunks is not None  # read from chunks.idx
        assert _fields(reader.read(c) for c in range(reader.n_chunks)) == _streamed(info, 777)


def test_json_lines_with_blank_lines_from_ranges(tmp_path: Path) -> None:
    lines = []
    for i in range(2_600):
        lines.append(json.dumps({"url": f"s3://b/k{i}", "versionId": f"v{i}" if i % 5 else None}))
        if i % 97 == 0:
            lines.append("   ")
        if i % 131 == 0:
            lines.append("")
    m = tmp_path / "m.jsonl"
    m.write_text("\n" + "\n".join(lines) + "\n\n")
    info = prepare(str(m), str(m), str(tmp_path))
    assert info.total_tasks == 2_600
    for size in (7, 1000, 1001, 5000):
        assert _fields(iter_chunks(info, size)) == _streamed(info, size), size


def test_only_wanted_chunks_are_read(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("".join(f"b,k{i}\n" for i in range(5000)))
    info = prepare(str(m), str(m), str(tmp_path))
    with ChunkReader(info, 100) as reader:
        start, end = reader.byte_range(10)
    with open(info.path, "r+b") as f:  # every other chunk's bytes become garbage
        data = bytearray(f.read())
        data[:start] = b"\xff" * start
        data[end:] = b"\xff" * (len(data) - end)
        f.seek(0)
        f.write(data)
    [chunk] = iter_chunks(info, 100, lambda i: i == 10)
    assert chunk.keys == [f"k{i}" for i in range(1000, 1100)]


def test_the_job_reads_its_own_copy(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("".join(f"b,k{i}\n" for i in range(3000)))
    m.chmod(0o644)
    job = tmp_path / "job"
    job.mkdir()
    info = prepare(str(m), str(m), str(job))
    assert Path(info.path) == job / "manifest.copy" and Path(info.source) == job / "manifest.copy"
    assert os.stat(info.path).st_mode & 0o777 == 0o600
    assert os.stat(info.rows_index).st_mode & 0o777 == 0o600
    before = _fields(iter_chunks(info, 700))
    with m.open("r+b") as f:  # rewritten in place, same size
        f.write(m.read_bytes().replace(b"b,k", b"z,q"))
    assert _fields(iter_chunks(info, 700)) == before
    m.unlink()
    assert _fields(iter_chunks(info, 700)) == before


def test_chunk_indices_outside_the_job_are_refused(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("".join(f"b,k{i}\n" for i in range(50)))
    info = prepare(str(m), str(m), str(tmp_path))
    with ChunkReader(info, 10) as reader:
        for index in (10**12, 5, -1):
            with pytest.raises(IndexError, match="not one of the job's 5 chunks"):
                reader.read(index)


def test_a_damaged_copy_is_one_sentence(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("".join(f"b,k{i}\n" for i in range(50)))
    info = prepare(str(m), str(m), str(tmp_path))
    os.truncate(info.path, 100)
    with pytest.raises(ManifestError, match="damaged"):
        list(iter_chunks(info, 10))


def test_a_quoted_line_end_is_refused_with_its_line(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_bytes(b'b,k1\nb,k2\nb,"a\nb"\nb,k4\n')
    with pytest.raises(ManifestError) as err:
        prepare(str(m), str(m), str(tmp_path))
    assert err.value.line == 3 and "line end" in err.value.problem


def test_the_read_ahead_gives_the_same_chunks_in_any_order(tmp_path: Path) -> None:
    """ChunkPrefetcher (the coordinator's chunk supply) reads ahead on a thread: in order,
    out of order (a chunk taken back from a dead worker), skipping done chunks, it gives
    exactly what the plain range reader gives."""
    from batchops.manifest.reader import ChunkPrefetcher

    m = tmp_path / "m.csv"
    m.write_text("".join(f"b,k{i}\n" for i in range(5_000)))
    (tmp_path / "job").mkdir()
    info = prepare(str(m), str(m), str(tmp_path / "job"))
    with ChunkReader(info, 100) as reader:
        want = {c: _fields([reader.read(c)]) for c in range(reader.n_chunks)}
    done = {3, 4, 10}
    ahead = ChunkPrefetcher(info, 100, lambda i: i not in done, depth=3)
    try:
        order = [0, 1, 2, 5, 6, 1, 7, 8, 0, 30, 9, 11, 12, 49, 13]  # repeats and jumps
        for c in order:
            assert _fields([ahead.read(c)]) == want[c], c
        for c in range(14, 49):  # then the rest in order
            if c not in done and c != 30:
                assert _fields([ahead.read(c)]) == want[c], c
    finally:
        ahead.close()
    with pytest.raises(IndexError):
        ChunkPrefetcher(info, 100, lambda i: True).read(50)
