"""`copy` (Amazon's `S3PutObjectCopy`): copy each object to a target.

How a task copies, cheapest first:
- same store, no version id, no options: server-side copy (obstore `copy`);
- S3 to S3 (another bucket, a version id, or any of Amazon's copy options): S3's
  CopyObject through the S3 API client, server-side, with the options applied; objects
  over 5 GB go through multipart copy (UploadPartCopy), since one CopyObject fails above
  that size: its parts are copied PART_CONCURRENCY at a time, and a part that fails is
  retried on its own (the object starts over only once a part's attempts are spent);
- otherwise (another store): get → put, streamed; large objects go up in parts and are
  never held whole in memory. Content type and user metadata travel where both stores
  keep them.

Target: `TargetResource` (a bucket ARN, a bucket name, or any store URL) plus
`TargetKeyPrefix` as Amazon joins them (`prefix/key`), or a per-row destination from a
JSON manifest. Writes are atomic at the destination: S3 shows an object only when its
PUT, copy or multipart upload completes; a local folder gets a temporary file renamed
into place. Folder to folder, a whole chunk is copied in one native call
(`run_chunk_sync`); every local path obeys the sandbox (no symlink followed below a
file:// root, storage/localfs.py; local files are read and written there, never by
obstore), and `make_durable` syncs the folders written before the chunk's marker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

import obstore as obs

from batchops.manifest.reader import ManifestInfo
from batchops.model.arns import s3_url_to_arn
from batchops.model.chunk import Chunk
from batchops.model.compare import CompareMode, Difference, ObjectInfo
from batchops.model.errors import ManifestError, SpecError
from batchops.model.spec import check_tag_set
from batchops.operations.acl import grant_headers
from batchops.operations.base import Operation, require_enum
from batchops.operations.compare import ObjectComparer, mismatch
from batchops.operations.objectlock import parse_timestamp
from batchops.storage.localfs import FolderCopier
from batchops.storage.locations import (
    Location,
    Resolver,
    is_s3,
    normalise_url,
    s3_bucket,
    supports_attributes,
)
from batchops.storage.outcomes import TaskError
from batchops.storage.s3api import CrtS3Error

#: Objects up to this size are copied with one GET and one PUT; larger ones stream.
SMALL_OBJECT = 16 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
#: S3 refuses a single CopyObject above 5 GB.
MAX_SINGLE_COPY = 5 * 1024**3
#: A multipart copy's UploadPartCopy calls in flight at once (per object), and how often
#: one part is tried before the object's copy fails (its failure then goes to the task
#: loop, which retries the whole object). aws-cli sends 10 requests at once.
PART_CONCURRENCY = 8
PART_ATTEMPTS = 5
_WHERE = "Operation.S3PutObjectCopy"
STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "GLACIER", "INTELLIGENT_TIERING",
                   "DEEP_ARCHIVE", "GLACIER_IR")
#: CopyObject's ChecksumAlgorithm: all ten of the s3control (and S3) model.
CHECKSUMS = ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME", "SHA512", "MD5", "XXHASH64",
             "XXHASH3", "XXHASH128")
CANNED = ("private", "public-read", "public-read-write", "aws-exec-read", "authenticated-read",
          "bucket-owner-read", "bucket-owner-full-control")
#: Options only S3's CopyObject can apply.
S3_OPTIONS = ("StorageClass", "MetadataDirective", "NewObjectMetadata", "NewObjectTagging",
              "CannedAccessControlList", "AccessControlGrants", "ChecksumAlgorithm",
              "ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus",
              "SSEAwsKmsKeyId", "BucketKeyEnabled", "RequesterPays",
              "ModifiedSinceConstraint", "UnModifiedSinceConstraint", "RedirectLocation",
              "BatchopsMultipartThreshold", "BatchopsMultipartPartSize",
              "BatchopsMultipartConcurrency")
_GRANT_ARGS = MappingProxyType({"READ": "GrantRead", "READ_ACP": "GrantReadACP",
                                "WRITE_ACP": "GrantWriteACP",
                                "FULL_CONTROL": "GrantFullControl"})


def join_prefix(prefix: str, key: str) -> str:
    """Amazon's TargetKeyPrefix `Folder1` puts `k` at `Folder1/k`."""
    if not prefix:
        return key
    return prefix + key if prefix.endswith("/") else f"{prefix}/{key}"


