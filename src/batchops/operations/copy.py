"""`copy` (Amazon's `S3PutObjectCopy`): copy each object to a target.

- Same store, no version id: server-side copy (obstore `copy`).
- Otherwise (another store, another bucket, a version id): get → put, streamed; large
  objects go up in parts and are never held whole in memory. Content type and user
  metadata travel where both stores keep them.
- Target: `TargetResource` (a bucket ARN, a bucket name, or any store URL) plus
  `TargetKeyPrefix` as Amazon joins them (`prefix/key`), or a per-row destination from
  a JSON manifest.

Writes are atomic at the destination: S3 makes an object visible only when its PUT or
multipart upload completes; obstore's local store writes a temporary file and renames.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import obstore as obs

from ..chunk import Chunk
from ..errors import SpecError
from ..stores import Location, Resolver, normalise_url, supports_attributes
from .base import Operation, TaskError

#: Objects up to this size are copied with one GET and one PUT; larger ones stream.
SMALL_OBJECT = 16 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024


def join_prefix(prefix: str, key: str) -> str:
    """Amazon's TargetKeyPrefix `Folder1` puts `k` at `Folder1/k`."""
    if not prefix:
        return key
    return prefix + key if prefix.endswith("/") else f"{prefix}/{key}"


class CopyOperation(Operation):
    amazon_name = "S3PutObjectCopy"
    alias = "copy"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        out = dict(params)
        target = out.get("TargetResource")
        if target is not None:
            if not isinstance(target, str) or not target:
                raise SpecError("Operation.S3PutObjectCopy.TargetResource must be a bucket "
                                "ARN, bucket name or store URL")
            out["TargetResource"] = normalise_url(target, "TargetResource")
        prefix = out.get("TargetKeyPrefix", "")
        if not isinstance(prefix, str):
            raise SpecError("Operation.S3PutObjectCopy.TargetKeyPrefix must be a string")
        return out

    @classmethod
    def amazon_spec(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        spec = dict(params)
        target = spec.get("TargetResource")
        if isinstance(target, str) and target.startswith("s3://") and "/" not in target[5:]:
            spec["TargetResource"] = "arn:aws:s3:::" + target[5:]
        return {cls.amazon_name: spec}

    def __init__(self, params: Mapping[str, Any], resolver: Resolver) -> None:
        super().__init__(params, resolver)
        target = params.get("TargetResource")
        self._target: Location | None = resolver.location(target) if target else None
        self._prefix = params.get("TargetKeyPrefix") or ""

    # -- planning one task -------------------------------------------------------------

    def _plan(self, chunk: Chunk, i: int) -> tuple[Location, str, Location, str]:
        src = self.resolver.location(chunk.buckets[i])
        if chunk.dest_buckets is not None and chunk.dest_buckets[i]:
            dst = self.resolver.location(chunk.dest_buckets[i])  # type: ignore[arg-type]
            dst_key = dst.key(chunk.dest_keys[i])  # type: ignore[index]
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
        src, src_key, dst, dst_key = self._plan(chunk, i)
        version = chunk.versions[i]
        src_store = self.resolver.store(src)
        dst_store = self.resolver.store(dst, create=True)
        if src.root == dst.root and not version:
            await obs.copy_async(src_store, src_key, dst_key)
            return None
        result = await obs.get_async(src_store, src_key,
                                     options={"version": version} if version else None)
        attributes = result.attributes if supports_attributes(dst) else None
        if result.meta["size"] <= SMALL_OBJECT:
            data = await result.bytes_async()
            await obs.put_async(dst_store, dst_key, data, attributes=attributes,
                                use_multipart=False)
        else:
            await obs.put_async(dst_store, dst_key, result.stream(min_chunk_size=PART_SIZE),
                                attributes=attributes, chunk_size=PART_SIZE, max_concurrency=4)
        return None

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        src, src_key, dst, dst_key = self._plan(chunk, i)
        version = chunk.versions[i]
        if version:
            raise TaskError(400, "InvalidRequest",
                            f"{src.root} keeps no versions; cannot copy version {version}")
        src_store = self.resolver.store(src)
        dst_store = self.resolver.store(dst, create=True)
        if src.root == dst.root:
            obs.copy(src_store, src_key, dst_key)
            return None
        result = obs.get(src_store, src_key)
        attributes = result.attributes if supports_attributes(dst) else None
        if result.meta["size"] <= SMALL_OBJECT:
            obs.put(dst_store, dst_key, result.bytes(), attributes=attributes,
                    use_multipart=False)
        else:
            obs.put(dst_store, dst_key, _blocks(result), attributes=attributes,
                    chunk_size=PART_SIZE)
        return None


def _blocks(result: Any) -> Iterator[bytes]:
    """A GetResult's body as a plain (sync) iterator of blocks."""
    yield from result.stream(min_chunk_size=PART_SIZE)
