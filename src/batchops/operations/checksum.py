"""`compute-checksum` (S3ComputeObjectChecksum): a checksum of each object's bytes.

FULL_OBJECT checksums stream the object (never held whole). The report's result
message carries the value as JSON: `{"ChecksumAlgorithm": "CRC32", "ChecksumType":
"FULL_OBJECT", "Checksum": <base64, as S3's x-amz-checksum-* headers>, "ChecksumHex": ...}`.
CRC32 comes from zlib, CRC32C and CRC64NVME from awscrt (AWS's own implementation),
SHA and MD5 from hashlib, the xxHash family from xxhash.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import obstore as obs
import orjson

from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.operations.base import Operation, require_enum
from batchops.storage.localfs import FolderCopier
from batchops.storage.locations import Location, Resolver
from batchops.storage.outcomes import TaskError

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "MD5", "SHA1", "SHA256", "SHA512", "XXHASH64",
              "XXHASH3", "XXHASH128")
BLOCK = 8 * 1024 * 1024


class _Crc:
    """A running CRC with a hashlib-like interface."""

    def __init__(self, fn: Callable[[bytes, int], int], width: int) -> None:
        self._fn, self._width, self._value = fn, width, 0

    def update(self, data: Any) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def new_hasher(algorithm: str) -> Any:
    if algorithm == "CRC32":
        return _Crc(lambda d, v: zlib.crc32(d, v), 4)
    if algorithm in ("CRC32C", "CRC64NVME"):
        from awscrt import checksums

        if algorithm == "CRC32C":
            return _Crc(checksums.crc32c, 4)
        return _Crc(checksums.crc64nvme, 8)
    if algorithm.startswith("XXHASH"):
        import xxhash

        return {"XXHASH64": xxhash.xxh64, "XXHASH3": xxhash.xxh3_64,
                "XXHASH128": xxhash.xxh3_128}[algorithm]()
    return hashlib.new(algorithm.lower())


class ComputeChecksumOperation(Operation):
    amazon_name = "S3ComputeObjectChecksum"
    alias = "compute-checksum"
    verb = "checksum"

    def __init__(self, params: Mapping[str, Any], resolver: Resolver, job_id: str = "") -> None:
        super().__init__(params, resolver, job_id)
        self.folders = FolderCopier()

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        where = "Operation.S3ComputeObjectChecksum"
        algorithm = require_enum(params, "ChecksumAlgorithm", ALGORITHMS, where, required=True)
        kind = require_enum(params, "ChecksumType", ("FULL_OBJECT", "COMPOSITE"), where)
        if kind == "COMPOSITE":
            raise SpecError(f"{where}.ChecksumType COMPOSITE is not supported yet; "
                            "use FULL_OBJECT")
        return {"ChecksumAlgorithm": algorithm, "ChecksumType": "FULL_OBJECT"}

    def _message(self, hasher: Any) -> str:
        digest = hasher.digest()
        return orjson.dumps({
            "ChecksumAlgorithm": self.params["ChecksumAlgorithm"],
            "ChecksumType": "FULL_OBJECT",
            "Checksum": base64.b64encode(digest).decode(),
            "ChecksumHex": digest.hex(),
        }).decode()

    def _where(self, chunk: Chunk, i: int) -> tuple[Location, str, str | None]:
        loc = self.resolver.location(chunk.buckets[i])
        return loc, loc.key(chunk.keys[i]), chunk.versions[i]

    def sync_capable(self, chunk: Chunk) -> bool:
        return all(self.resolver.location(b).in_process for b in set(chunk.buckets)) and \
            not any(chunk.versions)

    async def run(self, chunk: Chunk, i: int) -> str | None:
        return self._message(await digest(self.resolver, self.folders, *self._where(chunk, i),
                                          self.params["ChecksumAlgorithm"]))

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        return self._message(digest_sync(self.resolver, self.folders, *self._where(chunk, i),
                                         self.params["ChecksumAlgorithm"]))


def _local_digest(folders: FolderCopier, loc: Location, key: str, version: str | None,
                  algorithm: str) -> Any:
    """A file below a file:// root is read by storage/localfs.py (the sandbox: no
    symlink followed), not obstore; None for other stores."""
    if loc.local_path is None:
        return None
    if version:
        raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
    hasher = new_hasher(algorithm)
    for block in folders.read_blocks(folders.open_source(loc.local_path, key), BLOCK):
        hasher.update(block)
    return hasher


def digest_sync(resolver: Resolver, folders: FolderCopier, loc: Location, key: str,
                version: str | None, algorithm: str) -> Any:
    """The finished hasher of `algorithm` over the object's bytes (streamed), on the
    sync path (in-process stores)."""
    hasher = _local_digest(folders, loc, key, version, algorithm)
    if hasher is not None:
        return hasher
    hasher = new_hasher(algorithm)
    result = obs.get(resolver.store(loc), key, options={"version": version} if version else None)
    for block in result.stream(min_chunk_size=BLOCK):
        hasher.update(block)
    return hasher


async def digest(resolver: Resolver, folders: FolderCopier, loc: Location, key: str,
                 version: str | None, algorithm: str) -> Any:
    """`digest_sync` for any store, on the event loop."""
    hasher = _local_digest(folders, loc, key, version, algorithm)
    if hasher is not None:
        return hasher
    hasher = new_hasher(algorithm)
    result = await obs.get_async(resolver.store(loc), key,
                                 options={"version": version} if version else None)
    async for block in result.stream(min_chunk_size=BLOCK):
        hasher.update(block)
    return hasher