def _validate_options(out: dict[str, Any]) -> None:
    require_enum(out, "StorageClass", STORAGE_CLASSES, _WHERE)
    require_enum(out, "MetadataDirective", ("COPY", "REPLACE"), _WHERE)
    require_enum(out, "CannedAccessControlList", CANNED, _WHERE)
    require_enum(out, "ChecksumAlgorithm", CHECKSUMS, _WHERE)
    require_enum(out, "ObjectLockMode", ("COMPLIANCE", "GOVERNANCE"), _WHERE)
    require_enum(out, "ObjectLockLegalHoldStatus", ("ON", "OFF"), _WHERE)
    if "NewObjectTagging" in out:
        out["NewObjectTagging"] = check_tag_set(out["NewObjectTagging"],
                                                f"{_WHERE}.NewObjectTagging")
    if "ObjectLockRetainUntilDate" in out:
        out["ObjectLockRetainUntilDate"] = parse_timestamp(
            out["ObjectLockRetainUntilDate"], f"{_WHERE}.ObjectLockRetainUntilDate")
    for name in ("ModifiedSinceConstraint", "UnModifiedSinceConstraint"):
        if name in out:
            out[name] = parse_timestamp(out[name], f"{_WHERE}.{name}")
    if "RedirectLocation" in out and not isinstance(out["RedirectLocation"], str):
        raise SpecError(f"{_WHERE}.RedirectLocation must be a string (a URL or /path)")
    for name in ("BatchopsVerify", "BatchopsSkipUnchanged"):
        if name in out:
            out[name] = CompareMode.parse(out[name], f"{_WHERE}.{name}").value
    if ("ObjectLockMode" in out) != ("ObjectLockRetainUntilDate" in out):
        raise SpecError(f"{_WHERE}: ObjectLockMode and ObjectLockRetainUntilDate go together")
    meta = out.get("NewObjectMetadata")
    if meta is not None:
        if not isinstance(meta, dict) or not isinstance(meta.get("UserMetadata", {}), dict):
            raise SpecError(f"{_WHERE}.NewObjectMetadata must be an object "
                            "(ContentType, CacheControl, UserMetadata, ...)")
        require_enum(meta, "SSEAlgorithm", ("AES256", "KMS"), f"{_WHERE}.NewObjectMetadata")
        if out.get("MetadataDirective", "REPLACE") != "REPLACE":
            raise SpecError(f"{_WHERE}: NewObjectMetadata needs MetadataDirective REPLACE")
        out["MetadataDirective"] = "REPLACE"
    for n, grant in enumerate(out.get("AccessControlGrants") or []):
        grantee = grant.get("Grantee") if isinstance(grant, dict) else None
        if not isinstance(grantee, dict) or \
                grantee.get("TypeIdentifier") not in ("id", "emailAddress", "uri") or \
                grant.get("Permission") not in _GRANT_ARGS:
            raise SpecError(f"{_WHERE}.AccessControlGrants[{n}] needs Grantee.TypeIdentifier "
                            "(id | emailAddress | uri), Grantee.Identifier and Permission "
                            f"({' | '.join(_GRANT_ARGS)})")


