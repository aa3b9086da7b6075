"""`--dry-run`: each task checks that its source object is there (a HEAD; a stat for a
local folder) and changes nothing. A missing object is a failed task (404 NoSuchKey, as
Amazon's report would say), so the failed-tasks part lists what the real job would
not find."""

from __future__ import annotations

import obstore as obs

from batchops.model.chunk import Chunk
from batchops.operations.base import Operation
from batchops.storage.locations import is_s3
from batchops.storage.outcomes import TaskError


class DryRunOperation(Operation):
    """Wraps the job's operation: same sources, no effect."""

    amazon_name = "BatchopsDryRun"
    alias = "dry-run"
    verb = "check"

    def __init__(self, op: Operation) -> None:
        super().__init__(op.params, op.resolver, op.job_id)
        self.op = op

    def sync_capable(self, chunk: Chunk) -> bool:
        return all(self.resolver.location(b).in_process for b in set(chunk.buckets))

    async def run(self, chunk: Chunk, i: int) -> str | None:
        loc = self.resolver.location(chunk.buckets[i])
        key, version = loc.key(chunk.keys[i]), chunk.versions[i]
        if version:
            if not is_s3(loc):
                raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
            await (await self.s3_client(chunk, i)).head_object(
                Bucket=self.s3_object(chunk, i)["Bucket"], Key=key, VersionId=version)
        else:
            await obs.head_async(self.resolver.store(loc), key)
        return None

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        loc = self.resolver.location(chunk.buckets[i])
        if chunk.versions[i]:
            raise TaskError(400, "InvalidRequest", f"{loc.root} keeps no versions")
        obs.head(self.resolver.store(loc), loc.key(chunk.keys[i]))
        return None
