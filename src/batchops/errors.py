"""Errors users see, and the one place where store errors become report outcomes.

User-facing errors carry one sentence: what was wrong, where, and what to do. The CLI
prints that sentence and exits with the error's exit code; it never shows a traceback.

Store errors (obstore, botocore, OS errors) are classified by what to do about them
(retry or not) and mapped onto the completion report's columns (HTTP status, error
code, message) in `classify`, and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Exit codes of the CLI (documented in the README and in `batchops --help`).
EXIT_OK = 0
EXIT_TASKS_FAILED = 1  # the job completed, some tasks failed (see the report)
EXIT_BAD_INPUT = 2  # bad manifest, spec, flag or credential: nothing ran (argparse's code)
EXIT_JOB_FAILED = 3  # the job failed (failure threshold, store unwritable, job locked)
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


class JobNotFoundError(BadInputError, LookupError):
    """No job with that id in the job store."""


class JobStateError(BatchopsError):
    """The job is not in a status that allows what was asked."""


class JobLockedError(BatchopsError):
    """Another process is running the job."""


class JobStoreError(BatchopsError, OSError):
    """The job store or report location cannot be written."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a failed attempt means for the report and for the scheduler."""

    retryable: bool
    http_status: int
    error_code: str
    message: str
    retry_after: float = 0.0  # seconds the store asked us to wait (Retry-After)

    @property
    def throttled(self) -> bool:
        """The store asked us to slow down (503 SlowDown, 429, throttling codes)."""
        return self.http_status in (429, 503) or self.error_code in _THROTTLE_CODES


_STATUS_RE = re.compile(r"status code: (\d{3})|\b(\d{3}) (?:Not Found|Forbidden|Bad Request)")
_CODE_RE = re.compile(r"<Code>([^<]+)</Code>")
_MESSAGE_RE = re.compile(r"<Message>([^<]*)</Message>")
_RETRYABLE_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
     "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
     "RequestTimeTooSkewed"}
)
_THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException",
                             "RequestLimitExceeded", "TooManyRequestsException"})
_RETRY_AFTER_RE = re.compile(r"retry-after:\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_TRANSIENT_WORDS = (
    "error sending request", "connection reset", "connection closed", "timed out",
    "timeout", "broken pipe", "incomplete message", "unexpected eof", "connection refused",
    "error decoding response body", "body error",
)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    # Never echo request URLs with query strings (signed URLs carry signatures there).
    return re.sub(r"(https?://[^\s?]+)\?\S*", r"\1?…", line)[:300]


def _is_botocore_transport_error(exc: BaseException) -> bool:
    """A dropped, refused or cut connection seen by botocore (the S3 API client)."""
    import sys

    if "botocore" not in sys.modules:
        return False
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, ResponseStreamingError

    return isinstance(exc, (BotoConnectionError, HTTPClientError, ResponseStreamingError))


def classify(exc: BaseException) -> Outcome:
    """Map any exception raised by an operation onto the report's columns.

    Retryable: throttling (503 SlowDown, 429), 500/502/504, timeouts and connection
    resets. Not retryable: 4xx (403, 404, 400, ...) and anything we cannot recognise
    as transient.
    """
    from . import operations  # local import: operations import this module

    if isinstance(exc, operations.TaskError):
        return Outcome(exc.retryable, exc.http_status, exc.error_code, str(exc))

    # botocore ClientError (aiobotocore) carries a structured response.
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response.get("Error", {})
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(err.get("Code") or "")
        retry = status >= 500 or status == 429 or code in _RETRYABLE_CODES
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
        try:
            after = float(headers.get("retry-after") or 0)
        except ValueError:
            after = 0.0
        return Outcome(retry, status or 500, code or "Error", str(err.get("Message") or code),
                       min(after, 60.0))

    if _is_botocore_transport_error(exc):
        return Outcome(True, 500, "RequestTimeout", _first_line(str(exc)) or type(exc).__name__)

    text = str(exc)
    code_m = _CODE_RE.search(text)
    code = code_m.group(1) if code_m else ""
    msg_m = _MESSAGE_RE.search(text)
    status_m = _STATUS_RE.search(text)
    status = int(status_m.group(1) or status_m.group(2)) if status_m else 0

    if isinstance(exc, FileNotFoundError) or status == 404:
        return Outcome(False, 404, code or "NoSuchKey",
                       msg_m.group(1) if msg_m else "The specified key does not exist.")
    if isinstance(exc, PermissionError) or status == 403:
        return Outcome(False, 403, code or "AccessDenied",
                       msg_m.group(1) if msg_m else "Access Denied")
    if status:
        retry = status >= 500 or status == 429 or code in _RETRYABLE_CODES
        message = msg_m.group(1) if msg_m else _first_line(text)
        after_m = _RETRY_AFTER_RE.search(text)
        after = min(float(after_m.group(1)), 60.0) if after_m else 0.0
        return Outcome(retry, status, code or f"HTTP{status}", message, after)
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return Outcome(True, 500, "RequestTimeout", _first_line(text) or type(exc).__name__)
    lowered = text.lower()
    if any(word in lowered for word in _TRANSIENT_WORDS):
        return Outcome(True, 500, "InternalError", _first_line(text))
    if isinstance(exc, ValueError) and ("Could not parse path" in text
                                        or "empty path segment" in text):
        return Outcome(False, 400, "InvalidObjectKey",
                       "the key is not a safe object path here (.., ., empty segment or "
                       f"control character): {_first_line(text)}")
    if isinstance(exc, (ValueError, NotImplementedError)):
        return Outcome(False, 400, "InvalidRequest", _first_line(text) or type(exc).__name__)
    if isinstance(exc, OSError):
        return Outcome(False, 500, type(exc).__name__, _first_line(text) or type(exc).__name__)
    return Outcome(False, 500, "InternalError", _first_line(text) or type(exc).__name__)
