"""A chunk: a fixed run of consecutive manifest rows, as plain data.

Chunks cross process boundaries (pickled to workers) and are the unit of scheduling,
checkpointing and report writing. This module stays free of heavy imports so that
workers can unpickle chunks without loading the manifest reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote_plus


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


def encode_key(key: str) -> str:
    """URL-encode a key the way Amazon's manifests and reports carry it."""
    return quote_plus(key, safe="/")
