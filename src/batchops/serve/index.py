"""The server's index of the job store: ListJobs and the runners' choice without reading
every job file per call.

The index is in memory, built from the job store when the server starts (one read of
each job.json), and kept current without re-reading the store:

- a job this server creates is added when its job.json exists;
- a finished job (Complete, Failed, Cancelled) never changes again (model/status.py:
  terminal statuses have no way out), so its entry is final;
- a job not finished is looked at again only by a stat() of its job.json and
  control.json (re-read when either changed) and, in a running status, a look at its
  lock (describe-job shows a running status only while a live process holds it);
- jobs another process created in the same store are found by listing the store's job
  folders, at most once per RESCAN seconds.

So ListJobs shows each job as it is at the request (on an object store, where each look
is a GET, as it was up to FRESH_REMOTE seconds before); the runners' choice may be FRESH
seconds old.

Crash: nothing of the index is written anywhere, so nothing of it can be stale or
half-written after a kill -9; the job files are the only truth, and a server that
starts again builds the index from them.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from batchops.model.errors import BatchopsError
from batchops.model.status import RUNNING, TERMINAL
from batchops.results.jobstore import batchops_home
from batchops.results.objectjobs import is_remote_home
from batchops.results.stores import job_ids, job_store
from batchops.schedule.control import describe, list_entry
from batchops.schedule.queue import RUNNABLE

#: Seconds between two listings of the store's job folders (jobs other processes made).
RESCAN = 1.0
RESCAN_REMOTE = 10.0
#: Seconds within which the entries of jobs not finished are not looked at again (many
#: ListJobs requests, and every idle runner, ask at once).
FRESH = 0.05
FRESH_REMOTE = 2.0  # a job store on an object store: each look is a GET


def account_of(job: dict[str, Any]) -> str:
    """The account in a job's JobArn (arn:PARTITION:s3:REGION:ACCOUNT:job/ID)."""
    fields = str(job.get("JobArn", "")).split(":", 5)
    return fields[4] if len(fields) == 6 else ""


@dataclass
class Entry:
    """What the index knows of one job."""

    job_id: str
    account: str
    key: tuple[str, str]  # (CreationTime, JobId): ListJobs' order, newest last
    listed: dict[str, Any]  # its JobListDescriptor
    priority: int
    stamp: tuple[int, ...]  # job.json's and control.json's mtime and size
    locked: bool
    status: str = ""

    def __post_init__(self) -> None:
        self.status = str(self.listed["Status"])


class NextTokenError(ValueError):
    """A NextToken this index did not give."""


