"""batchops: Amazon S3 Batch Operations as a program you run yourself.

The Python API mirrors the CLI: create a job, run it, describe it. Names are loaded on
first use, so worker processes that import a submodule do not pay for the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "run_job": "engine", "BatchopsError": "errors", "ManifestError": "errors",
    "SpecError": "errors", "JobOptions": "job", "create_job": "job", "describe": "job",
    "list_jobs": "job", "JobStore": "jobstore",
}

if TYPE_CHECKING:
    from .engine import run_job
    from .errors import BatchopsError, ManifestError, SpecError
    from .job import JobOptions, create_job, describe, list_jobs
    from .jobstore import JobStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'batchops' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["BatchopsError", "JobOptions", "JobStore", "ManifestError", "SpecError",
           "create_job", "describe", "list_jobs", "run_job", "__version__"]
