"""`verify` (ours; `BatchopsVerifyObject`): compare each object with its copy at the
target, without copying anything.

The target is found as `copy` finds it (TargetResource + TargetKeyPrefix, or a JSON
manifest row's destination); objects are compared by `Compare` (size | size+mtime |
etag | checksum; operations/compare.py). A difference is a failed task whose error code
names the property (TargetMissing, SizeMismatch, TargetOlder, ETagMismatch,
ChecksumMismatch), so the report's failed-tasks parts are a manifest of what to copy
again (`batchops retry-failed` with `--operation copy`, or a copy job over them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from batchops.manifest.reader import ManifestInfo
from batchops.model.chunk import Chunk
from batchops.model.compare import CompareMode
from batchops.model.errors import SpecError
from batchops.operations.base import Operation
from batchops.operations.compare import ObjectComparer, mismatch
from batchops.operations.copy import CopyOperation
from batchops.storage.locations import Location, Resolver

DEFAULT_MODE = CompareMode.ETAG
_WHERE = "Operation.BatchopsVerifyObject"


class VerifyOperation(Operation):
    amazon_name = "BatchopsVerifyObject"
    alias = "verify"
    verb = "verify"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        unknown = set(params) - {"TargetResource", "TargetKeyPrefix", "Compare"}
        if unknown:
            raise SpecError(f"{_WHERE} takes TargetResource, TargetKeyPrefix and Compare, "
                            f"not {', '.join(sorted(unknown))}")
        out = CopyOperation.validate({k: v for k, v in params.items() if k != "Compare"},
                                     resolver)
        out["Compare"] = CompareMode.parse(params.get("Compare") or DEFAULT_MODE,
                                           f"{_WHERE}.Compare").value
        return out

    @classmethod
    def check_manifest(cls, params: Mapping[str, Any], info: ManifestInfo) -> None:
        CopyOperation.check_manifest(params, info)

    @classmethod
    def check_locations(cls, params: Mapping[str, Any], sources: Iterable[Location]) -> None:
        """Any store can be compared with any other."""

    def __init__(self, params: Mapping[str, Any], resolver: Resolver, job_id: str = "") -> None:
        super().__init__(params, resolver, job_id)
        self._targets = CopyOperation({k: v for k, v in params.items() if k != "Compare"},
                                      resolver, job_id)
        self.comparer = ObjectComparer(resolver, CompareMode(params.get("Compare",
                                                                        DEFAULT_MODE)))

    def sync_capable(self, chunk: Chunk) -> bool:
        return self._targets.sync_capable(chunk)

    def sync_chunk_done(self) -> None:
        self.comparer.folders.release()

    async def run(self, chunk: Chunk, i: int) -> str | None:
        src, src_key, dst, dst_key = self._targets.plan(chunk, i)
        diff, a, b = await self.comparer.difference(src, src_key, chunk.versions[i], dst,
                                                    dst_key)
        if diff is not None:
            raise mismatch(diff, a, b)
        return None

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        src, src_key, dst, dst_key = self._targets.plan(chunk, i)
        diff, a, b = self.comparer.difference_sync(src, src_key, chunk.versions[i], dst,
                                                   dst_key)
        if diff is not None:
            raise mismatch(diff, a, b)
        return None

