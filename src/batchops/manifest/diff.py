"""The difference between two listings, as a manifest: which source objects are new at
the target, which changed, which are unchanged, and which target objects have no
source (extraneous).

Each side is first listed into Parquet (`write_listing`: parts of a bounded number of
rows, the listing never held whole), one row per object: `key` (relative to the side's
listing prefix), `size`, `mtime` (microseconds since the epoch), `etag` (without
quotes; null where the store keeps none). The two are then joined on `key` by Polars'
streaming engine (`diff`), and each row is judged by model/compare.py's rule on
metadata, written here as Polars expressions. Where that rule cannot decide from a
listing (checksum mode: listings carry no checksums), the pairs of the same size are
handed to a `decide` callback (the caller's: it reads the objects) in batches.

Listings of at most IN_MEMORY_ROWS objects a side (`diff_stores`) skip Parquet and
Polars: they are joined in a dict by model/compare.py's rule itself
(`listed_difference`), with the same outputs (copy.csv, extraneous.csv). `diff_stores`
lists the two sides at once, the target in a thread of its own.

What `diff` writes, in its output folder:
- `diff/*.parquet`: key, state (new | changed | unchanged | extraneous);
- `copy.csv`: the new and changed objects, as a manifest of the source
  (`S3BatchOperations_CSV_20180820`: bucket,key; keys URL-encoded);
- `extraneous.csv`: the extraneous objects, as a manifest of the target.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any

from batchops.model.chunk import encode_key
from batchops.model.compare import CompareMode
from batchops.model.errors import BadInputError, BatchopsError, SpecError
from batchops.storage.locations import Resolver, is_s3, normalise_url

if TYPE_CHECKING:
    import polars as pl
#: One listed object in a diff: key (relative), size, mtime (microseconds), ETag.
Row = tuple[str, int, int, str | None]
NEW, CHANGED, UNCHANGED, EXTRANEOUS = "new", "changed", "unchanged", "extraneous"
_CHECK = "check"  # same size, the bytes decide (checksum mode)
STATES = (NEW, CHANGED, UNCHANGED, EXTRANEOUS)

ROWS_PER_PART = 200_000
#: Listings of at most this many objects a side are joined in Python dicts, by
#: model/compare.py's rule itself: below that, importing Polars costs more than the
#: whole join (a 20k-file re-run is then ~0.2 s faster, measured by bench/diff.py).
IN_MEMORY_ROWS = 100_000
#: Rows of the larger side joined at a time (a hash partition of both sides): bounds
#: the join's memory (~1M rows: ~300 MiB peak RSS, measured by bench/diff.py).
ROWS_PER_JOIN = 1_000_000
# Polars' streaming engine (bounded memory: it processes morsels, and its joins and
# group-bys spill nothing to memory beyond their state).
_STREAMING: Any = "streaming"
#: Keys Amazon's encoding (quote_plus, "/" kept) leaves as they are.
_PLAIN_KEY = r"^[A-Za-z0-9_.~/-]*$"


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a diff: its Parquet listing (a file, folder or glob), and how its keys
    become manifest rows (the manifest's bucket column, the prefix before each key)."""

    listing: str
    bucket: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class DiffCounts:
    """How many objects fell in each state, and by which comparison."""

    compare: str
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    extraneous: int = 0

    @property
    def to_copy(self) -> int:
        return self.new + self.changed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _micros(when: datetime | float | int) -> int:
    if isinstance(when, datetime):
        return int(when.timestamp() * 1_000_000)
    return int(when * 1_000_000)


def normalised(rows: Iterable[tuple[str, int, Any, Any, str | None]],
               strip: str = "", batch: int = 1024) -> Iterator[list[Row]]:
    """listing.py's rows (key, size, modified, storage class, ETag) as a diff's, in
    lists of at most `batch`: `strip` taken off the front of every key, microseconds,
    the ETag without quotes."""
    cut = len(strip)
    out: list[Row] = []
    for key, size, modified, _, etag in rows:
        out.append((key[cut:], int(size), _micros(modified), etag.strip('"') if etag else None))
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


