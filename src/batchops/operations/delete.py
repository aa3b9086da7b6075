"""`delete` (ours; Amazon has no delete operation): delete each object, or the named
version. Destructive: a job needs `--confirm-delete` (or runs as `--dry-run`).

In a local folder, the file is removed relative to its folder's descriptor, opened from
the root one folder at a time without following a symlink (storage/localfs.py): a
symlink below the root, folder or file, is refused (403 AccessDenied), never deleted
through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import obstore as obs

from batchops.model.chunk import Chunk
from batchops.operations.base import Operation
from batchops.storage.localfs import FolderCopier
from batchops.storage.locations import Resolver, is_s3
from batchops.storage.outcomes import TaskError


class DeleteOperation(Operation):
    amazon_name = "BatchopsDeleteObject"
    alias = "delete"
    verb = "delete"
    destructive = True

    def __init__(self, params: Mapping[str, Any], resolver: Resolver, job_id: str = "") -> None:
        super().__init__(params, resolver, job_id)
        self.folders = FolderCopier()

    def sync_capable(self, chunk: Chunk) -> bool:
        return all(self.resolver.location(b).in_process for b in set(chunk.buckets))

    def sync_chunk_done(self) -> None:
        self.folders.release()

    def make_durable(self) -> None:
        self.folders.make_durable()

    async def run(self, chunk: Chunk, i: int) -> str | None:
        loc = self.resolver.location(chunk.buckets[i])
        if chunk.versions[i]:
            if not is_s3(loc):
                raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
            client = await self.resolver.s3api(loc).client()
            await client.delete_object(**self.s3_object(chunk, i))
            return f"Deleted version {chunk.versions[i]}"
        if loc.local_path is not None:
            return self.run_sync(chunk, i)
        await obs.delete_async(self.resolver.store(loc), loc.key(chunk.keys[i]))
        return None

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        loc = self.resolver.location(chunk.buckets[i])
        if chunk.versions[i]:
            raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
        if loc.local_path is not None:
            self.folders.unlink(loc.local_path, loc.key(chunk.keys[i]))
            self.folders.written(loc.local_path)
            return None
        obs.delete(self.resolver.store(loc), loc.key(chunk.keys[i]))
        return None
