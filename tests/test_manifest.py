"""Manifest reading: formats, decoding, validation with line numbers, exact chunking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchops.manifest import reader as manifest
from batchops.manifest.reader import iter_chunks, prepare
from batchops.model.errors import ManifestError
from batchops.model.formats import CSV_FORMAT, JSONL_FORMAT


@pytest.fixture(autouse=True, params=["polars", "csv-module"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs over both CSV readers: Polars (forced by a zero size limit
    for the small-file reader) and the csv module (small files without quotes)."""
    if request.param == "polars":
        monkeypatch.setattr(manifest, "SMALL_CSV_BYTES", 0)
    return str(request.param)

KEYS = ["plain.txt", "with space.txt", "plus+sign", "100%.bin", "ünï/cødé ✓", "a,comma",
        'quote"d']


def _prep(tmp_path: Path, name: str, text: str | bytes):  # type: ignore[no-untyped-def]
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return prepare(str(p), str(p), str(tmp_path))


def test_csv_keys_are_decoded_once_and_reported_encoded(tmp_path: Path) -> None:
    from helpers import enc

    info = _prep(tmp_path, "m.csv", "".join(f"bkt,{enc(k)}\n" for k in KEYS))
    assert (info.format, info.total_tasks) == (CSV_FORMAT, len(KEYS))
    [chunk] = list(iter_chunks(info, 100))
    assert chunk.keys == KEYS
    assert chunk.report_keys == [enc(k) for k in KEYS]
    assert chunk.buckets == ["bkt"] * len(KEYS)


def test_quoted_fields_and_version_ids(tmp_path: Path) -> None:
    info = _prep(tmp_path, "m.csv", 'bkt,"x,y",v1\n"bkt","plain",\n')
    [chunk] = list(iter_chunks(info, 10))
    assert chunk.keys == ["x,y", "plain"] and chunk.versions == ["v1", None]


def test_chunks_are_exact_runs_of_rows(tmp_path: Path) -> None:
    info = _prep(tmp_path, "m.csv", "".join(f"b,k{i}\n" for i in range(1003)))
    chunks = list(iter_chunks(info, 100))
    assert [len(c) for c in chunks] == [100] * 10 + [3]
    assert [c.first_row for c in chunks] == [100 * i for i in range(11)]
    assert chunks[7].keys[0] == "k700"
    skipped = list(iter_chunks(info, 100, lambda i: i % 2 == 1))
    assert [c.index for c in skipped] == [1, 3, 5, 7, 9]
    assert skipped[2].keys[5] == "k505"


@pytest.mark.parametrize(("text", "line", "words"), [
    ("b,k1\nb,k2\nb\n", 3, "missing key"),
    ("b,k1\n,k2\n", 2, "missing bucket"),
    ("b,k1\nb,k%2\n", 2, "percent-encoding"),
    ("b,k1\nb,k%zz\n", 2, "percent-encoding"),
    ("b,k1\nb,k2\nb,k3,v,extra\n", 3, "fields"),
    ("b,k1\nb,%ff%fe\n", 2, "UTF-8"),
    ("b,k1\nb,k2\n\nb,k3\n", 3, "blank line"),
])
def test_bad_rows_name_the_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    with pytest.raises(ManifestError) as err:
        _prep(tmp_path, "bad.csv", text)
    assert err.value.line == line, str(err.value)
    assert words in str(err.value) and "bad.csv" in str(err.value)


def test_invalid_utf8_bytes_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as err:
        _prep(tmp_path, "bad.csv", b"b,k1\nb,\xff\xfe\n")
    assert err.value.line == 2


def test_key_longer_than_1024_bytes_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as err:
        _prep(tmp_path, "long.csv", "b,k\nb," + "x" * 1025 + "\n")
    assert err.value.line == 2 and "1024" in str(err.value)


def test_empty_manifest_has_zero_tasks(tmp_path: Path) -> None:
    info = _prep(tmp_path, "empty.csv", "")
    assert info.total_tasks == 0 and list(iter_chunks(info, 10)) == []


