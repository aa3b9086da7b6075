"""Store errors classified by what to do, and mapped onto the report's columns.

Every exception a task raises (obstore, botocore, awscrt, OS errors, or an operation's
own `TaskError`) is classified here and nowhere else, into one of three kinds:

- **retry** (`retryable`): throttling, 5xx, timeouts, dropped connections; the loop
  waits at least `retry_after` (the store's Retry-After, in seconds or as a date, at
  most 60 s) and tries again. botocore and awscrt expose the header (awscrt not on a
  503 SlowDown, which it reports by name only); obstore does not;
- **permanent for the task**: a report row with its HTTP status and error code (404,
  403 AccessDenied, 400 ...);
- **fatal for the job** (`fatal`): no task can get past it (a full disk, too many open
  files, expired or invalid credentials, an unreachable endpoint, a wrong clock). The
  job stops, Paused, with `message` saying what to fix (the caller adds how to resume);
  `resume` continues once it is fixed.

An unreachable endpoint (connection refused, DNS failure) is both retryable and fatal:
it is retried like any dropped connection, and stops the job only once the task's
retries are used up, so that a blip does not pause a job but a dead endpoint does not
turn every row into a failure.

Classification is by exception type, errno and the service's error code. obstore gives
no structured status or code, only its message: the HTTP status ("status code: NNN"),
the S3 error body (<Code>, <Message>), an OS error number ("os error NN") and a refused
connection ("kind: Connect") are read from it, for obstore's exceptions only; each of
those patterns is pinned by a test in tests/test_errors.py.

A bug in batchops (KeyError, TypeError, AttributeError, ...) is never a report row:
`classify` raises it again, so the worker dies loudly and the job stops with "internal
error".

Every message is passed through `scrub` first: no access key, secret, session token,
signature, SAS string or URL query string reaches a report, the log or job.json.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import quote


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
    """What a failed attempt means for the report and for the scheduler.

    `fatal`: the job must stop (Paused) once this task cannot be retried any more;
    `message` is then one sentence saying what to fix. A fatal outcome that is also
    `retryable` (an unreachable endpoint) is retried first.
    """

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


# -- what a secret looks like in error text ---------------------------------------------

REDACTED = "<redacted>"

_KEY_NAMES = (r"x-amz-security-token|x-amz-signature|x-amz-credential|security-token|"
              r"session[_-]?token|secret[_-]?access[_-]?key|secret[_-]?key|"
              r"access[_-]?key[_-]?id|account[_-]?key|sas[_-]?token|password|passwd|"
              r"signature|credential|token|access[_-]?token|refresh[_-]?token|api[_-]?key|"
              r"client[_-]?secret|"
              # Azure SAS parameters
              r"sig|se|sv|sp|st|spr|srt|ss|sr|skoid|sktid|skt|ske|sks|skv")

# (pattern, replacement, substrings one of which every match contains: a cheap test first)
_SECRET_PATTERNS = (
    # URL query strings (presigned URLs, SAS tokens) and user:password@ in URLs.
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s/?#<>\"']*)\?[^\s<>\"']*", re.I), r"\1?…",
     ("://",)),
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://)[^\s/@:<>\"']+:[^\s/@<>\"']*@", re.I),
     rf"\1{REDACTED}@", ("://",)),
    # XML elements S3 puts in SignatureDoesNotMatch errors (they hold the canonical
    # request, with the session token in it, and the signature).
    (re.compile(r"<(AWSAccessKeyId|SignatureProvided|StringToSign|StringToSignBytes|"
                r"CanonicalRequest|CanonicalRequestBytes|SecurityToken|Token)>.*?</\1>",
                re.I | re.S), rf"<\1>{REDACTED}</\1>", ("<",)),
    # Headers and parameters whose value is a credential, to the end of the value.
    # (a scheme, then a token or SigV4's comma-separated Credential=, Signature= parts)
    (re.compile(r"((?:authorization|proxy-authorization)[\"']?\s*[:=]\s*[\"']?)"
                r"(?:[A-Za-z0-9-]+ +)?[^\s<>\"',()]+(?:, *[A-Za-z-]+=[^\s<>\"',()]+)*", re.I),
     rf"\1{REDACTED}", (":", "=")),
    (re.compile(rf"(\b(?:{_KEY_NAMES})[\"']?\s*[:=]\s*[\"']?)[^\s&;,<>\"'()]+", re.I),
     rf"\1{REDACTED}", (":", "=")),
    # AWS access key ids (AKIA long-term, ASIA temporary, and the other IAM prefixes).
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{12,}\b"),
     REDACTED, ("",)),
)

# Environment variables whose values are secrets: scrubbed wherever they appear verbatim.
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                     "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_KEY",
                     "AZURE_STORAGE_SAS_TOKEN", "GOOGLE_SERVICE_ACCOUNT_KEY")


def scrub(text: str) -> str:
    """`text` with every credential in it replaced by `<redacted>`: access key ids,
    secret keys, session tokens, signatures, Authorization headers, SAS strings, URL
    query strings and passwords, and the current values of the secret environment
    variables (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ...) wherever they appear
    (verbatim or percent-encoded)."""
    if not text:
        return text
    env = os.environ
    for name in _SECRET_VARIABLES:
        value = env.get(name)
        if not value or len(value) < 8:
            continue
        if value in text:
            text = text.replace(value, REDACTED)
        if "%" in text:
            for form in (quote(value, safe=""), quote(value, safe="/")):
                if form in text:
                    text = text.replace(form, REDACTED)
    for pattern, repl, needles in _SECRET_PATTERNS:
        if any(needle in text for needle in needles):
            text = pattern.sub(repl, text)
    return text


# -- what the service's codes mean ------------------------------------------------------

_RETRYABLE_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
     "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
     "TooManyRequests", "ServerBusy", "OperationTimedOut", "PriorRequestNotComplete"}
)

_THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException",
                             "RequestLimitExceeded", "TooManyRequestsException",
                             "TooManyRequests", "ServerBusy"})

# The credentials themselves are wrong, expired or unknown: every request will fail.
_CREDENTIAL_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId", "SignatureDoesNotMatch",
     "InvalidToken", "UnrecognizedClientException", "InvalidClientTokenId",
     "TokenRefreshRequired", "InvalidSecurity", "AuthFailure", "MissingAuthenticationToken",
     "AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation"}
)

# This machine's clock is too far from the store's: every signature will be refused.
_CLOCK_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired"})

# Full disks and exhausted limits: no task can write until the cause is fixed.
_FATAL_ERRNOS = MappingProxyType({
    errno.ENOSPC: "the disk is full ({what}): free space at the target folder or the job "
                  "store",
    errno.EDQUOT: "the disk quota is used up ({what}): free space or raise the quota at the "
                  "target folder or the job store",
    errno.EMFILE: "too many open files ({what}): raise the limit (ulimit -n) or lower "
                  "--concurrency",
    errno.ENFILE: "the system ran out of open files ({what}): raise fs.file-max or lower "
                  "--concurrency",
    errno.EROFS: "the target is on a read-only filesystem ({what}): mount it writable",
    errno.ENOMEM: "out of memory ({what}): lower --workers or --concurrency",
})

_UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                                 errno.ENETDOWN, errno.EHOSTDOWN})

_TRANSIENT_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                               errno.ETIMEDOUT, errno.EAGAIN, errno.EINTR})

# awscrt error names (CrtConnectionError.crt_name) for an endpoint that cannot be reached.
_CRT_UNREACHABLE = frozenset({
    "AWS_IO_SOCKET_CONNECTION_REFUSED", "AWS_IO_SOCKET_NO_ROUTE_TO_HOST",
    "AWS_IO_SOCKET_NETWORK_DOWN", "AWS_IO_DNS_INVALID_NAME", "AWS_IO_DNS_QUERY_FAILED",
    "AWS_IO_DNS_NO_ADDRESS_FOR_HOST", "AWS_IO_DNS_HOST_REMOVED_FROM_CACHE",
})

# Errors of batchops's own code: never a report row (classify raises them again).
_BUGS = (KeyError, IndexError, TypeError, AttributeError, NameError, AssertionError,
         ZeroDivisionError, NotImplementedError, RecursionError)


# -- what can be read from obstore's messages (obstore gives nothing structured) ----------

_OBSTORE_STATUS_RE = re.compile(r"status code: (\d{3})")
_OBSTORE_OS_ERROR_RE = re.compile(r"\(os error (\d+)\)")
_OBSTORE_PATH_RE = re.compile(r"Could not parse path: ")
_OBSTORE_CONNECT_RE = re.compile(r"kind: Connect,|\btcp connect error\b|\bdns error\b")
_CODE_RE = re.compile(r"<Code>([^<]+)</Code>")
_MESSAGE_RE = re.compile(r"<Message>([^<]*)</Message>")
_URL_HOST_RE = re.compile(r"\b(https?://[^/\s\"'<>?]+)")

_TRANSIENT_WORDS = (
    "error sending request", "connection reset", "connection closed", "timed out",
    "timeout", "broken pipe", "incomplete message", "unexpected eof",
    "error decoding response body", "body error",
)


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0][:300] if text else ""


def _describe(exc: BaseException) -> str:
    return _first_line(str(exc)) or type(exc).__name__


def _retry_after(headers: Any) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), at most 60."""
    value = (headers.get("retry-after") or headers.get("Retry-After")) if headers else None
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            import time

            seconds = parsedate_to_datetime(str(value)).timestamp() - time.time()
        except (TypeError, ValueError):
            return 0.0
    return min(max(seconds, 0.0), 60.0)