def copy_object_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """Amazon's S3PutObjectCopy options → S3 CopyObject request arguments."""
    args: dict[str, Any] = {}
    for name, arg in (("StorageClass", "StorageClass"), ("MetadataDirective", "MetadataDirective"),
                      ("CannedAccessControlList", "ACL"), ("ChecksumAlgorithm",
                                                           "ChecksumAlgorithm"),
                      ("ObjectLockMode", "ObjectLockMode"),
                      ("ObjectLockLegalHoldStatus", "ObjectLockLegalHoldStatus"),
                      ("BucketKeyEnabled", "BucketKeyEnabled")):
        if params.get(name) is not None:
            args[arg] = params[name]
    for name, arg in (("ObjectLockRetainUntilDate", "ObjectLockRetainUntilDate"),
                      ("ModifiedSinceConstraint", "CopySourceIfModifiedSince"),
                      ("UnModifiedSinceConstraint", "CopySourceIfUnmodifiedSince")):
        if params.get(name):
            args[arg] = datetime.fromisoformat(str(params[name]).replace("Z", "+00:00"))
    if params.get("RedirectLocation"):
        args["WebsiteRedirectLocation"] = params["RedirectLocation"]
    if params.get("SSEAwsKmsKeyId"):
        args["ServerSideEncryption"] = "aws:kms"
        args["SSEKMSKeyId"] = params["SSEAwsKmsKeyId"]
    if params.get("RequesterPays"):
        args["RequestPayer"] = "requester"
    meta = params.get("NewObjectMetadata")
    if meta:
        for name in ("CacheControl", "ContentDisposition", "ContentEncoding",
                     "ContentLanguage", "ContentType"):
            if meta.get(name):
                args[name] = meta[name]
        if meta.get("SSEAlgorithm") and not params.get("SSEAwsKmsKeyId"):
            args["ServerSideEncryption"] = ("aws:kms" if meta["SSEAlgorithm"] == "KMS"
                                            else "AES256")
        if meta.get("HttpExpiresDate"):
            args["Expires"] = datetime.fromisoformat(
                str(meta["HttpExpiresDate"]).replace("Z", "+00:00"))
        args["Metadata"] = dict(meta.get("UserMetadata") or {})
    if params.get("NewObjectTagging") is not None:
        args["TaggingDirective"] = "REPLACE"
        args["Tagging"] = urlencode([(t["Key"], t["Value"]) for t in params["NewObjectTagging"]])
    args.update(grant_headers(
        (g["Grantee"]["TypeIdentifier"], g["Grantee"]["Identifier"], g["Permission"])
        for g in params.get("AccessControlGrants") or []))
    return args


