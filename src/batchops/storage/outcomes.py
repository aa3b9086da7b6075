"""Store errors classified by what to do, and mapped onto the report's columns.

Every exception a task raises (obstore, botocore, awscrt, OS errors, or an operation's
own `TaskError`) is classified here and nowhere else: retry (honouring Retry-After),
permanent for the task (a report row with its HTTP status and error code), or fatal for
the job (the job stops; `resume` continues once the cause is fixed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class TaskError(Exception):
    """A task failed in a way the operation itself understands (mapped as given)."""

    def __init__(self, http_status: int, error_code: str, message: str,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.error_code = error_code
        self.retryable = retryable



@dataclass(frozen=True, slots=True)
class Outcome:
    """What a failed attempt means for the report and for the scheduler."""

    retryable: bool
    http_status: int
    error_code: str
    message: str
    retry_after: float = 0.0  # seconds the store asked us to wait (Retry-After)
    fatal: bool = False  # the job must stop (Paused); `message` says what to fix

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
    if isinstance(exc, TaskError):
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