# -- the three kinds ------------------------------------------------------------------------

def _credentials(code: str, message: str, status: int = 403) -> Outcome:
    message = _first_line(message)[:200]
    detail = f"{code}: {message}" if message and message != code else code
    return Outcome(False, status, code, f"the store refused the credentials ({detail}): "
                   "renew them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN "
                   "or the profile)", fatal=True)


def _clock(code: str, status: int) -> Outcome:
    return Outcome(False, status, code, "this machine's clock is too far from the store's "
                   f"({code}): set the time right (NTP)", fatal=True)


def _unreachable(where: str, why: str) -> Outcome:
    where = f"the endpoint {where}" if where else "the store's endpoint"
    return Outcome(True, 503, "EndpointUnreachable",
                   f"cannot reach {where} ({why}): check the endpoint (AWS_ENDPOINT_URL, "
                   "--endpoint-url, --bucket-map) and the network", fatal=True)


def _from_errno(exc: OSError) -> Outcome | None:
    """An OS error by its number; None when the number says nothing."""
    num = exc.errno
    if num is None:
        return None
    what = exc.strerror or os.strerror(num)
    native = sys.modules.get("batchops._localfs")
    if native is not None and exc.filename in native.STEPS:  # the native copy's step
        what = f"{what}, while trying to {exc.filename}"
    template = _FATAL_ERRNOS.get(num)
    if template is not None:
        code = errno.errorcode.get(num, "OSError")
        return Outcome(False, 507 if num in (errno.ENOSPC, errno.EDQUOT) else 500, code,
                       template.format(what=what), fatal=True)
    if num in _UNREACHABLE_ERRNOS:
        return _unreachable("", what)
    if num in _TRANSIENT_ERRNOS:
        return Outcome(True, 500, "RequestTimeout", what)
    if num in (errno.ENOENT, errno.ENOTDIR):
        return Outcome(False, 404, "NoSuchKey", "The specified key does not exist.")
    if num in (errno.EACCES, errno.EPERM):
        return Outcome(False, 403, "AccessDenied", f"Access Denied ({what})")
    if num == errno.ENAMETOOLONG:
        return Outcome(False, 400, "KeyTooLongError", f"Your key is too long ({what})")
    if num == errno.EISDIR:
        return Outcome(False, 400, "InvalidObjectKey", "the key names a folder, not a file")
    return Outcome(False, 500, errno.errorcode.get(num, type(exc).__name__), what)