class CopyOperation(Operation):
    amazon_name = "S3PutObjectCopy"
    alias = "copy"
    verb = "copy"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        out = {k: v for k, v in params.items() if v is not None}
        target = out.get("TargetResource")
        if target is not None:
            if not isinstance(target, str) or not target:
                raise SpecError(f"{_WHERE}.TargetResource must be a bucket ARN, bucket name "
                                "or store URL")
            out["TargetResource"] = normalise_url(target, "TargetResource")
        if not isinstance(out.get("TargetKeyPrefix", ""), str):
            raise SpecError(f"{_WHERE}.TargetKeyPrefix must be a string")
        _validate_options(out)
        if target is not None and any(k in out for k in S3_OPTIONS):
            loc = resolver.location(out["TargetResource"])
            if not is_s3(loc):
                used = ", ".join(k for k in S3_OPTIONS if k in out)
                raise SpecError(f"{_WHERE}: {used} can only be applied by S3; the target "
                                f"{loc.root} is not an S3 bucket")
        return out

    @classmethod
    def check_manifest(cls, params: Mapping[str, Any], info: ManifestInfo) -> None:
        """Without TargetResource every row names its destination (a JSON Lines rename
        manifest); the first that does not is refused with its row number."""
        if not params.get("TargetResource") and info.first_without_destination:
            raise ManifestError(info.location, info.first_without_destination,
                                "this row names no destination, and the job has no target: "
                                "give --target URL (TargetResource), or a \"destination\" "
                                "on every JSON Lines row")

    @classmethod
    def check_locations(cls, params: Mapping[str, Any], sources: Iterable[Location]) -> None:
        if any(k in params for k in S3_OPTIONS):
            for loc in sources:
                if not is_s3(loc):
                    raise SpecError(f"{_WHERE}: copy options are applied by S3's CopyObject; "
                                    f"the source {loc.root} is not an S3 bucket")

    @classmethod
    def amazon_spec(cls, params: Mapping[str, Any], partition: str = "aws") -> dict[str, Any]:
        spec = {k: v for k, v in params.items() if not k.startswith("Batchops")}
        target = spec.get("TargetResource")
        if isinstance(target, str) and target.startswith("s3://") and "/" not in target[5:]:
            spec["TargetResource"] = s3_url_to_arn(target, partition)
        return {cls.amazon_name: spec}

    def __init__(self, params: Mapping[str, Any], resolver: Resolver, job_id: str = "") -> None:
        super().__init__(params, resolver, job_id)
        target = params.get("TargetResource")
        self._target: Location | None = resolver.location(target) if target else None
        self._prefix = params.get("TargetKeyPrefix") or ""
        self._s3_args = copy_object_args(params)
        self._has_options = any(k in params for k in S3_OPTIONS)
        self._multipart_threshold = int(params.get("BatchopsMultipartThreshold",
                                                   MAX_SINGLE_COPY))
        self._part_size = int(params.get("BatchopsMultipartPartSize", 0))  # 0: by size
        self._part_concurrency = max(1, int(params.get("BatchopsMultipartConcurrency",
                                                       PART_CONCURRENCY)))
        self.folders = FolderCopier()
        # --verify: compared after the copy; --skip-unchanged: compared first.
        verify, skip = params.get("BatchopsVerify"), params.get("BatchopsSkipUnchanged")
        self._verify = ObjectComparer(resolver, CompareMode(verify), self.folders) \
            if verify else None
        self._skip = ObjectComparer(resolver, CompareMode(skip), self.folders) \
            if skip else None
        self._unchanged = f"unchanged ({skip}): not copied"

    # -- planning one task -------------------------------------------------------------

    def plan(self, chunk: Chunk, i: int) -> tuple[Location, str, Location, str]:
        """(source location, source key, destination location, destination key)."""
        src = self.resolver.location(chunk.buckets[i])
        if chunk.dest_buckets is not None and chunk.dest_buckets[i]:
            dst = self.resolver.location(chunk.dest_buckets[i])  # type: ignore[arg-type]
            dst_key = dst.key(chunk.dest_keys[i])  # type: ignore[index, arg-type]
        elif self._target is not None:
            dst = self._target
            dst_key = dst.key(join_prefix(self._prefix, chunk.keys[i]))
        else:
            raise TaskError(400, "InvalidRequest",
                            "no TargetResource and no destination for this row")
        return src, src.key(chunk.keys[i]), dst, dst_key

    def sync_capable(self, chunk: Chunk) -> bool:
        if self._target is not None and not self._target.in_process:
            return False
        buckets = set(chunk.buckets)
        if chunk.dest_buckets is not None:
            buckets.update(b for b in chunk.dest_buckets if b)
        return all(self.resolver.location(b).in_process for b in buckets)

    # -- running -----------------------------------------------------------------------

    async def run(self, chunk: Chunk, i: int) -> str | None:
        src, src_key, dst, dst_key = self.plan(chunk, i)
        version = chunk.versions[i]
        if src.local_path is not None and dst.local_path is not None:
            return self.run_sync(chunk, i)  # folder to folder: the native copy
        where = (src, src_key, version, dst, dst_key)
        if self._skip is not None and (await self._skip.difference(*where))[0] is None:
            return self._unchanged
        await self._copy(*where)
        if self._verify is not None:
            _verified(await self._verify.difference(*where))
        return None

    async def _copy(self, src: Location, src_key: str, version: str | None, dst: Location,
                    dst_key: str) -> None:
        if src.root == dst.root and src.aws == dst.aws and not version \
                and not self._has_options:
            await obs.copy_async(self.resolver.store(src), src_key, dst_key)
            return
        if self.resolver.same_account(src, dst):  # else get → put between the two
            await self.s3_copy(src, src_key, version, dst, dst_key, self._s3_args)
            return
        await self.stream_copy(src, src_key, version, dst, dst_key)

    async def s3_copy(self, src: Location, src_key: str, version: str | None, dst: Location,
                      dst_key: str, extra: dict[str, Any]) -> None:
        """Server-side S3 copy; multipart (UploadPartCopy) above the single-copy limit."""
        if not extra and self._multipart_threshold >= MAX_SINGLE_COPY:
            try:
                await self.resolver.s3api(dst).copier().copy(s3_bucket(src), src_key, version,
                                                          s3_bucket(dst), dst_key)
                return
            except CrtS3Error as exc:
                if exc.response["Error"]["Code"] not in ("EntityTooLarge", "InvalidRequest"):
                    raise
                # Too large for one CopyObject: fall through to the multipart path.
        client = await self.resolver.s3api(dst).client()
        source: dict[str, str] = {"Bucket": s3_bucket(src), "Key": src_key}
        if version:
            source["VersionId"] = version
        if self._multipart_threshold < MAX_SINGLE_COPY:
            head = await client.head_object(**source)
            if head["ContentLength"] > self._multipart_threshold:
                await self._multipart_copy(client, source, head, s3_bucket(dst), dst_key, extra)
                return
        try:
            await client.copy_object(Bucket=s3_bucket(dst), Key=dst_key, CopySource=source,
                                     **extra)
        except Exception as exc:
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code not in ("EntityTooLarge", "InvalidRequest"):
                raise
            head = await client.head_object(**source)
            if head["ContentLength"] <= MAX_SINGLE_COPY:
                raise
            await self._multipart_copy(client, source, head, s3_bucket(dst), dst_key, extra)

    async def _multipart_copy(self, client: Any, source: dict[str, str], head: dict[str, Any],
                              bucket: str, key: str, extra: dict[str, Any]) -> None:
        size = head["ContentLength"]
        create = {k: v for k, v in extra.items() if k not in ("MetadataDirective",
                                                                "TaggingDirective")}
        if extra.get("MetadataDirective") != "REPLACE":
            # CreateMultipartUpload copies nothing: carry the source's metadata over.
            for name in ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding",
                         "ContentLanguage"):
                if head.get(name):
                    create[name] = head[name]
            create["Metadata"] = head.get("Metadata") or {}
        if "Tagging" not in create:
            tags = await client.get_object_tagging(**source)
            if tags.get("TagSet"):
                create["Tagging"] = urlencode([(t["Key"], t["Value"]) for t in tags["TagSet"]])
        part = max(64 * 1024 * 1024, -(-size // 10_000))
        if self._multipart_threshold < MAX_SINGLE_COPY:
            part = max(5 * 1024 * 1024, min(part, -(-size // 2)))
        if self._part_size:
            part = max(5 * 1024 * 1024, self._part_size, -(-size // 10_000))
        upload = await client.create_multipart_upload(Bucket=bucket, Key=key, **create)
        upload_id = upload["UploadId"]
        try:
            parts = await self._copy_parts(client, source, size, part, bucket, key, upload_id)
            await client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                   MultipartUpload={"Parts": parts})
        except BaseException:
            await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    async def _copy_parts(self, client: Any, source: dict[str, str], size: int, part: int,
                          bucket: str, key: str, upload_id: str) -> list[dict[str, Any]]:
        """UploadPartCopy of every part, `self._part_concurrency` at once; a part whose
        call fails in a retryable way is sent again (alone, after a backoff or the
        store's Retry-After), up to PART_ATTEMPTS times. The first part that cannot be
        copied cancels the others and fails the object."""
        import asyncio

        from batchops.storage.outcomes import classify

        ranges = iter(enumerate(range(0, size, part), 1))
        done: dict[int, str] = {}

        async def copy_part(n: int, start: int) -> None:
            end = min(start + part, size) - 1
            for attempt in range(1, PART_ATTEMPTS + 1):
                try:
                    r = await client.upload_part_copy(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                        CopySource=source, CopySourceRange=f"bytes={start}-{end}")
                    done[n] = r["CopyPartResult"]["ETag"]
                    return
                except Exception as exc:
                    outcome = classify(exc)
                    if not outcome.retryable or attempt == PART_ATTEMPTS:
                        raise
                    await asyncio.sleep(max(min(0.1 * 2 ** (attempt - 1), 5.0),
                                            outcome.retry_after))

        async def lane() -> None:
            for n, start in ranges:  # one shared iterator: each part is taken once
                await copy_part(n, start)

        lanes = [asyncio.ensure_future(lane())
                 for _ in range(min(self._part_concurrency, -(-size // part)))]
        try:
            await asyncio.gather(*lanes)
        except BaseException:
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            raise
        return [{"PartNumber": n, "ETag": done[n]} for n in sorted(done)]

    async def stream_copy(self, src: Location, src_key: str, version: str | None,
                          dst: Location, dst_key: str,
                          tags: dict[str, str] | None = None) -> None:
        """get → put through this process; parts for large objects. A local folder is read
        or written by storage/localfs.py (the sandbox, and its temporaries), not obstore."""
        if src.local_path is not None:
            self._no_version(src, version)
            fd = self.folders.open_source(src.local_path, src_key)
            size = os.fstat(fd).st_size
            body: Any = self.folders.read_blocks(fd, PART_SIZE)
            attributes = None
        else:
            result = await obs.get_async(self.resolver.store(src), src_key,
                                         options={"version": version} if version else None)
            size = int(result.meta["size"])
            # A result is read once: whole (bytes_async, below) or as a stream.
            body = result.stream(min_chunk_size=PART_SIZE) \
                if size > SMALL_OBJECT or dst.local_path is not None else None
            attributes = result.attributes if supports_attributes(dst) else None
        await self.throttle_bytes(size)
        if dst.local_path is not None:
            await self.folders.write_async(dst.local_path, dst_key, body)
            self.moved(size)
            return
        dst_store = self.resolver.store(dst, create=True)
        extra: dict[str, Any] = {"attributes": attributes}
        if tags:
            extra["tags"] = tags
        if size <= SMALL_OBJECT:
            data = b"".join(body) if src.local_path is not None else await result.bytes_async()
            await obs.put_async(dst_store, dst_key, data, use_multipart=False, **extra)
        else:
            await obs.put_async(dst_store, dst_key, body, chunk_size=PART_SIZE,
                                max_concurrency=4, **extra)
        self.moved(size)

    def sync_chunk_done(self) -> None:
        self.folders.release()

    def take_bytes(self) -> int:
        return super().take_bytes() + self.folders.take_bytes()  # (native folder copies)

    def make_durable(self) -> None:
        self.folders.make_durable()

    @staticmethod
    def _no_version(src: Location, version: str | None) -> None:
        if version:
            raise TaskError(400, "InvalidRequest",
                            f"{src.root} keeps no versions; cannot copy version {version}")

    def run_chunk_sync(self, chunk: Chunk, indices: list[int]) -> list[Any] | None:
        """Folder to folder: the whole chunk in one native call (storage/localfs.py)."""
        if not indices or self._skip or self._verify:
            return None  # comparisons go file by file
        items: list[tuple[str, str, str, str]] = []
        where: list[int] = []
        out: list[Any] = [None] * len(indices)
        target = self._target
        if chunk.dest_buckets is None and target is not None:
            # The usual chunk, every row to the target: plan() inlined (it cost a third of
            # the Python time per file around the native call).
            if target.local_path is None:
                return None
            dst_root, dst_prefix, prefix = target.local_path, target.prefix, self._prefix
            buckets, keys, versions = chunk.buckets, chunk.keys, chunk.versions
            last, src_root, src_prefix = None, "", ""
            for n, i in enumerate(indices):
                if buckets[i] != last:
                    last = buckets[i]
                    src = self.resolver.location(last)
                    if src.local_path is None:
                        return None  # not every row is folder to folder
                    src_root, src_prefix = src.local_path, src.prefix
                if versions[i]:
                    out[n] = TaskError(400, "InvalidRequest", f"{src.root} keeps no versions; "
                                       f"cannot copy version {versions[i]}")
                    continue
                key = keys[i]
                items.append((src_root, src_prefix + key, dst_root,
                              dst_prefix + join_prefix(prefix, key)))
                where.append(n)
        else:  # per-row destinations
            for n, i in enumerate(indices):
                try:
                    src, src_key, dst, dst_key = self.plan(chunk, i)
                except TaskError as exc:
                    out[n] = exc
                    continue
                if src.local_path is None or dst.local_path is None:
                    return None  # not every row is folder to folder
                if chunk.versions[i]:
                    out[n] = TaskError(400, "InvalidRequest", f"{src.root} keeps no versions; "
                                       f"cannot copy version {chunk.versions[i]}")
                    continue
                items.append((src.local_path, src_key, dst.local_path, dst_key))
                where.append(n)
        for n, result in zip(where, self.folders.copy_chunk(items, self.bytes_limiter),
                             strict=True):
            out[n] = result
        return out

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        src, src_key, dst, dst_key = self.plan(chunk, i)
        self._no_version(src, chunk.versions[i])
        where = (src, src_key, None, dst, dst_key)
        if self._skip is not None and self._skip.difference_sync(*where)[0] is None:
            return self._unchanged
        self._copy_sync(src, src_key, dst, dst_key)
        if self._verify is not None:
            _verified(self._verify.difference_sync(*where))
        return None

    def _copy_sync(self, src: Location, src_key: str, dst: Location, dst_key: str) -> None:
        if src.local_path is not None and dst.local_path is not None:
            # Always a real copy: obstore's same-folder copy is a hard link, which a later
            # in-place write to either file would show in both.
            # --max-bytes-per-second paces the copy itself, slice by slice.
            self.folders.copy(src.local_path, src_key, dst.local_path, dst_key,
                              self.bytes_limiter)
            return
        # Memory and local folders (read and written by storage/localfs.py, not obstore).
        if src.root == dst.root:
            obs.copy(self.resolver.store(src), src_key, dst_key)
            return
        if src.local_path is not None:
            fd = self.folders.open_source(src.local_path, src_key)
            size = os.fstat(fd).st_size
            body: Any = self.folders.read_blocks(fd, PART_SIZE)
            attributes = None
        else:
            result = obs.get(self.resolver.store(src), src_key)
            size = int(result.meta["size"])
            body = [result.bytes()] if size <= SMALL_OBJECT else _blocks(result)
            attributes = result.attributes if supports_attributes(dst) else None
        self.throttle_bytes_sync(size)
        if dst.local_path is not None:
            self.folders.write(dst.local_path, dst_key, body)
            self.moved(size)
            return
        dst_store = self.resolver.store(dst, create=True)
        if size <= SMALL_OBJECT:
            obs.put(dst_store, dst_key, b"".join(body), attributes=attributes,
                    use_multipart=False)
        else:
            obs.put(dst_store, dst_key, body, attributes=attributes, chunk_size=PART_SIZE)
        self.moved(size)


def _verified(compared: tuple[Difference | None, ObjectInfo, ObjectInfo | None]) -> None:
    """--verify: a copy that differs from its source fails its task."""
    diff, src, dst = compared
    if diff is not None:
        raise mismatch(diff, src, dst)


def _blocks(result: Any) -> Iterator[bytes]:
    """A GetResult's body as a plain (sync) iterator of blocks."""
    yield from result.stream(min_chunk_size=PART_SIZE)
