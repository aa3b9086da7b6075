"""S3 Inventory manifests (`S3InventoryReport_CSV_20161130`), read as job manifests.

An inventory `manifest.json` names its data files (`files[]`, each with its
`MD5checksum`) in `destinationBucket`, and their columns in `fileSchema`. Each file is
fetched into the job folder, checked against its MD5, and streamed with Polars into the
job's normalised CSV manifest (`bucket,key[,versionId]`, keys URL-encoded), one batch
at a time: memory stays flat however large the inventory is.

CSV parts (gzipped, keys URL-encoded, as Amazon writes them) and, going beyond
Amazon, Parquet parts (`fileFormat: Parquet`, columns `bucket`, `key`, `version_id`,
keys not encoded) are both read.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from batchops.model.chunk import encode_key
from batchops.model.errors import ManifestError
from batchops.storage.locations import Resolver, normalise_url, split_location

if TYPE_CHECKING:
    import polars as pl

_BATCH = 200_000


def _owner_only(path: str, flags: int) -> int:
    """An `open` opener: every file batchops writes into a job folder is owner-only."""
    return os.open(path, flags, 0o600)


def _fetch(resolver: Resolver, bucket: str, key: str, dest: str) -> str:
    """Copy an object to a local file while computing its MD5; returns the hex MD5."""
    import obstore as obs

    loc = resolver.location(bucket)
    md5 = hashlib.md5()
    result = obs.get(resolver.store(loc), loc.key(key))
    with open(dest, "wb", opener=_owner_only) as out:
        for block in result.stream():
            md5.update(block)
            out.write(block)
    return md5.hexdigest()


def _columns(schema: str, where: str) -> tuple[int, int, int | None]:
    names = [c.strip() for c in schema.split(",")]
    try:
        bucket, key = names.index("Bucket"), names.index("Key")
    except ValueError:
        raise ManifestError(where, None, f"fileSchema {schema!r} has no Bucket and Key") from None
    version = names.index("VersionId") if "VersionId" in names else None
    return bucket, key, version


def _append(out: BinaryIO, df: pl.DataFrame) -> int:
    df.write_csv(out, include_header=False)
    return df.height


def normalise_inventory(manifest_path: str, location: str, job_dir: str,
                        resolver: Resolver) -> str:
    """Turn an inventory manifest into the job's CSV manifest; return its path."""
    try:
        with open(manifest_path, "rb") as f:
            doc = orjson.loads(f.read())
    except orjson.JSONDecodeError as exc:
        raise ManifestError(location, None, f"not a valid inventory manifest.json ({exc})") \
            from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise ManifestError(location, None, 'an inventory manifest.json needs a "files" list')
    fmt = str(doc.get("fileFormat", "CSV")).upper()
    if fmt not in ("CSV", "PARQUET"):
        raise ManifestError(location, None, f"fileFormat {doc.get('fileFormat')!r} is not "
                                            "supported (CSV or Parquet)")
    dest_bucket = normalise_url(str(doc.get("destinationBucket") or ""), "destinationBucket")
    if dest_bucket.startswith("s3://"):
        dest_bucket = dest_bucket[len("s3://"):]
    if not dest_bucket:
        raise ManifestError(location, None, "the inventory manifest has no destinationBucket")
    parts_dir = os.path.join(job_dir, "inventory")
    os.makedirs(parts_dir, mode=0o700, exist_ok=True)
    out_path = os.path.join(job_dir, "manifest.csv")
    with open(out_path + ".tmp", "wb", opener=_owner_only) as out:
        for n, entry in enumerate(doc["files"]):
            key = entry.get("key") if isinstance(entry, dict) else None
            if not key:
                raise ManifestError(location, None, f"files[{n}] has no key")
            local = os.path.join(parts_dir, f"part-{n:06d}")
            try:
                md5 = _fetch(resolver, dest_bucket, key, local)
            except FileNotFoundError:
                raise ManifestError(location, None,
                                    f"files[{n}] {key} is not in {dest_bucket}") from None
            expected = str(entry.get("MD5checksum") or "")
            if expected and md5 != expected:
                raise ManifestError(location, None, f"files[{n}] {key}: MD5 {md5} does not "
                                                    f"match MD5checksum {expected}")
            if fmt == "CSV":
                _csv_part(local, str(doc.get("fileSchema", "")), key, out)
            else:
                _parquet_part(local, key, out)
            os.unlink(local)
        out.flush()
        os.fsync(out.fileno())
    os.replace(out_path + ".tmp", out_path)
    return out_path


def _csv_part(path: str, schema: str, key: str, out: BinaryIO) -> None:
    import polars as pl

    b, k, v = _columns(schema, key)
    width = len(schema.split(","))
    names = [f"c{i}" for i in range(width)]
    frame = pl.scan_csv(path, has_header=False, schema={n: pl.String for n in names},
                        empty_string_is_null=False, missing_columns="insert",
                        truncate_ragged_lines=True)
    cols = [pl.col(names[b]), pl.col(names[k])]
    if v is not None:
        cols.append(pl.col(names[v]))
    try:
        for batch in frame.select(cols).collect_batches(chunk_size=_BATCH):
            _append(out, batch)
    except pl.exceptions.PolarsError as exc:
        raise ManifestError(key, None, f"cannot read this inventory part ({exc})") from None


def _parquet_part(path: str, key: str, out: BinaryIO) -> None:
    import polars as pl

    try:
        frame = pl.scan_parquet(path)
        names = frame.collect_schema().names()
        version = "version_id" if "version_id" in names else None
        cols = ["bucket", "key"] + ([version] if version else [])
        for batch in frame.select(cols).collect_batches(chunk_size=_BATCH):
            encoded = pl.Series("key", [encode_key(k) for k in batch["key"].to_list()])
            _append(out, batch.with_columns(encoded))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ManifestError(key, None, f"cannot read this Parquet inventory part ({exc})") \
            from None


def fetch_manifest_object(url: str, dest: str, version: str | None,
                          resolver: Resolver) -> tuple[str, dict[str, Any]]:
    """Download a manifest object (that `version` of it, if given) to `dest`, with the
    URL's own AWS settings or the job's; returns (local path, {"ETag": ...})."""
    import obstore as obs

    loc = split_location(url)
    options: Any = {"version": version} if version else None
    result = obs.get(resolver.store(loc), loc.prefix.rstrip("/"), options=options)
    with open(dest + ".tmp", "wb", opener=_owner_only) as out:
        for block in result.stream():
            out.write(block)
    os.replace(dest + ".tmp", dest)
    return dest, {"ETag": str(result.meta.get("e_tag") or "").strip('"')}
