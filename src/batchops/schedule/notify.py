"""Notifications of job status changes (`--notify`), as EventBridge events.

Amazon records S3 Batch Operations' status changes as CloudTrail events (`JobCreated`,
then `JobStatusChanged`, each with `serviceEventDetails`: jobId, jobArn, status,
jobEventId, failureCodes, statusChangeReason), which EventBridge delivers to a target
inside its envelope (version, id, detail-type, source, account, time, region,
resources, detail). batchops sends the same: the envelope, with the CloudTrail record's
fields that mean something here as `detail`. It does not pretend to be AWS: `source` is
`batchops`, `detail-type` says what happened, and its own additions are named so
(`previousStatus`, `progressSummary`, `statusUpdateReason`).

    --notify http://host:port/path         a JSON POST of each event
    --notify command:'["prog", "arg"]'     the argv run with the event on its stdin

Every status write goes through the job store (results/jobstore.py `watch_status`),
so that is where a `Notifier` listens. The job never waits for a receiver: an event is
put on a bounded queue and one background thread delivers them in order, each retried
with exponential backoff (honouring Retry-After); when the queue is full the oldest
waiting event is dropped, and counted. `close` gives the thread a few seconds to
deliver what is left before the process exits.
"""

from __future__ import annotations

import collections
import http.client
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from batchops.model.errors import SpecError
from batchops.results.jobstore import JobStore

#: Events that may wait for delivery; past this the oldest waiting one is dropped.
QUEUE_LIMIT = 1000
#: Attempts at one event, and the backoff between them (seconds, doubling, capped).
ATTEMPTS = 8
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 30.0
#: Seconds one HTTP request or one command may take.
SEND_TIMEOUT = 10.0
#: Seconds `close` waits by default for the events still queued.
CLOSE_GRACE = 5.0
DETAIL_TYPE = "Batch Operations Job Status Change"
SOURCE = "batchops"


class DeliveryError(Exception):
    """One attempt at delivering an event failed; `retry_after` when the receiver said."""

    def __init__(self, message: str, retry: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


@dataclass(frozen=True)
class Target:
    """Where events go: an http(s) URL, or an argv (the `command:` form)."""

    url: str | None = None
    argv: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str, flag: str = "--notify") -> Target:
        """The flag's value, checked; SpecError (one sentence) when it is not usable."""
        if value.startswith("command:"):
            return cls(argv=_parse_argv(value[len("command:"):], flag))
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SpecError(f"{flag} {_shown(value)!r} is neither an http(s) URL "
                            "(http://host:port/path) nor command:'[\"prog\", \"arg\"]'")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise SpecError(f"{flag} {_shown(value)!r}: the port is not a number") from None
        return cls(url=value)

    def describe(self) -> str:
        """The target as it may be shown (a URL without its credentials and query)."""
        return " ".join(self.argv) if self.argv else _shown(self.url or "")

    def send(self, body: bytes) -> None:
        """One attempt; DeliveryError when it did not get through."""
        if self.argv:
            _run_command(self.argv, body)
        else:
            _post(self.url or "", body)


def _parse_argv(text: str, flag: str) -> tuple[str, ...]:
    try:
        argv = orjson.loads(text)
    except orjson.JSONDecodeError:
        argv = None
    if not isinstance(argv, list) or not argv or not all(
            isinstance(a, str) and a for a in argv):
        raise SpecError(f"{flag} command:{text}: give the program and its arguments as a "
                        "JSON list of strings, e.g. command:'[\"logger\", \"-t\", "
                        "\"batchops\"]' (it runs without a shell)")
    program = argv[0]
    found = shutil.which(program) if os.sep not in program else (
        program if os.access(program, os.X_OK) and os.path.isfile(program) else None)
    if found is None:
        raise SpecError(f"{flag} command: {program!r} is not an executable program "
                        "(not found on PATH, or not executable)")
    return tuple(argv)


