"""Generated manifests (`ManifestGenerator.S3JobManifestGenerator`): list a bucket (or
any store URL, `file://` included), keep the objects that pass the `Filter`, and write
them as the job's CSV manifest, streaming: the listing never sits in memory.

With `EnableManifestOutput`, the generated manifest is also written in Amazon's
`S3InventoryReport_CSV_20211130` form (a gzipped CSV data file and a `manifest.json`)
under `ManifestOutputLocation`, and described by `GeneratedManifestDescriptor`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

from batchops.model.arns import given_partition, s3_url_to_arn
from batchops.model.chunk import encode_key
from batchops.model.errors import SpecError
from batchops.storage.locations import Resolver, is_s3, normalise_url, s3_bucket, split_location

GENERATED_FORMAT = "S3InventoryReport_CSV_20211130"
#: One listed object: key, size, last modified, storage class, ETag (None if not kept).
Listed = tuple[str, int, datetime, str, str | None]
_WHERE = "ManifestGenerator.S3JobManifestGenerator"


def _when(value: Any, name: str) -> datetime:
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(f"{_WHERE}.Filter.{name} must be an ISO 8601 timestamp") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def validate_generator(gen: Any) -> dict[str, Any]:
    """Check an S3JobManifestGenerator; return it normalised."""
    if not isinstance(gen, dict) or not gen.get("SourceBucket"):
        raise SpecError(f"{_WHERE}.SourceBucket is required")
    if "EnableManifestOutput" not in gen:
        raise SpecError(f"{_WHERE}.EnableManifestOutput is required (true or false)")
    out = dict(gen)
    out["SourceBucket"] = normalise_url(str(gen["SourceBucket"]), f"{_WHERE}.SourceBucket")
    flt = out.get("Filter") or {}
    if not isinstance(flt, dict):
        raise SpecError(f"{_WHERE}.Filter must be an object")
    known = {"CreatedAfter", "CreatedBefore", "KeyNameConstraint", "ObjectSizeGreaterThanBytes",
             "ObjectSizeLessThanBytes", "MatchAnyStorageClass", "EligibleForReplication",
             "ObjectReplicationStatuses", "MatchAnyObjectEncryption"}
    unknown = set(flt) - known
    if unknown:
        raise SpecError(f"{_WHERE}.Filter: unknown member {sorted(unknown)[0]!r}")
    for name in ("CreatedAfter", "CreatedBefore"):
        if name in flt:
            _when(flt[name], name)
    if not isinstance(flt.get("EligibleForReplication", False), bool):
        raise SpecError(f"{_WHERE}.Filter.EligibleForReplication must be true or false")
    if out.get("EnableManifestOutput"):
        loc = out.get("ManifestOutputLocation")
        if not isinstance(loc, dict) or not loc.get("Bucket"):
            raise SpecError(f"{_WHERE}.ManifestOutputLocation.Bucket is required with "
                            "EnableManifestOutput")
        if loc.get("ManifestFormat", GENERATED_FORMAT) != GENERATED_FORMAT:
            raise SpecError(f"{_WHERE}.ManifestOutputLocation.ManifestFormat must be "
                            f"{GENERATED_FORMAT}")
    return out


def _predicate(flt: dict[str, Any]) -> Callable[[str, int, datetime, str], bool]:
    after = _when(flt["CreatedAfter"], "CreatedAfter") if "CreatedAfter" in flt else None
    before = _when(flt["CreatedBefore"], "CreatedBefore") if "CreatedBefore" in flt else None
    names = flt.get("KeyNameConstraint") or {}
    prefixes = tuple(names.get("MatchAnyPrefix") or ())
    suffixes = tuple(names.get("MatchAnySuffix") or ())
    substrings = tuple(names.get("MatchAnySubstring") or ())
    bigger = flt.get("ObjectSizeGreaterThanBytes")
    smaller = flt.get("ObjectSizeLessThanBytes")
    classes = set(flt.get("MatchAnyStorageClass") or ())

    def keep(key: str, size: int, modified: datetime, storage_class: str) -> bool:
        return not (
            (after is not None and modified <= after)
            or (before is not None and modified >= before)
            or (prefixes and not key.startswith(prefixes))
            or (suffixes and not key.endswith(suffixes))
            or (substrings and not any(s in key for s in substrings))
            or (bigger is not None and size <= bigger)
            or (smaller is not None and size >= smaller)
            or (classes and storage_class not in classes)
        )

    return keep


def _common_prefix(prefixes: list[str]) -> str:
    return os.path.commonprefix(prefixes) if prefixes else ""


class _Replication:
    """The Enabled rules of a bucket's replication configuration, as (prefix, tags)
    pairs: an object is eligible for replication when its key starts with a rule's
    prefix and it carries all of that rule's tags (S3's rule filters: the legacy
    `Prefix`, `Filter.Prefix`, `Filter.Tag`, `Filter.And`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.rules: list[tuple[str, frozenset[tuple[str, str]]]] = []
        for rule in config.get("Rules") or ():
            if rule.get("Status") != "Enabled":
                continue
            flt = rule.get("Filter")
            tags: list[dict[str, str]]
            if flt is None:  # the first version of the schema: a prefix of the rule's own
                prefix, tags = str(rule.get("Prefix") or ""), []
            elif "And" in flt:
                prefix, tags = str(flt["And"].get("Prefix") or ""), flt["And"].get("Tags") or []
            else:
                prefix = str(flt.get("Prefix") or "")
                tags = [flt["Tag"]] if "Tag" in flt else []
            self.rules.append((prefix, frozenset((t["Key"], t["Value"]) for t in tags)))

    def by_key(self, key: str) -> bool | None:
        """True when a rule without tags takes `key`; None when only a rule with tags
        might (the object's tags decide); False when no rule can."""
        tagged = False
        for prefix, tags in self.rules:
            if key.startswith(prefix):
                if not tags:
                    return True
                tagged = True
        return None if tagged else False

    def by_tags(self, key: str, tags: frozenset[tuple[str, str]]) -> bool:
        return any(key.startswith(prefix) and want <= tags for prefix, want in self.rules)


