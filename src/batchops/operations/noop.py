"""`noop`: does nothing to each object; measures the runner itself (ours, not Amazon's).

Two modes, for two different figures:
- the default: a chunk succeeds as a whole (`no_task_work`), without entering the
  per-task loop: what chunk scheduling, checkpoints and reports cost alone;
- `{"BatchopsNoop": {"PerTask": true}}`: every task goes through the per-task loop
  (execute/loop.py: take, run, classify, record) on the sync driver, with a call that
  does nothing: the runner's ceiling through the path every real task takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.operations.base import Operation
from batchops.storage.locations import Resolver


class NoopOperation(Operation):
    amazon_name = "BatchopsNoop"
    alias = "noop"
    no_task_work = True

    def __init__(self, params: Mapping[str, Any], resolver: Resolver, job_id: str = "") -> None:
        super().__init__(params, resolver, job_id)
        if params.get("PerTask"):
            self.no_task_work = False  # type: ignore[misc]  # (per instance: the mode)

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        unknown = sorted(set(params) - {"PerTask"})
        if unknown:
            raise SpecError(f"BatchopsNoop has no member {unknown[0]!r} (only PerTask: true "
                            "runs every task through the per-task loop)")
        per_task = params.get("PerTask", False)
        if not isinstance(per_task, bool):
            raise SpecError(f"BatchopsNoop.PerTask must be true or false, not {per_task!r}")
        return {"PerTask": True} if per_task else {}

    def sync_capable(self, chunk: Chunk) -> bool:
        return True  # nothing to call: never the event loop

    async def run(self, chunk: Chunk, i: int) -> str | None:
        return None

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        return None