def _from_service(status: int, code: str, message: str, headers: Any = None) -> Outcome:
    """A store's answer by its HTTP status and error code (S3's vocabulary)."""
    if code in _CREDENTIAL_CODES or status == 401:
        return _credentials(code or "Unauthorized", message, status or 403)
    if code in _CLOCK_CODES:
        return _clock(code, status or 403)
    retry = status >= 500 or status == 429 or code in _RETRYABLE_CODES
    return Outcome(retry, status or 500, code or f"HTTP{status or 500}",
                   message or code or f"HTTP {status}", _retry_after(headers))


def _botocore(exc: BaseException) -> Outcome | None:
    """botocore's (aiobotocore's) exceptions other than ClientError; None if not one."""
    if "botocore" not in sys.modules:
        return None
    import botocore.exceptions as bx

    if not isinstance(exc, bx.BotoCoreError):
        return None
    if isinstance(exc, bx.EndpointConnectionError):
        url = str(exc.kwargs.get("endpoint_url") or "")
        host = _URL_HOST_RE.match(url)
        cause = exc.kwargs.get("error")
        why = type(cause).__name__ if cause is not None else "could not connect"
        inner = getattr(cause, "os_error", None) or cause
        if isinstance(inner, OSError) and inner.strerror:
            why = inner.strerror
        return _unreachable(host.group(1) if host else "", why)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError,
                        bx.CredentialRetrievalError, bx.TokenRetrievalError, bx.SSOError,
                        bx.NoAuthTokenError)):
        return Outcome(False, 403, "InvalidAccessKeyId",
                       f"no usable credentials ({_describe(exc)}): set AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY or log in to the profile again", fatal=True)
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError)):
        return Outcome(True, 500, "RequestTimeout", _describe(exc))
    if isinstance(exc, bx.ParamValidationError):
        return Outcome(False, 400, "InvalidRequest", _describe(exc))
    return Outcome(False, 500, "InternalError", _describe(exc))