def _shown(url: str) -> str:
    """A URL as it may be printed: no user:password, no query (a token often hides there)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if port:
        host = f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _post(url: str, body: bytes) -> None:
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=SEND_TIMEOUT)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", "User-Agent": "batchops-notify"}
    if parts.username is not None:
        import base64

        pair = f"{urllib.parse.unquote(parts.username)}:" \
               f"{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    if 200 <= response.status < 300:
        return
    # A client error other than these will not get better by asking again.
    retry = response.status >= 500 or response.status in (408, 425, 429)
    raise DeliveryError(f"HTTP {response.status}", retry=retry,
                        retry_after=_retry_after(response.getheader("Retry-After")))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _run_command(argv: tuple[str, ...], body: bytes) -> None:
    try:
        done = subprocess.run(argv, input=body, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=SEND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise DeliveryError(f"exit status {done.returncode} {tail[0][:200]}".strip())


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_event(doc: dict[str, Any], previous: str | None) -> dict[str, Any]:
    """The event for a job whose status just became doc's (from `previous`; None: the
    job was just created)."""
    job = doc["Job"]
    arn = str(job.get("JobArn", ""))
    fields = arn.split(":", 5)  # arn:PARTITION:s3:REGION:ACCOUNT:job/ID
    region, account = (fields[3], fields[4]) if len(fields) == 6 else ("", "")
    now = _utc_now()
    failures = job.get("FailureReasons") or []
    reason = job.get("StatusUpdateReason")
    details = {
        "jobId": job["JobId"],
        "jobArn": arn,
        "status": job["Status"],
        "jobEventId": uuid.uuid4().hex,
        "failureCodes": [f.get("FailureCode", "") for f in failures],
        "statusChangeReason": [f.get("FailureReason", "") for f in failures],
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": now,
        "region": region,
        "resources": [arn] if arn else [],
        "detail": {
            "eventName": "JobCreated" if previous is None else "JobStatusChanged",
            "eventTime": now,
            "awsRegion": region,
            "recipientAccountId": account,
            "serviceEventDetails": details,
            "previousStatus": previous,
            "statusUpdateReason": reason,
            "progressSummary": job.get("ProgressSummary"),
        },
    }


Warn = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"batchops: {message}", file=sys.stderr, flush=True)


class Notifier:
    """Delivers job events to one target, in order, from one background thread.

    `watch(store)` makes every status write through that store an event; `publish`
    queues one directly. Neither ever waits for the receiver.
    """

    def __init__(self, target: Target, warn: Warn = _stderr,
                 queue_limit: int = QUEUE_LIMIT, attempts: int = ATTEMPTS,
                 backoff: float = BACKOFF_FIRST) -> None:
        self.target = target
        self.warn = warn
        self.attempts = attempts
        self.backoff = backoff
        self.delivered = 0
        self.dropped = 0
        self._queue: collections.deque[bytes] = collections.deque()
        self._limit = queue_limit
        self._cond = threading.Condition()
        self._busy = False  # an event taken off the queue and not yet delivered or dropped
        self._deadline: float | None = None  # set by close: give up on what is left then
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._deliver, name="batchops-notify",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def from_flag(cls, value: str, flag: str = "--notify", warn: Warn = _stderr) -> Notifier:
        """A notifier for a `--notify` value; SpecError (one sentence) for a bad one."""
        return cls(Target.parse(value, flag), warn=warn)

    def watch(self, store: JobStore, doc: dict[str, Any] | None = None) -> None:
        """Send an event for each status the job moves to through `store` from now on.
        `doc` is the job as it is now (read from the store when not given); a job in
        status New was just created, and its JobCreated event is sent now."""
        if doc is None:
            doc = store.read()
        status = doc["Job"]["Status"]
        store.watch_status(self._on_status, status)
        if status == "New":
            self._on_status(doc, None)

    def _on_status(self, doc: dict[str, Any], previous: str | None) -> None:
        try:
            self.publish(job_event(doc, previous))
        except Exception as exc:  # noqa: BLE001 - a notification never fails the job
            self.warn(f"--notify: no event for job {doc.get('Job', {}).get('JobId')}: {exc}")

    def publish(self, event: dict[str, Any]) -> None:
        """Queue one event (never blocks; the oldest waiting event goes when full)."""
        body = orjson.dumps(event)
        with self._cond:
            if self._closed.is_set():
                return
            if len(self._queue) >= self._limit:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(body)
            self._cond.notify_all()

    def _deliver(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed.is_set():
                    self._cond.wait()
                if not self._queue:
                    return
                body = self._queue.popleft()
                self._busy = True
            try:
                if self._send(body):
                    self.delivered += 1
                else:
                    self.dropped += 1
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send(self, body: bytes) -> bool:
        """Deliver one event, retrying with backoff; False when it was given up."""
        delay = self.backoff
        last: DeliveryError | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                self.target.send(body)
                return True
            except DeliveryError as exc:
                last = exc
                if not exc.retry or attempt == self.attempts:
                    break
                wait = exc.retry_after if exc.retry_after is not None else delay
                wait = min(wait, BACKOFF_MAX)
                delay = min(delay * 2, BACKOFF_MAX)
                if not self._sleep(wait):
                    break
        self.warn(f"--notify: an event could not be delivered to {self.target.describe()} "
                  f"({last}); it is dropped")
        return False

    def _sleep(self, seconds: float) -> bool:
        """Wait before the next attempt; False when `close`'s deadline comes first."""
        with self._cond:
            end = time.monotonic() + seconds
            while True:
                now = time.monotonic()
                if self._deadline is not None and self._deadline <= end:
                    return False
                if now >= end:
                    return True
                self._cond.wait(end - now)

    def close(self, grace: float = CLOSE_GRACE) -> None:
        """Stop taking events; wait up to `grace` seconds for those still queued to be
        delivered, then give up on the rest (the thread is a daemon: it never holds the
        process)."""
        with self._cond:
            self._closed.set()
            self._deadline = time.monotonic() + grace
            self._cond.notify_all()
        self._thread.join(grace)
        with self._cond:
            left = len(self._queue) + (1 if self._busy else 0)
        if left:
            self.warn(f"--notify: {left} event(s) not delivered to "
                      f"{self.target.describe()} before exit")


__all__ = ["Notifier", "Target", "job_event", "DeliveryError"]
