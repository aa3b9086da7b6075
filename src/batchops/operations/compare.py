"""Comparing a source object with its copy, by a CompareMode (model/compare.py holds the
modes and the rule; this module fetches what the rule needs).

Metadata come from one HEAD per side: a stat (no symlink followed) for a local file;
S3's HeadObject with `ChecksumMode=ENABLED` where stored checksums or a version id
matter (`checksum` mode, a versioned source); obstore's head otherwise. Where the
checksum mode needs the bytes, they are hashed by operations/checksum.py's code (on the
side or sides that have no stored checksum of the algorithm). A missing target is a
difference (TargetMissing); a missing source fails as NoSuchKey, as any operation's.

Used by `verify` (a difference fails the task), `copy --verify` (after the copy) and
`copy --skip-unchanged` (no difference: the task is skipped).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import obstore as obs

from batchops.model.compare import (
    CompareMode,
    Difference,
    ObjectInfo,
    checksum_plan,
    metadata_difference,
)
from batchops.operations.checksum import digest, digest_sync
from batchops.storage.localfs import FolderCopier
from batchops.storage.locations import Location, Resolver, is_s3, s3_bucket
from batchops.storage.outcomes import TaskError, classify

#: HeadObject's stored checksum members, by algorithm.
_CHECKSUM_MEMBERS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "SHA512", "MD5",
                     "XXHASH64", "XXHASH3", "XXHASH128")


def mismatch(diff: Difference, src: ObjectInfo | None, dst: ObjectInfo | None) -> TaskError:
    """The failed task a difference is: its error code names the property."""
    return TaskError(diff.http_status, diff.value, diff.describe(src, dst))


def _timestamp(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value or 0)


def _from_obstore(meta: Mapping[str, Any]) -> ObjectInfo:
    etag = meta.get("e_tag")
    return ObjectInfo(int(meta["size"]), _timestamp(meta.get("last_modified")),
                      etag.strip('"') if etag else None)


def _from_head(head: Mapping[str, Any]) -> ObjectInfo:
    """S3 HeadObject's answer; only FULL_OBJECT checksums (a COMPOSITE one, of a
    multipart upload, is not a checksum of the bytes)."""
    checksums: tuple[tuple[str, str], ...] = ()
    if head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        checksums = tuple((a, head[f"Checksum{a}"]) for a in _CHECKSUM_MEMBERS
                          if head.get(f"Checksum{a}") and "-" not in head[f"Checksum{a}"])
    etag = head.get("ETag")
    return ObjectInfo(int(head["ContentLength"]), _timestamp(head.get("LastModified")),
                      etag.strip('"') if etag else None, checksums)


def _missing(exc: Exception) -> bool:
    """Whether a HEAD's failure means "no such object" (a bug raises from classify)."""
    return classify(exc).http_status == 404


class ObjectComparer:
    """Compares objects by one mode; one per operation instance (per worker)."""

    def __init__(self, resolver: Resolver, mode: CompareMode,
                 folders: FolderCopier | None = None) -> None:
        self.resolver = resolver
        self.mode = mode
        self.folders = folders or FolderCopier()

    # -- metadata ----------------------------------------------------------------------

    def _stat(self, loc: Location, key: str, version: str | None) -> ObjectInfo | None:
        """A local file's size and modification time; None for other stores."""
        if loc.local_path is None:
            return None
        if version:
            raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
        fd = self.folders.open_source(loc.local_path, key)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return ObjectInfo(st.st_size, st.st_mtime)

    def _use_s3_api(self, loc: Location, version: str | None) -> bool:
        return is_s3(loc) and (bool(version) or self.mode is CompareMode.CHECKSUM)

    def head_sync(self, loc: Location, key: str, version: str | None = None,
                  missing_ok: bool = False) -> ObjectInfo | None:
        """The object's metadata on the sync path (in-process stores); None when it is
        not there and `missing_ok`."""
        try:
            info = self._stat(loc, key, version)
            if info is not None:
                return info
            if version:
                raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
            return _from_obstore(obs.head(self.resolver.store(loc), key))
        except Exception as exc:
            if missing_ok and _missing(exc):
                return None
            raise

    async def head(self, loc: Location, key: str, version: str | None = None,
                   missing_ok: bool = False) -> ObjectInfo | None:
        """The object's metadata, from any store."""
        try:
            info = self._stat(loc, key, version)
            if info is not None:
                return info
            if self._use_s3_api(loc, version):
                client = await self.resolver.s3api(loc).client()
                args: dict[str, Any] = {"Bucket": s3_bucket(loc), "Key": key,
                                        "ChecksumMode": "ENABLED"}
                if version:
                    args["VersionId"] = version
                return _from_head(await client.head_object(**args))
            if version:
                raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
            return _from_obstore(await obs.head_async(self.resolver.store(loc), key))
        except Exception as exc:
            if missing_ok and _missing(exc):
                return None
            raise

    # -- comparing ---------------------------------------------------------------------

    @staticmethod
    def _content_difference(src: ObjectInfo, dst: ObjectInfo, algorithm: str,
                            digests: tuple[str | None, str | None]) -> Difference | None:
        a = digests[0] if digests[0] is not None else src.checksum(algorithm)
        b = digests[1] if digests[1] is not None else dst.checksum(algorithm)
        return None if a == b else Difference.CHECKSUM

    @staticmethod
    def _encoded(hasher: Any) -> str | None:
        return None if hasher is None else base64.b64encode(hasher.digest()).decode()

    def difference_sync(self, src: Location, src_key: str, version: str | None,
                        dst: Location, dst_key: str,
                        ) -> tuple[Difference | None, ObjectInfo, ObjectInfo | None]:
        """(what differs or None, the source's metadata, the target's or None), on the
        sync path."""
        a = self.head_sync(src, src_key, version)
        assert a is not None
        b = self.head_sync(dst, dst_key, missing_ok=True)
        diff = metadata_difference(self.mode, a, b)
        if diff is None and b is not None and self.mode is CompareMode.CHECKSUM:
            plan = checksum_plan(a, b)
            if plan is not None:
                algorithm, on_src, on_dst = plan
                digests = (
                    self._encoded(digest_sync(self.resolver, self.folders, src, src_key,
                                              version, algorithm)) if on_src else None,
                    self._encoded(digest_sync(self.resolver, self.folders, dst, dst_key,
                                              None, algorithm)) if on_dst else None)
                diff = self._content_difference(a, b, algorithm, digests)
        return diff, a, b

    async def difference(self, src: Location, src_key: str, version: str | None,
                         dst: Location, dst_key: str,
                         ) -> tuple[Difference | None, ObjectInfo, ObjectInfo | None]:
        """`difference_sync` for any stores, on the event loop."""
        a = await self.head(src, src_key, version)
        assert a is not None
        b = await self.head(dst, dst_key, missing_ok=True)
        diff = metadata_difference(self.mode, a, b)
        if diff is None and b is not None and self.mode is CompareMode.CHECKSUM:
            plan = checksum_plan(a, b)
            if plan is not None:
                algorithm, on_src, on_dst = plan
                digests = (
                    self._encoded(await digest(self.resolver, self.folders, src, src_key,
                                               version, algorithm)) if on_src else None,
                    self._encoded(await digest(self.resolver, self.folders, dst, dst_key,
                                               None, algorithm)) if on_dst else None)
                diff = self._content_difference(a, b, algorithm, digests)
        return diff, a, b


__all__ = ["ObjectComparer", "mismatch"]