def _aiohttp(exc: BaseException) -> Outcome | None:
    """aiohttp's errors that aiobotocore lets through (a body cut while it streams, a
    refused connection); None if not one of them."""
    if "aiohttp" not in sys.modules:
        return None
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, no route
        why = exc.os_error.strerror if exc.os_error.strerror else type(exc.os_error).__name__
        return _unreachable(f"{exc.host}:{exc.port}", why)
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return Outcome(True, 500, "RequestTimeout", _describe(exc))
    return None


def _obstore(exc: BaseException) -> Outcome | None:
    """obstore's exceptions (and its not-found, a FileNotFoundError without an errno);
    None if not one of them."""
    if "obstore" not in sys.modules:
        return None
    import obstore.exceptions as ox

    is_not_found = isinstance(exc, FileNotFoundError) and exc.errno is None
    if not (isinstance(exc, ox.BaseError) or is_not_found):
        return None
    text = str(exc)
    status_m = _OBSTORE_STATUS_RE.search(text)
    status = int(status_m.group(1)) if status_m else 0
    code_m, msg_m = _CODE_RE.search(text), _MESSAGE_RE.search(text)
    code = code_m.group(1) if code_m else ""
    message = msg_m.group(1) if msg_m else ""

    if is_not_found or isinstance(exc, ox.NotFoundError):
        return _from_service(404, code or "NoSuchKey",
                             message or "The specified key does not exist.")
    if isinstance(exc, ox.UnauthenticatedError):
        return _credentials(code or "Unauthorized", message or _describe(exc), status or 401)
    if isinstance(exc, ox.PermissionDeniedError):
        return _from_service(status or 403, code or "AccessDenied", message or "Access Denied")
    if isinstance(exc, ox.PreconditionError):
        return Outcome(False, 412, code or "PreconditionFailed",
                       message or "At least one of the preconditions you specified did not "
                                  "hold.")
    if isinstance(exc, ox.AlreadyExistsError):
        return Outcome(False, 409, code or "AlreadyExists", message or _describe(exc))
    if isinstance(exc, ox.NotModifiedError):
        return Outcome(False, 304, "NotModified", message or "Not Modified")
    if isinstance(exc, ox.InvalidPathError):
        return Outcome(False, 400, "InvalidObjectKey",
                       "the key is not a safe object path here (.., ., empty segment or "
                       f"control character): {_describe(exc)}")
    if isinstance(exc, ox.NotSupportedError):
        return Outcome(False, 501, "NotImplemented", _describe(exc))
    if isinstance(exc, ox.UnknownConfigurationKeyError):
        return Outcome(False, 400, "InvalidConfiguration",
                       f"the store is configured wrongly ({_describe(exc)}): fix the bucket "
                       "map or the environment", fatal=True)
    if status:
        return _from_service(status, code, message or _describe(exc))
    os_error = _OBSTORE_OS_ERROR_RE.search(text)
    if os_error:  # a local filesystem's error, by its number
        num = int(os_error.group(1))
        outcome = _from_errno(OSError(num, os.strerror(num)))
        if outcome is not None:
            return outcome
    if _OBSTORE_CONNECT_RE.search(text):
        host = _URL_HOST_RE.search(_first_line(text))
        why = "DNS lookup failed" if "dns error" in text else "connection refused" \
            if "ConnectionRefused" in text else "could not connect"
        return _unreachable(host.group(1) if host else "", why)
    lowered = text.lower()
    if any(word in lowered for word in _TRANSIENT_WORDS):
        return Outcome(True, 500, "InternalError", _describe(exc))
    return Outcome(False, 500, "InternalError", _describe(exc))


