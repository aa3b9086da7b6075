"""batchops: Amazon S3 Batch Operations as a program you run yourself.

The Python API mirrors the CLI: create a job, run it, describe it. Names are loaded on
first use, so worker processes that import a submodule do not pay for the rest.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = MappingProxyType({
    "run_job": "schedule.coordinator", "BatchopsError": "model.errors",
    "ManifestError": "model.errors", "SpecError": "model.errors", "JobOptions": "model.spec",
    "create_job": "schedule.create", "describe": "schedule.control",
    "list_jobs": "schedule.control", "JobStore": "results.jobstore",
})

if TYPE_CHECKING:
    from batchops.model.errors import BatchopsError, ManifestError, SpecError
    from batchops.model.spec import JobOptions
    from batchops.results.jobstore import JobStore
    from batchops.schedule.control import describe, list_jobs
    from batchops.schedule.coordinator import run_job
    from batchops.schedule.create import create_job


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'batchops' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["BatchopsError", "JobOptions", "JobStore", "ManifestError", "SpecError",
           "create_job", "describe", "list_jobs", "run_job", "__version__"]
