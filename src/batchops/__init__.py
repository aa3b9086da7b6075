"""batchops: Amazon S3 Batch Operations as a program you run yourself.

The Python API mirrors the CLI: create a job, run it, describe it.
"""

from .engine import run_job
from .errors import BatchopsError, ManifestError, SpecError
from .job import JobOptions, create_job, describe, list_jobs
from .jobstore import JobStore

__version__ = "0.1.0"

__all__ = ["BatchopsError", "JobOptions", "JobStore", "ManifestError", "SpecError",
           "create_job", "describe", "list_jobs", "run_job", "__version__"]
