"""Report parts: the fast path for plain rows writes exactly what the csv module would."""

from __future__ import annotations

import csv
import io

import pytest

from batchops.model.chunk import Chunk
from batchops.results.jobstore import JobStore
from batchops.results.report import write_chunk


@pytest.mark.parametrize("keys", [
    ["a/b.txt", "c+d%2C", "ünï"],  # plain: the fast path
    ["a,b", "plain"],  # a comma: quoted by the csv module
    ['say "hi"', "x"],
    ["line\nbreak", "y"],
])
def test_parts_are_valid_csv_with_every_row(home, keys) -> None:
    store = JobStore.create("j")
    chunk = Chunk(0, 0, ["bkt"] * len(keys), keys, [None, "v1", None][: len(keys)], keys)
    marker = write_chunk(store, chunk, {}, {}, "AllTasks")
    data = (store.results_dir + "/" + marker["parts"][0]["name"])
    with open(data, newline="") as f:
        rows = list(csv.reader(f))
    assert [r[1] for r in rows] == keys
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\n").writerows(
        ("bkt", k, v or "", "succeeded", 200, "", "Successful")
        for k, v in zip(keys, chunk.versions, strict=True))
    with open(data) as f:
        assert f.read() == expected.getvalue()
