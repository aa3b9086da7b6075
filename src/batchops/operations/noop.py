"""`noop`: does nothing to each object; measures the runner itself (ours, not Amazon's)."""

from __future__ import annotations

from batchops.model.chunk import Chunk
from batchops.operations.base import Operation


class NoopOperation(Operation):
    amazon_name = "BatchopsNoop"
    alias = "noop"
    no_task_work = True

    async def run(self, chunk: Chunk, i: int) -> str | None:
        return None

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        return None