def test_digest_records_the_file(tmp_path: Path) -> None:
    import hashlib

    info = _prep(tmp_path, "m.csv", "b,k\n")
    assert info.digest == "sha256:" + hashlib.sha256(b"b,k\n").hexdigest()
    assert info.size == 4


def test_json_lines_with_per_row_destination(tmp_path: Path) -> None:
    lines = [{"url": "s3://src/a b+c%.txt", "destination": {"bucket": "dst", "key": "new/a"}},
             {"url": "s3://src/dir/x", "versionId": "v9"},
             {"url": "gs://other/y"}]
    info = _prep(tmp_path, "m.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    assert info.format == JSONL_FORMAT and info.total_tasks == 3
    [chunk] = list(iter_chunks(info, 10))
    assert chunk.buckets == ["src", "src", "gs://other"]
    assert chunk.keys == ["a b+c%.txt", "dir/x", "y"]  # literal, not decoded
    assert chunk.versions == [None, "v9", None]
    assert chunk.dest_buckets == ["dst", None, None]
    assert chunk.dest_keys == ["new/a", None, None]
    assert chunk.report_keys[0] == "a+b%2Bc%25.txt"


@pytest.mark.parametrize("indent", [2, None], ids=["indented", "one line"])
def test_json_document_form(tmp_path: Path, indent: int | None) -> None:
    """Indented, or on one line as json.dump writes it by default."""
    doc = {"entries": [{"url": "s3://src/k1"},
                       {"url": "s3://src/k2", "destination": {"bucket": "d", "key": "z"}}]}
    info = _prep(tmp_path, "m.json", json.dumps(doc, indent=indent))
    [chunk] = list(iter_chunks(info, 10))
    assert chunk.keys == ["k1", "k2"] and chunk.dest_keys == [None, "z"]


def test_json_lines_bad_line(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as err:
        _prep(tmp_path, "m.jsonl", '{"url": "s3://b/k"}\n{"url": \n')
    assert err.value.line == 2
    with pytest.raises(ManifestError) as err:
        _prep(tmp_path, "m.jsonl", '{"url": "s3://b/k"}\n{"url": "nourl"}\n')
    assert err.value.line == 2


def test_failed_report_part_is_a_manifest(tmp_path: Path) -> None:
    part = ('src,a+b,,failed,404,NoSuchKey,"The specified key does not exist."\n'
            "src,c,v2,failed,500,InternalError,boom\n")
    info = _prep(tmp_path, "part.csv", part)
    [chunk] = list(iter_chunks(info, 10))
    assert chunk.keys == ["a b", "c"] and chunk.versions == [None, "v2"]



def test_keys_that_decode_to_line_ends_stay_whole(tmp_path: Path) -> None:
    info = _prep(tmp_path, "m.csv", "b,a%0Ab\nb,c+d\nb,e%0D%0A\n")
    [chunk] = list(iter_chunks(info, 10))
    assert chunk.keys == ["a\nb", "c d", "e\r\n"]


@pytest.mark.parametrize("line, problem", [
    ('{"url": "s3://b/k", "versionId": 7}', '"versionId" must be a string, not int 7'),
    ('{"url": "s3://b/k", "destination": {"bucket": "d", "key": 5}}',
     '"destination.key" must be a string, not int 5'),
    ('{"url": ["s3://b/k"]}', '"url" must be a string, not list'),
    ('{"url": "s3://b/k", "destination": "x"}', '"destination" must be an object'),
])
def test_json_lines_values_of_the_wrong_type_are_refused_not_coerced(
        tmp_path: Path, line: str, problem: str) -> None:
    text = '{"url": "s3://b/first"}\n\n' + line + "\n"
    with pytest.raises(ManifestError) as err:
        _prep(tmp_path, "m.jsonl", text)
    assert problem in err.value.problem
    assert err.value.line == 3  # the file's third line (after a blank one)