def write_listing(rows: Iterable[Row], folder: str,
                  rows_per_part: int = ROWS_PER_PART) -> int:
    """Write a listing's rows (`normalised`) to Parquet parts in `folder`. Streams: at
    most `rows_per_part` rows are held. Returns how many rows were written."""
    import polars as pl

    os.makedirs(folder, exist_ok=True)
    total, part = 0, 0
    batch: list[Row] = []

    def flush() -> None:
        nonlocal part
        pl.DataFrame(batch, schema=listing_schema(), orient="row").write_parquet(
            os.path.join(folder, f"part-{part:06d}.parquet"))
        part += 1
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= rows_per_part:
            total += len(batch)
            flush()
    if batch or not part:  # an empty listing is one empty part: it still has its schema
        total += len(batch)
        flush()
    return total


def listing_schema() -> pl.Schema:
    """The columns of a Parquet listing."""
    import polars as pl

    return pl.Schema({"key": pl.String, "size": pl.Int64, "mtime": pl.Int64,
                      "etag": pl.String})


def _scan(listing: str) -> pl.LazyFrame:
    import polars as pl

    path = os.path.join(listing, "*.parquet") if os.path.isdir(listing) else listing
    return pl.scan_parquet(path, schema=listing_schema())


def _md5_etag(column: str) -> pl.Expr:
    """The ETag where it is an MD5 of the bytes (32 hex digits), lower-cased; else null
    (model/compare.py's ObjectInfo.md5_etag)."""
    import polars as pl

    col = pl.col(column)
    return pl.when(col.str.contains("^[0-9a-fA-F]{32}$")).then(col.str.to_lowercase())


