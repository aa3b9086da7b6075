"""A chunk: a fixed run of consecutive manifest rows, as plain data.

Chunks cross process boundaries (pickled to workers) and are the unit of scheduling,
checkpointing and report writing. This module stays free of heavy imports so that
workers can unpickle chunks without loading the manifest reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote_plus

DEFAULT_CHUNK_SIZE = 10_000
#: Ray actors: an automatic chunk grows up to this, as long as every actor still gets
#: RAY_CHUNKS_PER_WORKER chunks. Each chunk costs the Ray engine two actor calls and
#: about 3 ms of CPU (driver and actor) that a local worker does not spend: a 1M-row
#: noop job on 2 actors spent 0.3 s less CPU in chunks of 31,250 than of 10,000
#: (bench/ray_engine.py).
RAY_CHUNK_SIZE = 50_000
RAY_CHUNKS_PER_WORKER = 16


@dataclass(slots=True)
class Chunk:
    """Rows `first_row .. first_row + len - 1` of the manifest (0-based).

    `keys` are decoded; `report_keys` are URL-encoded as they go into the report.
    `dest_buckets`/`dest_keys` hold per-row destinations (JSON manifests), else None.
    """

    index: int
    first_row: int
    buckets: list[str]
    keys: list[str]
    versions: list[str | None]
    report_keys: list[str]
    dest_buckets: list[str | None] | None = None
    dest_keys: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True, slots=True)
class ChunkRange:
    """A chunk named by its byte range [start, end) in the job's copy of the manifest:
    what crosses the wire to a worker that reads the manifest itself (a Ray actor on
    another machine), instead of its rows."""

    index: int
    first_row: int
    rows: int
    start: int
    end: int


def encode_key(key: str) -> str:
    """URL-encode a key the way Amazon's manifests and reports carry it."""
    return quote_plus(key, safe="/")


def default_workers() -> int:
    return os.cpu_count() or 1


def auto_chunk_size(total_tasks: int, workers: int, max_ops: float = 0.0,
                    limited: bool = False, engine: str = "local") -> int:
    """10,000 rows per chunk, or fewer so a small manifest still gives every worker
    several chunks (at least 1,000 rows each, to keep checkpoints cheap). Under an
    ops/s limit (shared evenly by the workers), about a quarter second of work per
    chunk, so the last chunks do not leave the job running at a fraction of its rate.
    For `engine` "ray", large manifests get chunks of up to RAY_CHUNK_SIZE rows."""
    workers = workers or default_workers()
    share = -(-total_tasks // (workers * 4))
    size = max(1000, min(DEFAULT_CHUNK_SIZE, share))
    if max_ops:
        size = min(size, max(50, int(max_ops / 4)))
    if limited or max_ops:  # many chunks per worker: an even tail at the limited rate
        return min(size, max(50, -(-total_tasks // (workers * 16))))
    if engine == "ray":
        size = max(size, min(RAY_CHUNK_SIZE,
                             -(-total_tasks // (workers * RAY_CHUNKS_PER_WORKER))))
    return size


def chunk_count(total_tasks: int, chunk_size: int) -> int:
    return (total_tasks + chunk_size - 1) // chunk_size
