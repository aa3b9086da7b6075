"""Reading manifests: the preparing pass and the chunk stream.

Formats:
- Amazon's CSV manifest `S3BatchOperations_CSV_20180820`: `bucket,key[,versionId]`, no
  header, keys URL-encoded (decoded once, here). A batchops or Amazon completion-report
  part (`bucket,key,versionId,taskStatus,httpStatus,errorCode,resultMessage`) is read as
  a manifest too, so a failed-tasks part retries exactly the failures.
- JSON Lines, one `{"url": "s3://bucket/key", "versionId": ..., "destination":
  {"bucket": ..., "key": ...}}` per line; keys are literal (not URL-encoded).
- The JSON document `{"entries": [...]}` of the same entries. It is normalised once,
  when the job is created, into JSON Lines inside the job folder (so it is read whole
  once; use JSON Lines for very large lists).

The job runs its own copy of the manifest. The preparing pass first copies a manifest
that lies outside the job folder into it (`manifest.copy`, owner-only; a reflink where
the filesystem has them, else an in-kernel copy), then validates and digests that copy.
From then on the job reads only the copy: a manifest rewritten, truncated or deleted
after `create-job` changes nothing the job does. Remote, inventory, generated and
JSON-document manifests are already written into the job folder and are not copied
again.

While validating, the pass records the byte offset of every ROW_STRIDE-th row of the
copy in `rows.idx` (little-endian uint64, the file's size last), and `write_chunk_index`
turns that into `chunks.idx` for the job's chunk size: each chunk's byte range
[start, end). `ChunkReader` reads any chunk on its own from its range, so a resumed job
reads only the chunks not done, and never re-reads, re-parses or re-hashes the rest.

Both passes stream with Polars in batches: memory does not grow with the manifest.
One exception, for start-up time: a CSV manifest of at most SMALL_CSV_BYTES with no
quote and no bare carriage return is read with the csv module instead. Importing
Polars costs about 130 ms of CPU, more than the csv module takes for 4 MiB, and on a
short job that import was a quarter of the wall time (bench/RESULTS.md). Such a file
parses the same either way (no quoting rules differ); tests/test_manifest.py runs
every manifest case through both readers.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import os
import re
import sys
import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import orjson

from batchops.model.chunk import Chunk, ChunkRange, chunk_count, encode_key
from batchops.model.errors import ManifestError
from batchops.model.formats import CSV_FORMAT, JSONL_FORMAT

if TYPE_CHECKING:
    import polars as pl

REPORT_FIELDS = 7
MAX_KEY_BYTES = 1024
_BLOCK_BYTES = 16 * 1024 * 1024
SMALL_CSV_BYTES = 4 * 1024 * 1024  # read with the csv module below this (see above)
MAX_BUCKETS = 1000  # distinct buckets remembered for the store checks at job creation
ROW_STRIDE = 1000  # rows.idx holds the byte offset of every ROW_STRIDE-th row
COPY_NAME = "manifest.copy"  # the job's own copy of a manifest given as a local file
ROWS_INDEX = "rows.idx"
CHUNKS_INDEX = "chunks.idx"
_FICLONE = 0x40049409  # ioctl: share the source's extents, copy-on-write (btrfs, xfs)
# A percent sign not followed by two hex digits.
_BAD_PERCENT = r"%([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)"
_URL_RE = r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]+)/(.+)$"
# Only escapes of non-ASCII bytes can fail to decode as UTF-8.
_NON_ASCII_ESCAPE = r"%[89A-Fa-f]"
_has_non_ascii_escape = re.compile(_NON_ASCII_ESCAPE).search
_has_bad_percent = re.compile(_BAD_PERCENT).search


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What the preparing pass learned about a manifest; saved with the job."""

    location: str  # as the user gave it
    source: str  # local file that was digested (the original, or its copy in the job)
    path: str  # local file the chunk stream reads (the source, or a normalised copy)
    format: str  # CSV_FORMAT or JSONL_FORMAT
    columns: int  # CSV: number of fields per row (2, 3 or 7)
    size: int  # bytes of the original
    digest: str  # "sha256:<hex>" of the original
    total_tasks: int
    buckets: tuple[str, ...] = ()  # distinct buckets named (sources and destinations)
    rows_index: str = ""  # rows.idx beside `path` ("" for jobs prepared before it existed)
    row_stride: int = 0
    #: The first row (1-based) that names no destination of its own (CSV: every row);
    #: 0 when every row of a JSON Lines manifest does (then a copy needs no target).
    first_without_destination: int = 0

    def to_json(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ManifestInfo:
        data = dict(data)
        data["buckets"] = tuple(data.get("buckets") or ())  # type: ignore[arg-type]
        return cls(**data)  # type: ignore[arg-type]


def file_digest(path: str) -> tuple[int, str]:
    """Size and sha256 digest of a file, read in large blocks (releases the GIL)."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        size = f.tell()
    return size, f"sha256:{digest}"


def _decode(key: str) -> str:
    return unquote_plus(key, errors="strict") if ("%" in key or "+" in key) else key


def _decode_keys(raw: list[str]) -> list[str]:
    """URL-decode a chunk's keys in one call: 5 ms instead of 26 ms for 20k keys."""
    keys = unquote_plus("\n".join(raw), errors="strict").split("\n")
    if len(keys) != len(raw):  # a key holds a line end once decoded (or none at all)
        keys = [_decode(k) for k in raw]
    return keys


def _sniff(path: str) -> tuple[str, int]:
    """(format, number of CSV fields) from the first non-blank bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"{"):
        first = text.split(b"\n", 1)[0].strip()
        try:
            row = orjson.loads(first)
        except orjson.JSONDecodeError:
            return "json-document", 0
        # `{"entries": [...]}` on one line (what json.dump writes) is a document too.
        if isinstance(row, dict) and "entries" in row and "url" not in row:
            return "json-document", 0
        return JSONL_FORMAT, 0
    line = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    try:
        fields = next(csv.reader([line]), [])
    except csv.Error:
        fields = []
    return CSV_FORMAT, (REPORT_FIELDS if len(fields) == REPORT_FIELDS else 3)


def _csv_frame(path: str | bytes, columns: int) -> pl.LazyFrame:
    import polars as pl

    names = ["bucket", "key", "version"] + [f"_{i}" for i in range(3, columns)]
    return pl.scan_csv(
        path,
        has_header=False,
        schema={n: pl.String for n in names},
        empty_string_is_null=False,
        missing_columns="insert",
        raise_if_empty=False,
        quote_char='"',
    )


def _jsonl_frame(path: str | bytes) -> pl.LazyFrame:
    import polars as pl

    schema: dict[str, Any] = {
        "url": pl.String,
        "versionId": pl.String,
        "destination": pl.Struct({"bucket": pl.String, "key": pl.String}),
    }
    parts = pl.col("url").str.extract_groups(_URL_RE)
    bucket = (
        pl.when(parts.struct.field("1") == "s3")
        .then(parts.struct.field("2"))
        .otherwise(parts.struct.field("1") + "://" + parts.struct.field("2"))
    )
    return pl.scan_ndjson(path, schema=schema).select(
        bucket.alias("bucket"),
        parts.struct.field("3").alias("key"),
        pl.col("versionId").alias("version"),
        pl.col("destination").struct.field("bucket").alias("dest_bucket"),
        pl.col("destination").struct.field("key").alias("dest_key"),
    )


def _bad_rows(df: pl.DataFrame, fmt: str) -> pl.Series:
    """Row mask of rows the preparing pass rejects (vectorised)."""
    import polars as pl

    bucket, key = pl.col("bucket"), pl.col("key")
    bad = bucket.is_null() | (bucket == "") | key.is_null() | (key == "")
    if fmt == CSV_FORMAT:
        # Escaped keys shrink when decoded: _check_decoding measures those exactly.
        too_long = (key.str.len_bytes() > 3 * MAX_KEY_BYTES) | (
            (key.str.len_bytes() > MAX_KEY_BYTES) & ~key.str.contains(r"[%+]"))
        bad = bad | key.str.contains(_BAD_PERCENT) | too_long
    else:
        bad = bad | (key.str.len_bytes() > MAX_KEY_BYTES) | (
            pl.col("dest_bucket").is_null() != pl.col("dest_key").is_null()
        )
    return df.select(bad.fill_null(True).alias("bad"))["bad"]


def _explain(row: dict[str, str | None], fmt: str) -> str:
    if not row.get("bucket") and not row.get("key") and fmt == CSV_FORMAT:
        return "blank line (expected bucket,key[,versionId])"
    if not row.get("bucket"):
        return "missing bucket (expected bucket,key[,versionId])" if fmt == CSV_FORMAT else (
            "the url is not of the form scheme://bucket/key")
    if not row.get("key"):
        return "missing key (expected bucket,key[,versionId])" if fmt == CSV_FORMAT else (
            "the url is not of the form scheme://bucket/key")
    key = row["key"] or ""
    if fmt == CSV_FORMAT:
        try:
            decoded = unquote_plus(key, errors="strict")
        except UnicodeDecodeError:
            return f"the key {key[:80]!r} does not decode to UTF-8"
        if "%" in key and _has_bad_percent(key):
            return f"the key {key[:80]!r} has a bad percent-encoding"
        key = decoded
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"the key is longer than {MAX_KEY_BYTES} bytes"
    return "a destination needs both bucket and key"


def _decoding_problem(key: str) -> str | None:
    """Why an escaped key cannot be used once decoded (not UTF-8, or too long), if so."""
    try:
        decoded = unquote_plus(key, errors="strict")
    except UnicodeDecodeError:
        return f"the key {key[:80]!r} does not decode to UTF-8"
    if len(decoded.encode()) > MAX_KEY_BYTES:
        return f"the key is longer than {MAX_KEY_BYTES} bytes"
    return None


def _check_decoding(df: pl.DataFrame, first_row: int, path: str) -> None:
    """Keys with escapes must decode to UTF-8 within the key length limit."""
    import polars as pl

    # Only escapes of non-ASCII bytes can decode to invalid UTF-8, and only long keys can
    # be over the limit once decoded: the common case (%20, %2F, +) stays vectorised.
    key = pl.col("key")
    escaped = df.select(pl.int_range(pl.len()).alias("i"), key).filter(
        key.str.contains(_NON_ASCII_ESCAPE)
        | (key.str.len_bytes() > MAX_KEY_BYTES))
    for i, key in escaped.iter_rows():
        problem = _decoding_problem(key)
        if problem:
            raise ManifestError(path, first_row + i + 1, problem)


# -- small CSV manifests: the csv module (see the module docstring) ---------------------


def _small_csv_rows(path: str, columns: int,
                    location: str | None = None) -> list[list[str | None]] | None:
    """The rows of a CSV manifest that is small and plain enough for the csv module, each
    padded to at least [bucket, key, version]; None for any other file (Polars reads it).

    Structural problems (bad UTF-8, too many fields) raise the same ManifestError the
    Polars path gives, from `_locate_csv_error`.
    """
    if os.path.getsize(path) > SMALL_CSV_BYTES:
        return None
    with open(path, "rb") as f:
        data = f.read()
    if b'"' in data or b"\r" in data.replace(b"\r\n", b""):
        return None  # quoting and bare CRs are where csv-module and Polars rules differ
    def refused() -> ManifestError:  # named as the user gave it, as the Polars path does
        located = _locate_csv_error(path, columns)
        return ManifestError(location or path, located.line, located.problem)

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise refused() from None
    rows: list[list[str | None]] = []
    for fields in csv.reader(io.StringIO(text, newline="")):
        if len(fields) > columns:
            raise refused()
        row: list[str | None] = list(fields)
        rows.append(row + [None] * (3 - len(row)) if len(row) < 3 else row)
    return rows


def _small_row_is_bad(bucket: str | None, key: str | None) -> bool:
    """`_bad_rows` for one CSV row."""
    if not bucket or not key:
        return True
    if "%" in key and _has_bad_percent(key):
        return True
    if len(key) <= MAX_KEY_BYTES // 4:  # at most 4 UTF-8 bytes a character
        return False
    size = len(key.encode())
    return size > 3 * MAX_KEY_BYTES or (size > MAX_KEY_BYTES and "%" not in key and "+" not in key)


def _row_problem(bucket: str | None, key: str | None) -> str | None:
    """What is wrong with one CSV row (`_bad_rows`, then `_check_decoding`), if anything."""
    if _small_row_is_bad(bucket, key):
        return _explain({"bucket": bucket, "key": key}, CSV_FORMAT)
    key = key or ""
    if (len(key) > MAX_KEY_BYTES // 4 and len(key.encode()) > MAX_KEY_BYTES) or (
            "%" in key and _has_non_ascii_escape(key)):
        return _decoding_problem(key)
    return None


def _check_small_rows(rows: list[list[str | None]], location: str) -> None:
    """The preparing pass's checks over a small CSV manifest: the first bad row is named,
    as in the Polars path."""
    for number, row in enumerate(rows, 1):
        problem = _row_problem(row[0], row[1])
        if problem:
            raise ManifestError(location, number, problem)


def _locate_csv_error(path: str, columns: int) -> ManifestError:
    """Polars refused the file: find the first offending line with the csv module."""
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                return ManifestError(path, number, "the line is not valid UTF-8")
            if not text.strip():
                return ManifestError(path, number, "blank line (expected bucket,key[,versionId])")
            try:
                fields = next(csv.reader(io.StringIO(text)))
            except (csv.Error, StopIteration):
                return ManifestError(path, number, "the line is not valid CSV")
            if len(fields) > columns or (columns == 3 and len(fields) > 3):
                return ManifestError(
                    path, number,
                    f"{len(fields)} fields where bucket,key[,versionId] has at most 3",
                )
            problem = _row_problem(*(fields + [None, None])[:2])  # before the unreadable one
            if problem:
                return ManifestError(path, number, problem)
    return ManifestError(path, None, "the file is not a valid CSV manifest")


_JSONL_STRINGS = (("url",), ("versionId",), ("destination", "bucket"),
                  ("destination", "key"))


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one parsed JSON Lines entry, or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        if isinstance(entry, dict) and entry.get("url") is not None:
            url = entry["url"]
            return (f'"url" must be a string, not {type(url).__name__} '
                    f"{orjson.dumps(url).decode()[:40]}")
        return 'expected an object with a "url" string'
    dest = entry.get("destination")
    if dest is not None and not isinstance(dest, dict):
        return '"destination" must be an object with "bucket" and "key" strings'
    for path in _JSONL_STRINGS:
        value: Any = entry
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, str):
            return (f'"{".".join(path)}" must be a string, not {type(value).__name__} '
                    f"{orjson.dumps(value).decode()[:40]}")
    return None


def _check_jsonl_types(block: bytes, lines_before: int, location: str) -> None:
    """Every value a JSON Lines entry gives is a string (or null where optional): a
    number, list or object where a string belongs is refused with its line number in the
    file, not coerced (Polars would coerce it)."""
    for entry_no, line in enumerate(block.split(b"\n"), lines_before + 1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the Polars pass names malformed JSON
        problem = _entry_problem(entry)
        if problem is not None:
            raise ManifestError(location, entry_no, problem)


def _locate_jsonl_error(path: str) -> ManifestError:
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, 1):
            if not line.strip():
                continue  # blank lines are allowed
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                return ManifestError(path, number, f"not valid JSON ({exc})")
            problem = _entry_problem(entry)
            if problem is not None:
                return ManifestError(path, number, problem)
    return ManifestError(path, None, "the file is not valid JSON Lines")


def _normalise_json_document(path: str, out_path: str, name: str | None = None) -> None:
    """Rewrite {"entries": [...]} as JSON Lines (read whole once, at job creation).
    Errors name the manifest as `name` (the user's location), else as `path`."""
    name = name or path
    try:
        with open(path, "rb") as f:
            doc = orjson.loads(f.read())
    except orjson.JSONDecodeError as exc:
        raise ManifestError(name, exc.lineno, f"not valid JSON ({exc})") from None
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ManifestError(name, None, 'expected a JSON object with an "entries" list')
    tmp = out_path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        for number, entry in enumerate(entries, 1):
            if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                os.unlink(tmp)
                raise ManifestError(name, None, f'entry {number}: expected an object with a "url"')
            out.write(orjson.dumps(entry) + b"\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, out_path)


def _blocks(path: str, size: int = _BLOCK_BYTES) -> Iterator[bytes]:
    """The file in blocks of about `size` bytes, each ending at a line end.

    Parsing block by block bounds memory (a scan of the whole file reads ahead without
    limit). Manifest keys are URL-encoded, so no field holds a raw line end; a quoted
    field that does is reported as a malformed line.
    """
    with open(path, "rb") as f:
        carry = b""
        while True:
            data = f.read(size)
            if not data:
                break
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            yield data[:cut]
        if carry:
            yield carry


def _batches(path: str, fmt: str, columns: int) -> Iterator[pl.DataFrame]:
    """The manifest as DataFrames, one per block, in order."""
    for block in _blocks(path):
        frame = _csv_frame(block, columns) if fmt == CSV_FORMAT else _jsonl_frame(block)
        yield frame.collect()


# -- the job's copy, and where its rows start ---------------------------------------------


def _inside(path: str, folder: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


def _copy_into(src: str, dest: str) -> None:
    """Copy `src` to `dest`, owner-only: a reflink where the filesystem has them (the
    copy shares no later writes to `src`), else an in-kernel copy. Not yet durable: the
    preparing pass syncs it (`_digest_and_sync`) while it parses."""
    tmp = dest + ".tmp"
    with open(src, "rb") as fin:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                fcntl.ioctl(fd, _FICLONE, fin.fileno())
            except OSError:
                _copy_data(fin.fileno(), fd)
        finally:
            os.close(fd)
    os.replace(tmp, dest)


def _digest_and_sync(path: str, sync: bool) -> tuple[int, str]:
    """`file_digest`, then (with `sync`) the file and its folder made durable: the job
    is Ready only once its copy of the manifest would survive a crash."""
    result = file_digest(path)
    if sync:
        for target, flags in ((path, os.O_RDONLY), (os.path.dirname(path), os.O_RDONLY)):
            fd = os.open(target, flags)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return result


def _copy_data(src: int, dst: int) -> None:
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
        return
    except OSError as exc:  # no copy_file_range between these two files: by hand
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.lseek(src, 0, os.SEEK_SET)
    os.lseek(dst, 0, os.SEEK_SET)
    os.ftruncate(dst, 0)
    while block := os.read(src, 1 << 24):
        view = memoryview(block)
        while view:
            view = view[os.write(dst, view):]


def _after_lines(data: bytes, pos: int, n: int, guess: int) -> int:
    """The offset just after the `n`-th line end at or after `pos`, or -1 if there are
    fewer. `guess`: about how many bytes n lines take. Counting and searching are C loops
    over the bytes: count the line ends in a window of about `guess` bytes, resize it
    until it holds n to n + 64 of them, then drop the extra ones from its end."""
    size = len(data)
    end = min(size, pos + max(guess, 1))
    found = data.count(b"\n", pos, end)
    while found < n or found > n + 64:
        if found < n:  # too narrow: double it while far off, then widen in small steps
            if end >= size:
                return -1
            step = end - pos if found < n // 2 else max(64, (end - pos) // 64)
            wider = min(size, end + step)
            found += data.count(b"\n", end, wider)
            end = wider
        else:  # too wide: cut it to the share of its bytes that n line ends should take
            end = pos + max(1, (end - pos) * n // found)
            found = data.count(b"\n", pos, end)
    for _ in range(found - n):
        end = data.rfind(b"\n", pos, end)
    return data.rfind(b"\n", pos, end) + 1


def _mark_lines(block: bytes, offset: int, first_row: int, out: array[int],
                estimate: int) -> int:
    """Append to `out` the file offset of each row of `block` numbered a multiple of
    ROW_STRIDE, counting every line as a row (CSV: a blank line is a bad row); return
    the number of lines. `block` starts at file offset `offset`, with row `first_row`;
    `estimate`: about how many rows it holds (sizes the search windows). One pass."""
    size = len(block)
    if not block or (offset == 0 and block == b"\xef\xbb\xbf"):
        return 0  # (a byte-order mark alone is no row)
    guess = size * ROW_STRIDE // max(1, estimate)  # bytes per ROW_STRIDE lines, about
    lines, pos = 0, 0
    skip = -first_row % ROW_STRIDE
    if skip:
        pos = _after_lines(block, 0, skip, guess * skip // ROW_STRIDE)
        if pos < 0:
            return _lines_from(block, 0)
        lines = skip
    while pos < size:
        out.append(offset + pos)
        after = _after_lines(block, pos, ROW_STRIDE, guess)
        if after < 0:
            return lines + _lines_from(block, pos)
        lines, guess, pos = lines + ROW_STRIDE, after - pos, after
    return lines


def _lines_from(block: bytes, pos: int) -> int:
    """Lines that start at or after `pos` (< len(block)), the last maybe without a line end."""
    return block.count(b"\n", pos) + (0 if block.endswith(b"\n") else 1)


def _mark_nonblank_lines(block: bytes, offset: int, first_row: int, out: array[int]) -> int:
    """`_mark_lines` for JSON Lines, where blank lines are no rows."""
    pos, row = 0, first_row
    for line in block.split(b"\n"):
        if line.strip():
            if row % ROW_STRIDE == 0:
                out.append(offset + pos)
            row += 1
        pos += len(line) + 1
    return row - first_row


def _nth_row(group: bytes, n: int, jsonl: bool) -> int:
    """Offset in `group` (which starts with a row) of its row `n`."""
    if not jsonl:
        after = _after_lines(group, 0, n, len(group) * n // ROW_STRIDE)
        if after < 0:
            raise ValueError("fewer rows than the index says")
        return after
    pos, row = 0, 0
    for line in group.split(b"\n"):
        if line.strip():
            if row == n:
                return pos
            row += 1
        pos += len(line) + 1
    raise ValueError("fewer rows than the index says")


def _quoted_line_end(location: str, block: bytes, first_line: int) -> ManifestError:
    """The first row of a CSV block that spans lines (a quoted field holds a line end)."""
    reader = csv.reader(io.StringIO(block.decode("utf-8", "replace"), newline=""))
    seen = 0
    for _ in reader:
        if reader.line_num - seen > 1:
            break
        seen = reader.line_num
    return ManifestError(location, first_line + seen,
                         "a quoted field holds a line end (keys in a CSV manifest are "
                         "URL-encoded, so no field needs one)")


def _write_index(path: str, values: array[int]) -> None:
    """An index file: little-endian uint64s, written atomically, owner-only."""
    if sys.byteorder != "little":
        values = array("Q", values)
        values.byteswap()
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with open(fd, "wb", closefd=False) as f:
            values.tofile(f)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_index(path: str) -> array[int]:
    values = array("Q")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % 8:
        raise ValueError(f"{path} is not a whole number of entries")
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def prepare(location: str, local_path: str, work_dir: str) -> ManifestInfo:
    """The preparing pass: copy the manifest into the job folder (unless it is there
    already), then validate every row of the copy, count tasks, digest it and index
    where its rows start (see the module docstring).

    Raises ManifestError naming the file and line of the first bad row; nothing runs.
    `work_dir` (the job folder) receives the copy, a normalised copy when the format
    needs one, and the index.
    """
    if not os.path.isfile(local_path):
        raise ManifestError(location, None, "no such manifest file")
    source = local_path
    copied = not _inside(local_path, work_dir)
    if copied:
        source = os.path.join(work_dir, COPY_NAME)
        _copy_into(local_path, source)
    else:
        os.chmod(local_path, 0o600)  # written by batchops into the job folder
    fmt, columns = _sniff(source)
    digest_box: list[tuple[int, str]] = []
    hasher = threading.Thread(
        target=lambda: digest_box.append(_digest_and_sync(source, copied)))
    hasher.start()
    path = source
    rows = array("Q")
    try:
        if fmt == "json-document":
            path = os.path.join(work_dir, "manifest.jsonl")
            _normalise_json_document(source, path, location)
            fmt = JSONL_FORMAT
        total = 0
        buckets: set[str] = set()
        undirected = 0
        small = _small_csv_rows(path, columns, location) if fmt == CSV_FORMAT else None
        if small is not None:
            _check_small_rows(small, location)
            total = len(small)
            with open(path, "rb") as f:
                if _mark_lines(f.read(), 0, 0, rows, total) != total:  # no quotes: line = row
                    raise ManifestError(location, None, "its lines and rows do not match")
            buckets = {row[0] for row in small if row[0]}  # one block: all, as Polars has
            return _info(location, source, path, fmt, columns, total, buckets, hasher,
                         digest_box, rows, 1 if total else 0)
        import polars as pl

        offset = 0
        lines_before = 0  # lines of the file before this block (blank ones too)
        try:
            for block in _blocks(path):
                frame = _csv_frame(block, columns) if fmt == CSV_FORMAT else _jsonl_frame(block)
                batch = frame.collect()
                bad = _bad_rows(batch, fmt)
                first_bad = int(bad.arg_true()[0]) if bad.any() else None
                if fmt == CSV_FORMAT:  # a key that does not decode, before any bad row
                    _check_decoding(batch if first_bad is None else batch.head(first_bad),
                                    total, location)
                else:  # Polars would coerce a number to a string: refuse it instead
                    _check_jsonl_types(block, lines_before, location)
                    lines_before += block.count(b"\n")
                if first_bad is not None:
                    raise ManifestError(location, total + first_bad + 1,
                                        _explain(batch.row(first_bad, named=True), fmt))
                if len(buckets) < MAX_BUCKETS:
                    buckets.update(batch["bucket"].unique().to_list())
                    if fmt != CSV_FORMAT:
                        buckets.update(b for b in batch["dest_bucket"].unique().to_list() if b)
                if not undirected and batch.height:
                    missing = (batch["dest_bucket"].is_null() if fmt != CSV_FORMAT
                               else pl.repeat(True, batch.height, eager=True))
                    if missing.any():
                        undirected = total + int(missing.arg_true()[0]) + 1
                mark = len(rows)
                if _mark_lines(block, offset, total, rows, batch.height) != batch.height:
                    del rows[mark:]
                    if fmt == CSV_FORMAT:
                        raise _quoted_line_end(location, block, total + 1)
                    if _mark_nonblank_lines(block, offset, total, rows) != batch.height:
                        raise ManifestError(location, None, "a line holds more than one entry")
                total += batch.height
                offset += len(block)
        except (pl.exceptions.PolarsError, OSError) as exc:
            located = (_locate_csv_error(path, columns) if fmt == CSV_FORMAT
                       else _locate_jsonl_error(path))
            raise ManifestError(location, located.line, located.problem) from exc
    finally:
        hasher.join()
    return _info(location, source, path, fmt, columns, total, buckets, hasher, digest_box,
                 rows, undirected)


def _info(location: str, source: str, path: str, fmt: str, columns: int, total: int,
          buckets: set[str], hasher: threading.Thread,
          digest_box: list[tuple[int, str]], rows: array[int],
          undirected: int) -> ManifestInfo:
    hasher.join()
    size, digest = digest_box[0]
    rows.append(os.path.getsize(path))
    rows_index = path + "." + ROWS_INDEX
    _write_index(rows_index, rows)
    return ManifestInfo(location, source, path, fmt, columns, size, digest, total,
                        tuple(sorted(buckets)), rows_index, ROW_STRIDE, undirected)


class ChunkReader:
    """Reads any chunk of a prepared manifest on its own, from its byte range in the
    job's copy (`chunks.idx` when it was written for this chunk size, else derived from
    `rows.idx`). Nothing before the chunk is read."""

    def __init__(self, info: ManifestInfo, chunk_size: int,
                 fetch: Callable[[int, int], bytes] | None = None) -> None:
        """`fetch(start, end)`: read the copy's bytes from elsewhere (ranged GETs of a job
        store on an object store) instead of from the local file `info.path`."""
        self.info = info
        self.chunk_size = chunk_size
        self.n_chunks = chunk_count(info.total_tasks, chunk_size)
        self._jsonl = info.format == JSONL_FORMAT
        self._group: tuple[int, bytes] = (-1, b"")
        self._fd = -1
        self._fetch = fetch
        try:
            self._rows = _read_index(info.rows_index)
            if fetch is None:
                self._fd = os.open(info.path, os.O_RDONLY)
        except (OSError, ValueError) as exc:
            raise self._damaged(f"cannot read it ({exc.__class__.__name__})") from None
        size = os.fstat(self._fd).st_size if fetch is None else self._rows[-1]
        expected = -(-info.total_tasks // info.row_stride) + 1
        if len(self._rows) != expected or self._rows[-1] != size:
            self.close()
            raise self._damaged("it does not match its index")
        self._chunks = self._load_chunk_index(size)

    def _damaged(self, problem: str) -> ManifestError:
        return ManifestError(self.info.location, None,
                             f"the job's copy of the manifest ({self.info.path}): {problem}; "
                             "the job folder is damaged: create the job again")

    def _load_chunk_index(self, size: int) -> array[int] | None:
        try:
            values = _read_index(chunk_index_path(self.info))
        except (OSError, ValueError):
            return None
        if (len(values) != self.n_chunks + 2 or values[0] != self.chunk_size
                or values[-1] != size):
            return None  # written for another chunk size
        return values

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pread(self, start: int, end: int) -> bytes:
        if self._fetch is not None:
            if start >= end:
                return b""
            try:
                data = self._fetch(start, end)
            except Exception as exc:  # noqa: BLE001 - a store error: one sentence
                raise self._damaged(f"cannot read bytes {start}-{end} "
                                    f"({exc.__class__.__name__})") from None
            if len(data) != end - start:
                raise self._damaged("it is shorter than its index")
            return data
        parts = []
        while start < end:
            data = os.pread(self._fd, end - start, start)
            if not data:
                raise self._damaged("it is shorter than its index")
            parts.append(data)
            start += len(data)
        return b"".join(parts)

    def row_start(self, row: int) -> int:
        """File offset where row `row` starts (the file's size for the row after the last)."""
        if row >= self.info.total_tasks:
            return self._rows[-1]
        group, n = divmod(row, self.info.row_stride)
        start = self._rows[group]
        if n == 0:
            return start
        if self._group[0] != group:
            self._group = (group, self._pread(start, self._rows[group + 1]))
        try:
            return start + _nth_row(self._group[1], n, self._jsonl)
        except ValueError:
            raise self._damaged("it does not match its index") from None

    def byte_range(self, index: int) -> tuple[int, int]:
        """Chunk `index`'s bytes in the copy: [start, end)."""
        if not 0 <= index < self.n_chunks:
            raise IndexError(f"chunk {index} is not one of the job's {self.n_chunks} chunks")
        if self._chunks is not None:
            return self._chunks[index + 1], self._chunks[index + 2]
        first = index * self.chunk_size
        return self.row_start(first), self.row_start(first + self.chunk_size)

    def read(self, index: int) -> Chunk:
        """Chunk `index`, parsed from its byte range alone."""
        return self.read_range(self.range(index))

    def range(self, index: int) -> ChunkRange:
        """Chunk `index` as its byte range, unread."""
        start, end = self.byte_range(index)
        first_row = index * self.chunk_size
        return ChunkRange(index, first_row, min(self.chunk_size, self.info.total_tasks -
                                                first_row), start, end)

    def read_range(self, ref: ChunkRange) -> Chunk:
        """The chunk a ChunkRange names (sent by a coordinator elsewhere), checked
        against this copy's size and its row count before it is used."""
        if not 0 <= ref.start <= ref.end <= self._rows[-1] or \
                ref.first_row != ref.index * self.chunk_size:
            raise self._damaged(f"chunk {ref.index}'s range {ref.start}-{ref.end} is "
                                "not in it")
        chunk = _parse_chunk(self.info, ref.index, ref.first_row,
                             self._pread(ref.start, ref.end), ref.start == 0)
        if len(chunk) != ref.rows:
            raise self._damaged(f"chunk {ref.index} has {len(chunk)} rows, not {ref.rows}")
        return chunk


class ChunkPrefetcher:
    """Reads the chunks a job will hand out next on a thread of its own, ahead of the
    coordinator (Polars parses without the GIL while the coordinator pickles and sends),
    at most `depth` chunks ahead: the coordinator's chunk supply and the parse overlap.

    New chunks go out in index order, skipping done ones (`wanted`), and that is the order
    read ahead. A chunk asked for out of that order (one taken back from a dead worker)
    is read at once, by the caller, through a reader of its own: the two readers share
    nothing but the file.
    """

    def __init__(self, info: ManifestInfo, chunk_size: int, wanted: Callable[[int], bool],
                 depth: int = 4, fetch: Callable[[int, int], bytes] | None = None) -> None:
        self._ahead = ChunkReader(info, chunk_size, fetch)
        self._here = ChunkReader(info, chunk_size, fetch)
        self.n_chunks = self._ahead.n_chunks
        self._wanted = wanted
        self._depth = depth
        self._cond = threading.Condition()
        self._ready: dict[int, Chunk | BaseException] = {}
        self._served: set[int] = set()  # read by the caller: never read ahead
        self._next = 0  # the next index the thread looks at
        self._reading = -1
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="batchops-read-ahead",
                                        daemon=True)
        self._thread.start()

    def _pick(self) -> int:
        """The next chunk to read ahead, or -1 (call holding the condition)."""
        while self._next < self.n_chunks and (self._next in self._served
                                              or not self._wanted(self._next)):
            self._next += 1
        if self._next >= self.n_chunks or len(self._ready) >= self._depth:
            return -1
        self._next += 1
        return self._next - 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (index := self._pick()) < 0:
                    self._cond.wait(0.5)  # `wanted` changes as chunks are done
                if self._closed:
                    return
                self._reading = index
            try:
                chunk: Chunk | BaseException = self._ahead.read(index)
            except BaseException as exc:  # noqa: BLE001 - raised to the caller of get()
                chunk = exc
            with self._cond:
                self._ready[index] = chunk
                self._reading = -1
                self._cond.notify_all()

    def read(self, index: int) -> Chunk:
        """Chunk `index` (raises what reading it raised)."""
        found: Chunk | BaseException | None = None
        with self._cond:
            while True:
                if index in self._ready:
                    found = self._ready.pop(index)
                    break
                if index == self._reading:
                    self._cond.wait()
                    continue
                if not self._closed and index == self._upcoming() and \
                        len(self._ready) < self._depth:
                    self._cond.wait()  # the thread reads it next
                    continue
                self._served.add(index)  # out of order: read here
                break
            self._cond.notify_all()  # room ahead again
        if found is None:
            found = self._here.read(index)
        if isinstance(found, BaseException):
            raise found
        return found

    def _upcoming(self) -> int:
        """The index the thread reads next (call holding the condition)."""
        while self._next < self.n_chunks and (self._next in self._served
                                              or not self._wanted(self._next)):
            self._next += 1
        return self._next

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(5)
        self._ahead.close()
        self._here.close()


def relocated(info: ManifestInfo, source: Callable[[dict[str, str]], tuple[
        dict[str, str], Callable[[int, int], bytes] | None]]
        ) -> tuple[ManifestInfo, Callable[[int, int], bytes] | None]:
    """`info` with its files where this machine finds them, and a ranged reader of the
    copy when it is not local: `source` is a job store's `manifest_source`."""
    if not info.path:
        return info, None
    paths = {"source": info.source, "path": info.path, "rows_index": info.rows_index,
             "chunks_index": chunk_index_path(info)}
    local, fetch = source(paths)
    return replace(info, source=local["source"], path=local["path"],
                   rows_index=local["rows_index"]), fetch


def chunk_index_path(info: ManifestInfo) -> str:
    return os.path.join(os.path.dirname(info.path), CHUNKS_INDEX)


def write_chunk_index(info: ManifestInfo, chunk_size: int) -> str:
    """Write `chunks.idx` beside the job's copy: the chunk size, then each chunk's start
    offset, then the copy's size (little-endian uint64s). Returns its path."""
    with ChunkReader(info, chunk_size) as reader:
        values = array("Q", [chunk_size])
        values.extend(reader.row_start(c * chunk_size) for c in range(reader.n_chunks))
        values.append(reader.row_start(info.total_tasks))
    path = chunk_index_path(info)
    _write_index(path, values)
    return path


def _parse_chunk(info: ManifestInfo, index: int, first_row: int, data: bytes,
                 at_start: bool) -> Chunk:
    if info.format == CSV_FORMAT and info.size <= SMALL_CSV_BYTES and b'"' not in data \
            and b"\r" not in data.replace(b"\r\n", b""):
        text = data.decode("utf-8-sig" if at_start else "utf-8")
        rows: list[list[str]] = list(csv.reader(io.StringIO(text, newline="")))
        raw_keys = [r[1] if len(r) > 1 else "" for r in rows]
        return Chunk(index, first_row, [r[0] if r else "" for r in rows],
                     _decode_keys(raw_keys), [(r[2] if len(r) > 2 else "") or None for r in rows],
                     raw_keys)
    frame = _csv_frame(data, info.columns) if info.format == CSV_FORMAT else _jsonl_frame(data)
    df = frame.collect()
    raw_keys = df["key"].to_list()
    versions = [v or None for v in df["version"].to_list()]
    if info.format == CSV_FORMAT:
        return Chunk(index, first_row, df["bucket"].to_list(), _decode_keys(raw_keys), versions,
                     raw_keys)
    return Chunk(index, first_row, df["bucket"].to_list(), raw_keys, versions,
                 [encode_key(k) for k in raw_keys],
                 df["dest_bucket"].to_list(), df["dest_key"].to_list())


def iter_chunks(
    info: ManifestInfo, chunk_size: int, wanted: Callable[[int], bool] = lambda _: True
) -> Iterator[Chunk]:
    """Yield the manifest as chunks of exactly `chunk_size` rows (the last may be short).

    `wanted(index)` False skips a chunk without reading it (already done on a resumed
    job): each wanted chunk is read on its own, from its byte range.
    """
    if info.rows_index:
        with ChunkReader(info, chunk_size) as reader:
            for index in range(reader.n_chunks):
                if wanted(index):
                    yield reader.read(index)
        return
    # A job prepared before rows.idx existed: stream the manifest from its start.
    small = _small_csv_rows(info.path, info.columns) if info.format == CSV_FORMAT else None
    if small is not None:
        for index, first in enumerate(range(0, len(small), chunk_size)):
            if wanted(index):
                rows = small[first:first + chunk_size]
                raw_keys = [r[1] or "" for r in rows]
                yield Chunk(index, first, [r[0] or "" for r in rows], _decode_keys(raw_keys),
                            [r[2] or None for r in rows], raw_keys)
        return
    import polars as pl

    pending: list[pl.DataFrame] = []
    pending_rows = 0
    index = 0
    first_row = 0

    def build(df: pl.DataFrame) -> Chunk:
        raw_keys = df["key"].to_list()
        versions = [v or None for v in df["version"].to_list()]
        if info.format == CSV_FORMAT:
            keys = _decode_keys(raw_keys)
            return Chunk(index, first_row, df["bucket"].to_list(), keys, versions, raw_keys)
        return Chunk(index, first_row, df["bucket"].to_list(), raw_keys, versions,
                     [encode_key(k) for k in raw_keys],
                     df["dest_bucket"].to_list(), df["dest_key"].to_list())

    for batch in _batches(info.path, info.format, info.columns):
        pending.append(batch)
        pending_rows += batch.height
        while pending_rows >= chunk_size:
            df = pl.concat(pending) if len(pending) > 1 else pending[0]
            head, rest = df.slice(0, chunk_size), df.slice(chunk_size)
            if wanted(index):
                yield build(head)
            index += 1
            first_row += chunk_size
            pending, pending_rows = ([rest] if rest.height else []), rest.height
    if pending_rows:
        df = pl.concat(pending) if len(pending) > 1 else pending[0]
        if wanted(index):
            yield build(df)


def estimate_rows(location: str) -> int | None:
    """About how many rows a local manifest file has, from its size and its first 64 KiB
    (exact when it is smaller); None for anything else. Cheap enough to run before the
    preparing pass, to know how many workers are worth starting."""
    path = location[len("file://"):] if location.startswith("file://") else location
    if "://" in path:
        return None
    if not os.path.isfile(path):  # a FIFO (/dev/stdin) would block here
        return None
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError:
        return None
    if head.lstrip()[:1] == b"{" and b"\n{" not in head:
        return None  # a JSON document, not one entry per line
    lines = head.count(b"\n") + (1 if head and not head.endswith(b"\n") else 0)
    return lines if size <= len(head) else int(size * lines / max(1, len(head)))