def _state(mode: CompareMode) -> pl.Expr:
    """model/compare.py's metadata_difference, over a joined listing (`_t`: the
    target's columns): the first property that differs makes the object changed."""
    import polars as pl

    differs = pl.col("size") != pl.col("size_t")
    if mode is CompareMode.SIZE_MTIME:  # whole seconds: S3 keeps no finer times
        differs = differs | (pl.col("mtime_t") // 1_000_000 < pl.col("mtime") // 1_000_000)
    elif mode is CompareMode.ETAG:  # compared only where both are MD5s
        a, b = _md5_etag("etag"), _md5_etag("etag_t")
        differs = differs | (a.is_not_null() & b.is_not_null() & (a != b))
    same = pl.lit(_CHECK if mode is CompareMode.CHECKSUM else UNCHANGED)
    return (pl.when(pl.col("size_t").is_null()).then(pl.lit(NEW))
            .when(pl.col("size").is_null()).then(pl.lit(EXTRANEOUS))
            .when(differs).then(pl.lit(CHANGED))
            .otherwise(same).alias("state"))


def _encode_keys(keys: pl.Series) -> pl.Series:
    """Amazon's URL encoding of keys, in Python only for the keys that need it."""

    needs = ~keys.str.contains(_PLAIN_KEY)
    if not needs.any():
        return keys
    at = needs.arg_true()
    return keys.clone().scatter(at, [encode_key(k) for k in keys.gather(at).to_list()])


def _sink_manifest(rows: pl.LazyFrame, side: Side, path: str) -> None:
    import polars as pl

    key = pl.lit(side.prefix) + pl.col("key") if side.prefix else pl.col("key")
    rows.select(pl.lit(side.bucket).alias("bucket"),
                key.map_batches(_encode_keys, pl.String, is_elementwise=True).alias("key")
                ).sink_csv(path + ".tmp", include_header=False, quote_style="never",
                           engine=_STREAMING)
    with open(path + ".tmp", "rb") as f:
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def diff(source: Side, target: Side, mode: CompareMode, out_dir: str,
         decide: Callable[[list[str]], list[bool]] | None = None,
         batch: int = 10_000, rows_per_join: int = ROWS_PER_JOIN) -> DiffCounts:
    """Join the two listings on key in Polars' streaming engine; write `diff.parquet`,
    `copy.csv` and `extraneous.csv` in `out_dir` (see the module's docstring). In
    checksum mode, `decide(keys)` says, for each key of a pair of the same size, whether
    its bytes differ (`batch` keys at a time)."""
    import polars as pl

    judged = os.path.join(out_dir, "diff")
    os.makedirs(judged, exist_ok=True)
    rows = max(_scan(side.listing).select(pl.len()).collect(engine=_STREAMING).item()
               for side in (source, target))
    parts = max(1, -(-rows // rows_per_join))
    for part in range(parts):
        # A hash partition of both sides: the join's state is that of one partition.
        mine = pl.col("key").hash(seed=0) % parts == part
        _scan(source.listing).filter(mine).join(
            _scan(target.listing).filter(mine).rename(
                {"size": "size_t", "mtime": "mtime_t", "etag": "etag_t"}),
            on="key", how="full", coalesce=True, maintain_order="none",
        ).select("key", _state(mode)).sink_parquet(
            os.path.join(judged, f"part-{part:06d}.parquet"), engine=_STREAMING)
    states = pl.scan_parquet(os.path.join(judged, "*.parquet"))
    if mode is CompareMode.CHECKSUM:
        states = _decide(states, out_dir, decide, batch)
    counts = dict(states.group_by("state").len().collect(engine=_STREAMING).iter_rows())
    _sink_manifest(states.filter(pl.col("state").is_in([NEW, CHANGED])), source,
                   os.path.join(out_dir, "copy.csv"))
    _sink_manifest(states.filter(pl.col("state") == EXTRANEOUS), target,
                   os.path.join(out_dir, "extraneous.csv"))
    return DiffCounts(str(mode), *(int(counts.get(s, 0)) for s in STATES))


def _decide(states: pl.LazyFrame, out_dir: str,
            decide: Callable[[list[str]], list[bool]] | None,
            batch: int) -> pl.LazyFrame:
    """The pairs only their bytes can tell apart, decided by `decide` in batches (each
    batch's verdicts written as a Parquet part); `states` with them decided."""
    import polars as pl

    if decide is None:
        raise ValueError("checksum mode needs a decide callback (it reads the objects)")
    folder = os.path.join(out_dir, "decided")
    schema = {"key": pl.String, "state": pl.String}
    os.makedirs(folder, exist_ok=True)
    pending = states.filter(pl.col("state") == _CHECK).select("key")
    for n, frame in enumerate(pending.collect_batches(chunk_size=batch, engine=_STREAMING)):
        keys = frame["key"].to_list()
        verdicts = decide(keys)
        pl.DataFrame({"key": keys, "state": [CHANGED if v else UNCHANGED for v in verdicts]},
                     schema=schema).write_parquet(
            os.path.join(folder, f"part-{n:06d}.parquet"))
    decided = pl.scan_parquet(os.path.join(folder, "*.parquet"), schema=schema) \
        if os.listdir(folder) else pl.LazyFrame(schema=schema)
    return pl.concat([states.filter(pl.col("state") != _CHECK), decided])


def _listed(url: str, flag: str, resolver: Resolver, flt: dict[str, Any] | None = None,
            missing_ok: bool = False) -> tuple[str, str, Iterator[list[Row]]]:
    """(bucket column, key prefix, rows in lists) of `url`'s listing, filtered by a
    generator's `flt`; a store's failure to list is one sentence."""
    from batchops.manifest.listing import list_folder_source, list_source, validate_generator

    gen = validate_generator({"SourceBucket": url, "EnableManifestOutput": False,
                              "Filter": flt or {}})
    loc = resolver.location(gen["SourceBucket"])
    if loc.local_path is not None and not os.path.isdir(loc.local_path):
        if not missing_ok:
            raise SpecError(f"{flag} {url}: no such folder")
        return loc.root, "", iter(())
    folder = list_folder_source(gen, resolver)
    if folder is not None:  # keys already relative to the folder; no datetimes made
        bucket, prefix = folder[0], ""
        batches: Iterator[list[Row]] = (
            [(key, size, mtime_ns // 1000, None) for key, size, mtime_ns in files]
            for files in folder[1])
    else:
        bucket, prefix, rows = list_source(gen, resolver)
        batches = normalised(rows, prefix)

    def guarded() -> Iterator[list[Row]]:
        try:
            yield from batches
        except BatchopsError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store's failure to list
            from batchops.storage.outcomes import classify

            raise BadInputError(f"{flag} {url}: cannot list it "
                                f"({classify(exc).message})") from None

    return bucket, prefix, guarded()


def _held(batches: Iterator[list[Row]], limit: int
          ) -> tuple[list[Row], Iterator[list[Row]] | None]:
    """A side's listing read up to `limit` rows: (its rows, None) when that was all of
    it, else (the first rows read, the rest still to read)."""
    held: list[Row] = []
    for rows in batches:
        held += rows
        if len(held) > limit:
            return held, batches
    return held, None


def _write_side(held: list[Row], rest: Iterator[list[Row]] | None, path: str) -> None:
    write_listing(chain(held, chain.from_iterable(rest or ())), path)


class _Beside(threading.Thread):
    """A call run in a thread of its own (`start()`), or in this one (`run()`);
    `result()` returns what it returned (or raises what it raised), once it ended."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(name="batchops-listing", daemon=True)  # never holds up an exit
        self._call = call
        self._out: tuple[bool, Any] = (False, None)

    def run(self) -> None:
        try:
            self._out = (True, self._call())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._out = (False, exc)

    def wait(self) -> None:
        if self.ident is not None:  # started
            self.join()

    def result(self) -> Any:
        self.wait()
        done, value = self._out
        if not done:
            raise value
        return value


def _diff_in_memory(source: Side, src_rows: list[Row], target: Side, dst_rows: list[Row],
                    mode: CompareMode, out_dir: str,
                    decide: Callable[[list[str]], list[bool]] | None) -> DiffCounts:
    """`diff` of two small listings in a dict, by model/compare.py's rule itself."""
    from batchops.model.compare import listed_rule

    there = {key: (size, mtime, etag) for key, size, mtime, etag in dst_rows}
    new, changed, check = [], [], []
    pop, differs = there.pop, listed_rule(mode)
    for key, size, mtime, etag in src_rows:
        other = pop(key, None)
        if other is None:
            new.append(key)
        elif differs(size, mtime / 1e6, etag, other[0], other[1] / 1e6, other[2]):
            changed.append(key)
        elif mode is CompareMode.CHECKSUM:
            check.append(key)
    if check:
        if decide is None:
            raise ValueError("checksum mode needs a decide callback (it reads the objects)")
        changed += [key for key, differs in zip(check, decide(check), strict=True) if differs]
    for side, keys, name in ((source, new + changed, "copy.csv"),
                             (target, list(there), "extraneous.csv")):
        _write_manifest(side, keys, os.path.join(out_dir, name))
    return DiffCounts(str(mode), len(new), len(changed),
                      len(src_rows) - len(new) - len(changed), len(there))


def _write_manifest(side: Side, keys: list[str], path: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(f"{side.bucket},{encode_key(side.prefix + key)}\n" for key in keys)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


class Listings:
    """The two listings of a diff, under way from the moment this is made: the target's in
    a thread, the source's in another (a local folder's system calls run without the GIL:
    two cores list both sides at once), or both in one thread, one after the other, when
    both are S3 listings (they would share one client, whose event loop a thread holds).
    Each side is read to its end when it has at most `in_memory_rows` objects, else to
    its first rows only (`diff` writes it to Parquet). A caller with more to do
    meanwhile starts them early: the CLI does, before it imports the rest and creates the
    job. A failure to list is raised by `diff`, not here. For the arguments, see
    `diff_stores`."""

    def __init__(self, source: str, target: str, resolver: Resolver,
                 flt: dict[str, Any] | None = None, target_key_prefix: str = "",
                 flags: tuple[str, str] = ("SOURCE_URL", "TARGET_URL"),
                 in_memory_rows: int = IN_MEMORY_ROWS) -> None:
        self._both_s3 = False
        try:
            self._src = _listed(source, flags[0], resolver, flt)
            sub = self._src[1]
            if target_key_prefix:  # operations/copy.py's join_prefix(TargetKeyPrefix, key)
                sep = "" if target_key_prefix.endswith("/") else "/"
                sub = f"{target_key_prefix}{sep}{sub}"
            loc = resolver.location(normalise_url(target, flags[1]))
            url = loc.root + "/" + loc.prefix + sub if loc.prefix or sub else loc.root
            self._dst = _listed(url, flags[1], resolver, missing_ok=True)
            self._both_s3 = is_s3(resolver.location(normalise_url(source, flags[0]))) and \
                is_s3(loc)
        except Exception as exc:  # noqa: BLE001 - raised by diff(), as a failure to list
            self._error: Exception | None = exc
            return
        self._error = None
        src_rows, dst_rows = self._src[2], self._dst[2]
        if self._both_s3:
            self._reading = [_Beside(lambda: (_held(src_rows, in_memory_rows),
                                              _held(dst_rows, in_memory_rows)))]
        else:
            self._reading = [_Beside(lambda: _held(dst_rows, in_memory_rows)),
                             _Beside(lambda: _held(src_rows, in_memory_rows))]
        for thread in self._reading:
            thread.start()

    def _read(self) -> tuple[tuple[list[Row], Iterator[list[Row]] | None], ...]:
        """(source side, target side), each as `_held` gives it."""
        if self._error is not None:
            raise self._error
        try:
            if self._both_s3:
                return tuple(self._reading[0].result())
            dst = self._reading[0].result()
            return self._reading[1].result(), dst
        finally:
            for thread in self._reading:
                thread.wait()  # nothing is left listing once this returns or raises

    def diff(self, mode: CompareMode, out_dir: str,
             decider: Callable[[Side, Side], Callable[[list[str]], list[bool]]]
             | None = None) -> tuple[DiffCounts, Side, Side]:
        """Wait for the listings and diff them into `out_dir` (see `diff_stores`)."""
        (s_held, s_rest), (d_held, d_rest) = self._read()
        os.makedirs(out_dir, exist_ok=True)
        small = s_rest is None and d_rest is None
        paths = ("", "") if small else tuple(os.path.join(out_dir, name)
                                              for name in ("source", "target"))
        src = Side(paths[0], self._src[0], self._src[1])
        dst = Side(paths[1], self._dst[0], self._dst[1])
        decide = decider(src, dst) if decider is not None and mode is CompareMode.CHECKSUM \
            else None
        if small:
            return _diff_in_memory(src, s_held, dst, d_held, mode, out_dir, decide), src, dst
        # Both listings written to their ends at once (not two S3 listings).
        writes = [_Beside(partial(_write_side, held, rest, path)) for held, rest, path in
                  ((d_held, d_rest, paths[1]), (s_held, s_rest, paths[0]))]
        for write in writes:
            if self._both_s3:
                write.run()
            else:
                write.start()
        for write in writes:
            write.wait()  # both ended before either's failure is raised
        for write in writes:
            write.result()
        return diff(src, dst, mode, out_dir, decide), src, dst


def diff_stores(source: str, target: str, mode: CompareMode, out_dir: str,
                resolver: Resolver, flt: dict[str, Any] | None = None,
                target_key_prefix: str = "",
                decider: Callable[[Side, Side], Callable[[list[str]], list[bool]]]
                | None = None, flags: tuple[str, str] = ("SOURCE_URL", "TARGET_URL"),
                in_memory_rows: int = IN_MEMORY_ROWS) -> tuple[DiffCounts, Side, Side]:
    """List `source` and `target` and `diff` them into `out_dir`. A source key K is
    compared with the target object a copy job puts it at: the target URL's prefix,
    then `target_key_prefix` joined as Amazon's TargetKeyPrefix (`P/K`), then K. A
    missing target folder is an empty target. `decider(source, target)` makes checksum
    mode's `decide`. Listings of at most `in_memory_rows` objects each are joined in
    memory, larger ones through Parquet and Polars (memory stays bounded either way);
    the two are listed at once (`Listings`). Returns (counts, source side, target
    side)."""
    return Listings(source, target, resolver, flt, target_key_prefix, flags,
                    in_memory_rows).diff(mode, out_dir, decider)