def _list_s3(api: Any, bucket: str, prefix: str,
             listed_keep: Callable[[str, int, datetime, str], bool],
             head_keep: Callable[[dict[str, Any]], bool] | None = None,
             eligible: bool = False) -> Iterator[Listed]:
    """S3 listing through the S3 API client (it reports storage classes), page by page,
    keeping the objects that pass `listed_keep` (the filters a listing answers). With
    `eligible`, the bucket's replication configuration is read once and only the objects
    its Enabled rules would replicate are kept (their tags are read only where a rule
    with tags decides). With `head_keep`, each object still kept is HEADed too (64 at a
    time) and kept only if the answer passes (encryption, replication status). An object
    deleted while it is listed is left out."""
    import asyncio

    from botocore.exceptions import ClientError

    def status(exc: ClientError) -> int:
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)

    async def head(client: Any, key: str) -> dict[str, Any] | None:
        try:
            return dict(await client.head_object(Bucket=bucket, Key=key))
        except ClientError as exc:  # SSE-C objects answer a bare HEAD with 400
            if status(exc) == 400:
                return {"SSECustomerAlgorithm": "AES256"}
            if status(exc) == 404:
                return None
            raise

    async def tags_of(client: Any, key: str) -> frozenset[tuple[str, str]] | None:
        try:
            answer = await client.get_object_tagging(Bucket=bucket, Key=key)
        except ClientError as exc:
            if status(exc) == 404:
                return None
            raise
        return frozenset((t["Key"], t["Value"]) for t in answer.get("TagSet") or ())

    async def gathered(job: Callable[[Any, str], Any], client: Any,
                       objects: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(objects), 64):
            out += await asyncio.gather(*(job(client, o["Key"])
                                          for o in objects[start:start + 64]))
        return out

    async def replication_of(client: Any) -> _Replication:
        try:
            answer = await client.get_bucket_replication(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == \
                    "ReplicationConfigurationNotFoundError":
                # Amazon fails a Batch Replication job on such a bucket, too.
                raise SpecError(
                    f"{_WHERE}.Filter.EligibleForReplication: bucket {bucket} has no "
                    "replication configuration, so none of its objects is eligible for "
                    "replication; configure replication on it (put-bucket-replication) or "
                    "remove EligibleForReplication") from None
            raise
        return _Replication(answer.get("ReplicationConfiguration") or {})

    async def replicated(client: Any, rules: _Replication,
                         objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        decided = [(o, rules.by_key(o["Key"])) for o in objects]
        undecided = [o for o, verdict in decided if verdict is None]
        tags = dict(zip((o["Key"] for o in undecided),
                        await gathered(tags_of, client, undecided), strict=True))
        return [o for o, verdict in decided if verdict or (
            verdict is None and (found := tags[o["Key"]]) is not None
            and rules.by_tags(o["Key"], found))]

    loop = asyncio.new_event_loop()
    try:
        client = loop.run_until_complete(api.client())
        rules = loop.run_until_complete(replication_of(client)) if eligible else None
        paginator = client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=bucket, Prefix=prefix).__aiter__()
        while True:
            try:
                page = loop.run_until_complete(pages.__anext__())
            except StopAsyncIteration:
                break
            objects = [o for o in page.get("Contents", [])
                       if listed_keep(o["Key"], o["Size"], o["LastModified"],
                                      o.get("StorageClass", "STANDARD"))]
            if rules is not None:
                objects = loop.run_until_complete(replicated(client, rules, objects))
            if head_keep is not None:
                heads = loop.run_until_complete(gathered(head, client, objects))
                objects = [o for o, h in zip(objects, heads, strict=True)
                           if h is not None and head_keep(h)]
            for obj in objects:
                yield (obj["Key"], obj["Size"], obj["LastModified"],
                       obj.get("StorageClass", "STANDARD"), obj.get("ETag"))
    finally:
        loop.run_until_complete(api.close())
        loop.close()


# What HEAD answers in x-amz-replication-status, as the filter names it; any other
# status (PENDING) is its own and matches none of the filter's (NONE is no status).
_REPLICATION = MappingProxyType({"COMPLETE": "COMPLETED", "COMPLETED": "COMPLETED",
                                 "FAILED": "FAILED", "REPLICA": "REPLICA"})


def _head_predicate(flt: dict[str, Any]) -> Callable[[dict[str, Any]], bool] | None:
    """ObjectReplicationStatuses and MatchAnyObjectEncryption, judged on a HEAD's answer
    (None when the filter has neither)."""
    statuses = set(flt.get("ObjectReplicationStatuses") or ())
    kinds = list(flt.get("MatchAnyObjectEncryption") or ())
    if not statuses and not kinds:
        return None

    def encryption_matches(head: dict[str, Any], kind: dict[str, Any]) -> bool:
        sse = head.get("ServerSideEncryption")
        if "NOTSSE" in kind:
            return not sse and not head.get("SSECustomerAlgorithm")
        if "SSEC" in kind:
            return bool(head.get("SSECustomerAlgorithm"))
        if "SSES3" in kind:
            return sse == "AES256"
        for name, value in (("SSEKMS", "aws:kms"), ("DSSEKMS", "aws:kms:dsse")):
            if name in kind:
                want = kind[name] or {}
                return sse == value and (
                    not want.get("KmsKeyArn") or head.get("SSEKMSKeyId") == want["KmsKeyArn"]
                ) and ("BucketKeyEnabled" not in want
                       or bool(head.get("BucketKeyEnabled")) == want["BucketKeyEnabled"])
        return False

    def keep(head: dict[str, Any]) -> bool:
        given = str(head.get("ReplicationStatus") or "")
        status = _REPLICATION.get(given, given or "NONE")
        return (not statuses or status in statuses) and (
            not kinds or any(encryption_matches(head, k) for k in kinds))

    return keep


def _list_folder(root: str, prefix: str) -> Iterator[Listed]:
    """The regular files below folder `root` whose keys start with `prefix` (see
    `walk_folder`), as listed objects."""
    fromtimestamp = datetime.fromtimestamp
    for files in walk_folder(root, prefix):
        for key, size, mtime_ns in files:
            # st_mtime's float, as os.stat makes it
            seconds = mtime_ns // 1_000_000_000 + mtime_ns % 1_000_000_000 * 1e-9
            yield (key, size, fromtimestamp(seconds, UTC), "STANDARD", None)


def walk_folder(root: str, prefix: str) -> Iterator[list[tuple[str, int, int]]]:
    """The regular files below folder `root` whose keys start with `prefix`, as
    (key, size, modification time in ns), walked from the root without following a
    symlink (the sandbox, storage/localfs.py): symlinks, devices and batchops' own
    temporaries are skipped, and a folder replaced by a symlink while it is walked is
    not entered. Streamed in directory order, in lists of at most 1,024 files (a
    folder's entries are never held whole: memory stays flat however large it is); only
    the names of folders still to visit are kept. The walk is the native lister's
    (ext/batchops/_listdir.pyx `Walker`): it goes from folder to folder without the GIL,
    so two folders walked in two threads list in parallel, beside Python's own work."""
    from batchops._listdir import Walker
    from batchops.storage.localfs import TEMP_PREFIX, TEMP_SUFFIX, TEMPORARY_NAME_LENGTH

    walker = Walker(os.fsencode(root), os.fsencode(prefix), os.fsencode(TEMP_PREFIX),
                    os.fsencode(TEMP_SUFFIX), TEMPORARY_NAME_LENGTH)
    while files := walker.batch(1024):
        yield files


def _local_folder(url: str) -> tuple[str, str] | None:
    """(folder, key prefix) of a local store URL; None for any other store."""
    loc = split_location(url)
    if loc.local_path is None:
        return None
    if not os.path.isdir(loc.local_path):
        raise SpecError(f"{_WHERE}.SourceBucket {url}: no such folder")
    return loc.local_path, loc.prefix


def _list_store(resolver: Resolver, url: str, prefix: str) -> Iterator[Listed]:
    import obstore as obs

    folder = _local_folder(url)
    if folder is not None:
        yield from _list_folder(folder[0], folder[1] + prefix)
        return
    loc = split_location(url)
    full = loc.prefix + prefix
    # obstore's list() matches whole path segments: list from the last "/" and keep the
    # keys that start with the whole prefix (S3's meaning of a prefix).
    whole = full[:full.rfind("/") + 1]
    for batch in obs.list(resolver.store(loc), prefix=whole or None, chunk_size=1000):
        for meta in batch:
            path = str(meta["path"])
            if path.startswith(full):
                yield path[len(loc.prefix):], int(meta["size"]), meta["last_modified"], \
                    "STANDARD", meta.get("e_tag")


def _owner_only(path: str, flags: int) -> int:
    """An opener for files in the job folder: readable by their owner only."""
    return os.open(path, flags, 0o600)


def list_source(gen: dict[str, Any],
                resolver: Resolver) -> tuple[str, str, Iterator[Listed]]:
    """The objects a generator lists, filtered, streamed: (the manifest's bucket column,
    the key prefix every listed key starts with, the rows)."""
    source = gen["SourceBucket"]
    flt = gen.get("Filter") or {}
    keep = _predicate(flt)
    prefix = _common_prefix(list((flt.get("KeyNameConstraint") or {}).get("MatchAnyPrefix")
                                 or []))
    loc = resolver.location(source)
    head_keep = _head_predicate(flt)
    eligible = flt.get("EligibleForReplication") is True
    if is_s3(loc):
        return s3_bucket(loc), loc.prefix, _list_s3(
            resolver.s3api(loc), s3_bucket(loc), loc.prefix + prefix, keep, head_keep, eligible)
    if head_keep is not None or eligible:
        raise SpecError(f"{_WHERE}.Filter: EligibleForReplication, "
                        "ObjectReplicationStatuses and MatchAnyObjectEncryption need an "
                        "S3 source (they are read from the bucket's replication "
                        f"configuration and each object's HEAD); {source} is not S3")
    rows = _list_store(resolver, loc.root + ("/" + loc.prefix if loc.prefix else ""), prefix)
    return loc.root, "", (row for row in rows if keep(*row[:4])) if flt else rows


def list_folder_source(gen: dict[str, Any], resolver: Resolver
                       ) -> tuple[str, Iterator[list[tuple[str, int, int]]]] | None:
    """For a generator listing a local folder without a filter: (the manifest's bucket
    column, the files as `walk_folder` gives them: lists of (key, size, mtime in ns));
    the same objects as `list_source`, without a datetime made for each. None for any
    other generator (list it with `list_source`)."""
    if gen.get("Filter"):
        return None
    loc = resolver.location(gen["SourceBucket"])
    if is_s3(loc):
        return None
    folder = _local_folder(loc.root + ("/" + loc.prefix if loc.prefix else ""))
    return None if folder is None else (loc.root, walk_folder(*folder))


def generate(gen: dict[str, Any], job_id: str, job_dir: str,
             resolver: Resolver) -> tuple[str, dict[str, Any] | None]:
    """List and filter; write the job's CSV manifest. Returns (path, descriptor or None)."""
    manifest_bucket, _, rows = list_source(gen, resolver)
    out_path = os.path.join(job_dir, "manifest.csv")
    data_path = os.path.join(job_dir, "generated.csv.gz")
    output = bool(gen.get("EnableManifestOutput"))
    with open(out_path + ".tmp", "wb", opener=_owner_only) as out, \
            open(data_path if output else os.devnull, "wb", opener=_owner_only) as raw, \
            (gzip.GzipFile(fileobj=raw, mode="wb") if output else raw) as data:
        for key, *_ in rows:
            line = f"{manifest_bucket},{encode_key(key)}\n".encode()
            out.write(line)
            data.write(line)
        out.flush()
        os.fsync(out.fileno())
    os.replace(out_path + ".tmp", out_path)
    descriptor = _write_output(gen, job_id, data_path, manifest_bucket, resolver) \
        if output else None
    return out_path, descriptor


def _write_output(gen: dict[str, Any], job_id: str, data_path: str, source_bucket: str,
                  resolver: Resolver) -> dict[str, Any]:
    """Put the generated manifest in S3InventoryReport_CSV_20211130 form; describe it."""
    import obstore as obs

    out = gen["ManifestOutputLocation"]
    dest = normalise_url(out["Bucket"], "ManifestOutputLocation.Bucket")
    loc = resolver.location(dest)
    store = resolver.store(loc, create=True)
    base = f"{loc.prefix}{(out.get('ManifestPrefix') or '').strip('/')}"
    base = f"{base}/job-{job_id}/" if base else f"job-{job_id}/"
    with open(data_path, "rb") as f:
        data = f.read()
    data_key = f"{base}data/manifest-{job_id}.csv.gz"
    obs.put(store, data_key, data)
    partition = given_partition(out["Bucket"]) or (
        resolver.context(loc).partition if is_s3(loc) else "aws")
    bucket_arn = s3_url_to_arn(loc.root, partition)
    manifest = orjson.dumps({
        "sourceBucket": source_bucket, "destinationBucket": bucket_arn,
        "version": "2021-11-30", "creationTimestamp": str(int(
            datetime.now(UTC).timestamp() * 1000)),
        "fileFormat": "CSV", "fileSchema": "Bucket, Key",
        "files": [{"key": data_key, "size": len(data),
                   "MD5checksum": hashlib.md5(data).hexdigest()}],
    })
    manifest_key = f"{base}manifest.json"
    obs.put(store, manifest_key, manifest)
    os.unlink(data_path)
    arn = s3_url_to_arn(f"{loc.root}/{manifest_key}", partition)
    return {"Format": GENERATED_FORMAT,
            "Location": {"ObjectArn": arn, "ETag": hashlib.md5(manifest).hexdigest()}}
