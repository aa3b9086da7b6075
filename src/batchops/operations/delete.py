"""`delete` (ours; Amazon has no delete operation): delete each object, or the named
version. Destructive: a job needs `--confirm-delete` (or runs as `--dry-run`)."""

from __future__ import annotations

import obstore as obs

from batchops.model.chunk import Chunk
from batchops.operations.base import Operation
from batchops.storage.locations import is_s3
from batchops.storage.outcomes import TaskError


class DeleteOperation(Operation):
    amazon_name = "BatchopsDeleteObject"
    alias = "delete"
    verb = "delete"
    destructive = True

    def sync_capable(self, chunk: Chunk) -> bool:
        return all(self.resolver.location(b).in_process for b in set(chunk.buckets))

    async def run(self, chunk: Chunk, i: int) -> str | None:
        loc = self.resolver.location(chunk.buckets[i])
        if chunk.versions[i]:
            if not is_s3(loc):
                raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
            client = await self.resolver.s3api().client()
            await client.delete_object(**self.s3_object(chunk, i))
            return f"Deleted version {chunk.versions[i]}"
        await obs.delete_async(self.resolver.store(loc), loc.key(chunk.keys[i]))
        return None

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        loc = self.resolver.location(chunk.buckets[i])
        if chunk.versions[i]:
            raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
        obs.delete(self.resolver.store(loc), loc.key(chunk.keys[i]))
        return None