def encode_token(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, str]:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        created, job_id = key
        return str(created), str(job_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise NextTokenError(token) from None


def _newest_first(keys: list[tuple[str, str]], before: tuple[str, str] | None
                  ) -> Iterator[tuple[str, str]]:
    """The sorted `keys` from the newest, starting just before `before` (a NextToken's)."""
    end = bisect.bisect_left(keys, before) if before is not None else len(keys)
    for i in range(end - 1, -1, -1):
        yield keys[i]


class JobIndex:
    """Every job of one job store, by creation time, with its ListJobs entry."""

    def __init__(self, home: str | None = None) -> None:
        self.home = home
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._order: list[tuple[str, str]] = []  # sorted keys, oldest first
        self._by_status: dict[str, list[tuple[str, str]]] = {}  # the same, per status
        self._live: set[str] = set()  # jobs not in a terminal status
        self._scanned = 0.0
        self._refreshed = 0.0
        self._jobs_dir = os.path.join(home or batchops_home(), "jobs")
        self._remote = bool(home and is_remote_home(home))

    def __len__(self) -> int:
        return len(self._entries)

    # -- keeping it current --------------------------------------------------------------

    def _stamp(self, job_id: str) -> tuple[int, ...]:
        if self._remote:
            return (time.monotonic_ns(),)  # no cheap stat on an object store: read again
        out: list[int] = []
        for name in ("job.json", "control.json"):
            try:
                st = os.stat(f"{self._jobs_dir}/{job_id}/{name}")
                out += [st.st_mtime_ns, st.st_size]
            except FileNotFoundError:
                out += [0, 0]
        return tuple(out)

    def _load(self, job_id: str, stamp: tuple[int, ...] | None = None) -> Entry | None:
        store = job_store(job_id, self.home)
        try:
            job = describe(store)["Job"]
        except BatchopsError:
            return None
        return Entry(job_id, account_of(job), (str(job["CreationTime"]), job_id),
                     list_entry(job), int(job.get("Priority", 0)),
                     stamp if stamp is not None else self._stamp(job_id),
                     job["Status"] in RUNNING)

    @staticmethod
    def _remove(keys: list[tuple[str, str]], key: tuple[str, str]) -> None:
        i = bisect.bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            del keys[i]

    def _put(self, entry: Entry) -> None:
        old = self._entries.get(entry.job_id)
        if old is None:
            bisect.insort(self._order, entry.key)
        if old is None or old.status != entry.status:
            if old is not None:
                self._remove(self._by_status[old.status], old.key)
            bisect.insort(self._by_status.setdefault(entry.status, []), entry.key)
        self._entries[entry.job_id] = entry
        if entry.status in TERMINAL:
            self._live.discard(entry.job_id)
        else:
            self._live.add(entry.job_id)

    def _drop(self, job_id: str) -> None:
        entry = self._entries.pop(job_id, None)
        if entry is not None:
            self._remove(self._order, entry.key)
            self._remove(self._by_status[entry.status], entry.key)
        self._live.discard(job_id)

    def rebuild(self) -> None:
        """Read every job of the store (the server's start)."""
        ids = job_ids(self.home)
        with self._lock:
            self._entries.clear()
            self._order.clear()
            self._by_status.clear()
            self._live.clear()
            for job_id in ids:
                entry = self._load(job_id)
                if entry is not None:
                    self._put(entry)
            self._scanned = time.monotonic()

    def add(self, job_id: str) -> Entry | None:
        """Take in a job (just created, or found by a look-up)."""
        entry = self._load(job_id)
        with self._lock:
            if entry is None:
                self._drop(job_id)
            else:
                self._put(entry)
        return entry

    def _refresh(self, job_id: str) -> Entry | None:
        """The entry of a job not finished, read again only if its files changed."""
        entry = self._entries.get(job_id)
        stamp = self._stamp(job_id)
        if entry is not None and stamp == entry.stamp:
            if not entry.locked and entry.status not in RUNNING:
                return entry
            locked = job_store(job_id, self.home).is_locked()
            if locked == entry.locked:
                return entry
        fresh = self._load(job_id, stamp)
        if fresh is None:
            self._drop(job_id)
            return None
        if fresh.listed["Status"] in RUNNING:
            fresh.locked = True  # describe() shows a running status only under a lock
        self._put(fresh)
        return fresh

    def _rescan(self) -> None:
        now = time.monotonic()
        if now - self._scanned < (RESCAN_REMOTE if self._remote else RESCAN):
            return
        self._scanned = now
        if self._remote:
            names = job_ids(self.home)
        else:  # one listdir; only names not yet known are looked at (job_ids stats each)
            try:
                names = os.listdir(os.path.join(self.home or batchops_home(), "jobs"))
            except FileNotFoundError:
                names = []
        for job_id in names:
            if job_id not in self._entries and job_store(job_id, self.home).exists():
                entry = self._load(job_id)
                if entry is not None:
                    self._put(entry)

    def current(self, max_age: float = FRESH) -> None:
        """Bring every entry up to date (jobs not finished, jobs made elsewhere), unless
        that was done less than `max_age` seconds ago (FRESH_REMOTE at least on an object
        store)."""
        with self._lock:
            now = time.monotonic()
            if now - self._refreshed < (max(max_age, FRESH_REMOTE) if self._remote
                                        else max_age):
                return
            self._rescan()
            for job_id in list(self._live):
                self._refresh(job_id)
            self._refreshed = time.monotonic()

    # -- questions -----------------------------------------------------------------------

    def get(self, job_id: str) -> Entry | None:
        """A job's entry, current; a job made by another process is looked up."""
        with self._lock:
            if job_id in self._entries:
                return self._refresh(job_id) if job_id in self._live else \
                    self._entries[job_id]
        if "/" in job_id or job_id in ("", ".", ".."):
            return None
        return self.add(job_id) if job_store(job_id, self.home).exists() else None

    def list_jobs(self, account: str, statuses: tuple[str, ...] = (), max_results: int = 1000,
             next_token: str | None = None) -> dict[str, Any]:
        """ListJobs' output for `account`: newest first, `max_results` a page; NextToken
        names the last job given, so a page never repeats or skips a job that was there
        when the first page was asked (jobs created since come before it)."""
        self.current(max_age=0)  # a stat per job not finished: what ListJobs shows is now
        jobs: list[dict[str, Any]] = []
        start = decode_token(next_token) if next_token else None
        with self._lock:
            # Newest first: the store's order, or the merged orders of the statuses asked.
            lists = [self._by_status.get(st, []) for st in set(statuses)] if statuses \
                else [self._order]
            keys = heapq.merge(*(_newest_first(keys, start) for keys in lists), reverse=True)
            last: tuple[str, str] | None = None
            more = False
            for key in keys:
                entry = self._entries[key[1]]
                if entry.account != account:
                    continue
                if len(jobs) == max_results:
                    more = True
                    break
                jobs.append(dict(entry.listed))
                last = entry.key
        out: dict[str, Any] = {"Jobs": jobs}
        if more and last is not None:
            out["NextToken"] = encode_token(last)
        return out

    def entries(self) -> list[Entry]:
        """Every job's entry, current, newest first, of every account (the console's
        list, /metrics)."""
        self.current()
        with self._lock:
            return [self._entries[key[1]] for key in reversed(self._order)]

    def runnable(self) -> list[tuple[int, str, str]]:
        """(priority, creation time, job id) of every job a runner may pick, best first:
        runnable statuses, held by no live process."""
        self.current()
        with self._lock:
            out = [(e.priority, e.key[0], e.job_id) for e in
                   (self._entries[j] for j in self._live)
                   if e.status in RUNNABLE and not e.locked]
        out.sort(key=lambda j: (-j[0], j[1]))
        # A runner that has just taken a job holds its lock before it writes Active.
        return [j for j in out if not job_store(j[2], self.home).is_locked()]


__all__ = ["Entry", "JobIndex", "NextTokenError", "account_of", "decode_token",
           "encode_token"]
