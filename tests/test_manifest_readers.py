"""The two CSV manifest readers (Polars, and the csv module for small plain files) give
the same tasks and the same errors; a small manifest never imports Polars."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from batchops.manifest import reader as manifest
from batchops.manifest.reader import iter_chunks, prepare
from batchops.model.errors import ManifestError

EDGE_CASES = {
    "plain": b"b,k1\nb,k2\n", "no final newline": b"b,k1\nb,k2", "crlf": b"b,k1\r\nb,k2\r\n",
    "bom": b"\xef\xbb\xbfb,k1\nb,k2\n", "blank line": b"b,k1\n\nb,k2\n",
    "blank last line": b"b,k1\nb,k2\n\n", "spaces only": b"b,k1\n  \nb,k2\n",
    "one field": b"b,k1\nb\n", "empty key": b"b,k1\nb,\n", "versions": b"b,k1,v1\nc,k2,\n",
    "four fields": b"b,k1\nb,k1,v1,x\n", "missing key then four fields": b"b\nb,k,v,x\n",
    "bad utf-8": b"b,k1\nb,k\xff2\n", "bad percent": b"b,k1\nb,k%zz\n",
    "percent at end": b"b,k%4\n", "not utf-8 once decoded": b"b,k1\nb,k%ff\n",
    "decoding error before a missing key": b"b,k%ff\nb,\n",
    "plus and escapes": b"b,a+b%2Fc%C3%A9\n", "spaces kept": b" b , k1 \n",
    "report part": b"b,k1,,succeeded,200,,Successful\nb,k2,,failed,500,InternalError,x\n",
    "short row in a report part": b"b,k1,,succeeded,200,,Successful\nb,k2\n",
    "eight fields in a report part": b"b,k1,,succeeded,200,,Successful\nb,k2,,a,b,c,d,e\n",
    "empty file": b"", "only a newline": b"\n", "long key": b"b," + b"x" * 1025 + b"\n",
    "long escaped key": b"b," + b"%41" * 1025 + b"\n", "many buckets": b"".join(
        b"b%d,k\n" % i for i in range(50)), "bare CR": b"b,k1\rb,k2\n",
    "percent ending a key before another row": b"b,ab%\nb,cd\n",
    "half escape ending a key before another row": b"b,k%4\nb,k2\n",
    "long key after a good one": b"b,k\nb," + b"x" * 1025 + b"\n",
    "long key with plus signs, too long once decoded": b"b,k\nb," + b"a+" * 600 + b"\n",
    "blank line before a bad percent": b"b,k\n\nb,x%zz\n",
    "non-ASCII escape after a long plain key": b"b," + b"y" * 1025 + b"\nb,k%ff\n",
    "raw four-byte characters over the limit": b"b," + "\U0001F600".encode() * 300 + b"\n",
    "raw two-byte characters under the limit": b"b," + "\u00e9".encode() * 300 + b"\n",
    "raw two-byte characters and a plus over the limit":
        b"b," + "\u00e9".encode() * 600 + b"+\n",
    "raw two-byte characters and an escape over the limit":
        b"b," + "\u00e9".encode() * 600 + b"%20\n",
}


def _outcome(path: Path, location: str | None = None) -> object:
    try:
        info = prepare(location or str(path), str(path), str(path.parent))
    except ManifestError as exc:
        return ("error", str(exc))  # the file as given, the line, the problem
    chunks = [(c.index, c.first_row, c.buckets, c.keys, c.versions, c.report_keys)
              for c in iter_chunks(info, 3)]
    return (info.total_tasks, info.buckets, info.columns, chunks)


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_both_csv_readers_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                case: str) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(EDGE_CASES[case])
    small = _outcome(path), _outcome(path, "s3://bucket/m.csv")  # errors name the location
    monkeypatch.setattr(manifest, "SMALL_CSV_BYTES", 0)
    assert small == (_outcome(path), _outcome(path, "s3://bucket/m.csv"))


def test_a_small_manifest_runs_without_importing_polars(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("".join(f"b,k{i}\n" for i in range(1000)))
    code = ("import sys; from batchops.manifest.reader import prepare, iter_chunks; "
            f"info = prepare({str(path)!r}, {str(path)!r}, {str(tmp_path)!r}); "
            "n = sum(len(c) for c in iter_chunks(info, 100)); "
            "assert n == 1000, n; assert 'polars' not in sys.modules, 'polars was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