def _classify(exc: BaseException) -> Outcome:
    if isinstance(exc, TaskError):
        return Outcome(exc.retryable, exc.http_status, exc.error_code, str(exc))

    # botocore's ClientError, and CrtS3Error shaped like it, carry a structured response.
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        return _from_service(int(meta.get("HTTPStatusCode") or 0), str(err.get("Code") or ""),
                             str(err.get("Message") or ""), meta.get("HTTPHeaders"))

    crt_name = getattr(exc, "crt_name", None)  # storage.s3api.CrtConnectionError
    if isinstance(crt_name, str):
        if crt_name in _CRT_UNREACHABLE:
            return _unreachable(getattr(exc, "endpoint", "") or "", crt_name)
        if crt_name.startswith("AWS_AUTH_"):
            return _credentials(crt_name, _describe(exc))
        return Outcome(True, 500, "RequestTimeout", _describe(exc))

    outcome = _botocore(exc) or _obstore(exc) or _aiohttp(exc)
    if outcome is not None:
        return outcome

    if isinstance(exc, _BUGS):  # after the stores' own classes (some subclass these)
        raise exc

    from batchops.model.errors import JobStoreError

    if isinstance(exc, JobStoreError):
        return Outcome(False, 500, "JobStoreError", f"{exc}: fix the job store", fatal=True)
    if isinstance(exc, OSError):
        if exc.errno is None and isinstance(exc, (TimeoutError, ConnectionError)):
            return Outcome(True, 500, "RequestTimeout", _describe(exc))
        if exc.errno is None and isinstance(exc, FileNotFoundError):
            return Outcome(False, 404, "NoSuchKey", "The specified key does not exist.")
        if exc.errno is None and isinstance(exc, PermissionError):
            return Outcome(False, 403, "AccessDenied", "Access Denied")
        if "socket" in sys.modules:
            import socket

            if isinstance(exc, socket.gaierror):
                return _unreachable("", f"DNS lookup failed: {exc.strerror or exc}")
        outcome = _from_errno(exc)
        if outcome is not None:
            return outcome
        return Outcome(False, 500, type(exc).__name__, _describe(exc))
    if isinstance(exc, MemoryError):
        return Outcome(False, 500, "OutOfMemory", "out of memory: lower --workers or "
                       "--concurrency", fatal=True)
    if isinstance(exc, ValueError):
        if _OBSTORE_PATH_RE.match(str(exc)):  # obstore refuses the key as a path
            return Outcome(False, 400, "InvalidObjectKey",
                           "the key is not a safe object path here (.., ., empty segment or "
                           f"control character): {_describe(exc)}")
        return Outcome(False, 400, "InvalidRequest", _describe(exc))
    return Outcome(False, 500, "InternalError", _describe(exc))


def classify(exc: BaseException) -> Outcome:
    """What to do about a task's exception (retry, fail the task, stop the job), as the
    report's columns; the message is scrubbed of secrets.

    Raises `exc` itself when it is a bug in batchops (KeyError, TypeError, ...).
    """
    outcome = _classify(exc)
    message = scrub(outcome.message)
    return outcome if message == outcome.message else replace(outcome, message=message)


__all__ = ["Outcome", "TaskError", "classify", "scrub", "REDACTED"]
