"""`noop`: does nothing to each object; measures the runner itself (ours, not Amazon's)."""

from __future__ import annotations

from .base import Operation


class NoopOperation(Operation):
    amazon_name = "BatchopsNoop"
    alias = "noop"
    no_task_work = True

    async def run(self, chunk, i):  # type: ignore[no-untyped-def]
        return None

    def run_sync(self, chunk, i):  # type: ignore[no-untyped-def]
        return None
