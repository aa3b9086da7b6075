"""Errors users see, and the one place where store errors become report outcomes.

User-facing errors carry one sentence: what was wrong, where, and what to do. The CLI
prints that sentence and exits with the error's exit code; it never shows a traceback.

Store errors (obstore, botocore, OS errors) are classified by what to do about them
(retry or not) and mapped onto the completion report's columns (HTTP status, error
code, message) in `classify`, and nowhere else.
"""

from __future__ import annotations

# Exit codes of the CLI (documented in the README and in `batchops --help`).
EXIT_OK = 0
EXIT_TASKS_FAILED = 1  # the job completed, some tasks failed (see the report)
EXIT_BAD_INPUT = 2  # bad manifest, spec, flag or credential: nothing ran (argparse's code)
EXIT_JOB_FAILED = 3  # the job failed (failure threshold, store unwritable, job locked)
EXIT_CANCELLED = 4  # the job was cancelled (update-job-status ... Cancelled); not resumable
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM; `batchops resume` continues


class BatchopsError(Exception):
    """Base of every error batchops reports to a user as one sentence."""

    exit_code = EXIT_JOB_FAILED


class BadInputError(BatchopsError):
    """The user's input (manifest, spec, flag, credential) is wrong; nothing ran."""

    exit_code = EXIT_BAD_INPUT


class ManifestError(BadInputError, ValueError):
    """A manifest cannot be read: names the file and the line."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class SpecError(BadInputError, ValueError):
    """A job spec or flag is invalid: names the key or flag."""


class IdempotencyError(SpecError):
    """A ClientRequestToken used before for a different CreateJob request."""


class JobNotFoundError(BadInputError, LookupError):
    """No job with that id in the job store."""


class JobStateError(BatchopsError):
    """The job is not in a status that allows what was asked."""


class JobLockedError(BatchopsError):
    """Another process is running the job."""


class JobStoreError(BatchopsError, OSError):
    """The job store or report location cannot be written."""


class JobFatalError(BatchopsError):
    """A failure no task can get past (a full disk, expired credentials, an unreachable
    endpoint): the job stops, Paused, and `resume` continues once the cause is fixed."""


