"""Running a job: the parent side of the data path.

    manifest ─► chunks ─► Scheduler (leases) ─► workers ─► markers ─► report

The parent streams the manifest into chunks, leases them to worker processes through
the native `Scheduler` (at most `PREFETCH` per worker), collects each chunk's marker,
keeps job.json's counters current, and at the end publishes the completion report.
A worker that dies has its chunks taken back and run again by a new worker.

Every status write goes through `_set_status`, which asks model/status.py's table
whether the move is allowed. `run_job` runs on any thread and installs no signal
handler: it takes a `stop` event, which the CLI sets on SIGINT/SIGTERM; the job then
stops with its checkpoint (the markers) intact, Paused.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from batchops._scheduler import Scheduler
from batchops.manifest.reader import (
    ChunkPrefetcher,
    ChunkReader,
    ManifestInfo,
    file_digest,
    iter_chunks,
    relocated,
)
from batchops.model.arns import given_partition
from batchops.model.chunk import Chunk, ChunkRange, chunk_count, default_workers
from batchops.model.errors import JobStateError, JobStoreError, ManifestError
from batchops.model.spec import DEFAULT_TASK_TIMEOUT, AwsSettings, WorkerConfig, fit_text
from batchops.model.status import (
    ACTIVE,
    CANCELLED,
    CANCELLING,
    COMPLETE,
    COMPLETING,
    FAILED,
    FAILING,
    NEW,
    PAUSED,
    PAUSING,
    PREPARING,
    SUSPENDED,
    can_move,
    check_transition,
)
from batchops.results.jobstore import JobStore, now_iso
from batchops.results.report import publish, write_chunk
from batchops.schedule.backends import InProcessBackend, ProcessBackend, WorkerBackend
from batchops.schedule.create import fail_job, manifest_info, prepare_again, report_spec
from batchops.schedule.failpoints import failpoint
from batchops.schedule.processes import Worker
from batchops.storage.outcomes import Outcome

PREFETCH = 2
STATUS_INTERVAL = 1.0
#: Seconds between `progress` events in the job's log (the console's throughput chart).
PROGRESS_LOG_INTERVAL = 5.0
MAX_RESPAWNS_PER_WORKER = 3  # deaths of workers holding no chunk (they cannot start)
#: Seconds without a word from a worker holding chunks before its leases are taken back
#: (it heartbeats every half second); BATCHOPS_LEASE_SECONDS overrides it.
LEASE_SECONDS = 30.0
#: Times a chunk may take its worker down before its tasks are reported failed (a poison
#: chunk), counted across resumes.
POISON_ATTEMPTS = 3

ProgressFn = Callable[[int, int, int], None]


class _Stop(Exception):
    pass


class JobRun:
    """One run (first or resumed) of a job in this process."""

    def __init__(self, store: JobStore, on_progress: ProgressFn | None = None,
                 in_process: bool = False, preset_stores: dict[str, Any] | None = None,
                 should_yield: Callable[[], str | None] | None = None,
                 prestarted: list[Worker] | None = None,
                 stop: threading.Event | None = None,
                 aws: AwsSettings | None = None, report_url: str | None = None,
                 engine: str = "local", ray_address: str | None = None,
                 on_workers: Callable[[int, int], None] | None = None,
                 backend: WorkerBackend | None = None,
                 settings: Mapping[str, Any] | None = None) -> None:
        self.store = store
        # `resume --workers/--concurrency/--max-*-per-second`: the job's from now on.
        self.new_settings = dict(settings or {})
        self.given_backend = backend  # started early by the caller (Ray actors)
        self.on_workers = on_workers or (lambda workers, nodes: None)
        self._where: dict[int, str] = {}  # worker id -> its node (where backends say)
        self._last_shared = 0.0  # when a SlowDown was last shared (for the log)
        self.engine = engine  # "local" (worker processes) or "ray" (actors on a cluster)
        self.ray_address = ray_address
        self.aws = aws  # `resume --profile/--region/--endpoint-url`: the job's from now on
        self.report_url = report_url  # `resume --report URL`: the job's from now on
        self.stop_event = stop or threading.Event()
        self.on_progress = on_progress or (lambda s, f, t: None)
        self.in_process = in_process
        self.preset_stores = preset_stores
        self.stop_reason: str | None = None
        self.should_yield = should_yield or (lambda: None)
        self.prestarted = list(prestarted or [])
        self._last_control = 0.0
        self._last_status = 0.0
        self._last_progress_log = 0.0
        self.fatal: str | None = None
        self._load()

    def _load(self) -> None:
        """Read job.json (again: `run` does it once it holds the lock) and set up the
        scheduler. A job never prepared (killed while Preparing) has no chunks yet."""
        self.doc = self.store.read()
        self.settings = self.doc["Batchops"]
        if self.report_url:
            self.settings["report_url"] = self.report_url
            old = self.doc["Job"]["Report"]
            self.doc["Job"]["Report"] = report_spec(
                self.report_url, old["ReportScope"], True,
                partition=given_partition(old.get("Bucket")) or
                given_partition(self.doc["Job"].get("JobArn")) or "aws")
        for name, value in self.new_settings.items():
            self.settings[name] = value
            if self.settings.get("options"):
                self.settings["options"][name] = value
        if self.aws:
            self.settings["aws"] = self.aws.to_json()
            if self.settings.get("options"):
                self.settings["options"]["aws"] = self.aws.to_json()
        self.job = self.doc["Job"]
        self.prepared = bool(self.settings.get("manifest"))
        self._fetch: Callable[[int, int], bytes] | None = None
        self.info = manifest_info(self.doc) if self.prepared else ManifestInfo(
            location="", source="", path="", format="", columns=0, size=0, digest="",
            total_tasks=0)
        if self.prepared:  # its files where this machine finds them (a store elsewhere)
            self.info, self._fetch = relocated(self.info, self.store.manifest_source)
        self.chunk_size = max(1, int(self.settings["chunk_size"] or 1))
        self.sched = Scheduler(chunk_count(self.info.total_tasks, self.chunk_size),
                               self.info.total_tasks,
                               int(self.settings["failure_min_tasks"]),
                               float(self.settings["failure_ratio"]))
        self._held: dict[int, Chunk | ChunkRange] = {}
        self._by_range = False  # the backend's workers read chunks from byte ranges
        self._reader: ChunkReader | None = None
        self._stream: Iterator[Chunk] | None = None
        self._ahead: ChunkPrefetcher | None = None
        self._started = time.monotonic()
        self._active_before = int(self.job["ProgressSummary"]["Timers"]
                                  ["ElapsedTimeInActiveSeconds"])

    # -- setup -------------------------------------------------------------------------------

    def _check_manifest(self) -> None:
        """The job reads its own copy of the manifest, each chunk from its byte range
        (manifest/reader.py): check the copy and its index are whole, without reading the
        manifest. A job prepared before the copy existed digests its manifest again."""
        if self.info.rows_index:
            if self._reader is None:
                self._reader = ChunkReader(self.info, self.chunk_size,  # or ManifestError
                                           self._fetch)
            return
        try:
            size, digest = file_digest(self.info.source)
        except OSError:
            raise ManifestError(self.info.location, None,
                                "the manifest is gone; a job reads it until it completes"
                                ) from None
        if (size, digest) != (self.info.size, self.info.digest):
            raise ManifestError(self.info.location, None,
                                "the manifest changed since the job was created "
                                f"(digest {digest}, expected {self.info.digest}); "
                                "create a new job for the new manifest")

    def _load_checkpoint(self) -> None:
        """Mark the chunks whose markers exist done. Markers come from disk: each names a
        chunk of this job and counts no more tasks than it holds, or the job is refused
        (the native scheduler trusts the indices it is given)."""
        n = self.sched.n_chunks
        for marker in self.store.markers():
            c, ok, failed = marker.get("chunk"), marker.get("succeeded"), marker.get("failed")
            if type(c) is not int or not 0 <= c < n:
                name = self.store.marker_path(c) if type(c) is int else "a chunk marker"
                raise JobStateError(
                    f"job {self.store.job_id}: {name} names chunk {c!r}, but the job's "
                    f"chunks are 0 to {n - 1}: the job folder is damaged (delete that "
                    "marker, then resume to run the chunk again)" if n else
                    f"job {self.store.job_id}: {name} names chunk {c!r}, but the job has "
                    "no chunks: the job folder is damaged (delete that marker)")
            rows = min(self.chunk_size, self.info.total_tasks - c * self.chunk_size)
            if (type(ok) is not int or type(failed) is not int or ok < 0 or failed < 0
                    or ok + failed > rows):
                raise JobStateError(
                    f"job {self.store.job_id}: {self.store.marker_path(c)} counts "
                    f"{ok!r} succeeded and {failed!r} failed tasks in a chunk of {rows}: "
                    "the job folder is damaged (delete that marker, then resume to run "
                    "the chunk again)")
            self.sched.mark_done(c, ok, failed)

    def worker_config(self, workers: int = 1) -> WorkerConfig:
        """Settings for each of `workers` workers (rate limits are shared among them)."""
        s = self.settings
        return WorkerConfig(
            job_id=self.store.job_id, home=self.store.home, operation=s["operation"],
            params=s["params"], bucket_map=tuple(tuple(p) for p in s["bucket_map"]),
            concurrency=int(s["concurrency"]), max_attempts=int(s["max_attempts"]),
            report_scope=self.job["Report"]["ReportScope"], dry_run=bool(s["dry_run"]),
            max_ops_per_second=float(s.get("max_ops_per_second") or 0) / workers,
            max_bytes_per_second=float(s.get("max_bytes_per_second") or 0) / workers,
            task_timeout=float(s.get("task_timeout", DEFAULT_TASK_TIMEOUT)),
            aws=AwsSettings.from_json(s.get("aws")),
        )

    # -- chunk supply --------------------------------------------------------------------

    def _next_chunk(self) -> Chunk | ChunkRange | None:
        c = self.sched.next_chunk()
        if c < 0:
            return None
        chunk = self._held.get(c)
        if chunk is None:
            if self._by_range and self._reader is not None:  # the worker reads it itself
                chunk = self._reader.range(c)
            elif self.info.rows_index:  # chunk c alone, from its byte range in the job's copy
                if self._ahead is None:
                    self._ahead = ChunkPrefetcher(self.info, self.chunk_size,
                                                  lambda i: not self.sched.is_done(i),
                                                  fetch=self._fetch)
                chunk = self._ahead.read(c)
            else:  # prepared before rows.idx: stream, in the scheduler's order
                if self._stream is None:
                    self._stream = iter_chunks(self.info, self.chunk_size,
                                               lambda i: not self.sched.is_done(i))
                chunk = next(self._stream)
                if chunk.index != c:
                    raise RuntimeError(f"chunk order mismatch: {chunk.index} != {c}")
            self._held[c] = chunk
        return chunk

    def _on_marker(self, marker: dict[str, Any]) -> None:
        c = marker["chunk"]
        if marker.get("lost"):  # another attempt committed it first: its counts stand
            self.store.log("commit-lost", chunk=c)
        self.sched.complete(c, marker["succeeded"], marker["failed"])
        self._held.pop(c, None)
        stats = self.settings.setdefault("stats", {"retries": 0, "throttled": 0})
        stats["retries"] += marker.get("retries", 0)
        stats["throttled"] += marker.get("throttled", 0)
        stats["bytes"] = stats.get("bytes", 0) + marker.get("bytes", 0)
        if marker.get("throttled"):
            self.store.log("throttled", chunk=c, times=marker["throttled"],
                           concurrency=marker.get("concurrency"))
        elif marker.get("concurrency", 1 << 30) < int(self.settings["concurrency"]):
            # Not throttled itself, but slowed down with the others (shared AIMD).
            self.store.log("slowed", chunk=c, concurrency=marker["concurrency"])

    # -- status ----------------------------------------------------------------------------

    def _update_status(self, force: bool = False) -> None:
        """Write the counters to job.json (about once a second; at once with `force`)."""
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_INTERVAL:
            return
        self._last_status = now
        succeeded, failed = self.sched.counters()
        summary = self.job["ProgressSummary"]
        summary["NumberOfTasksSucceeded"] = succeeded
        summary["NumberOfTasksFailed"] = failed
        summary["Timers"]["ElapsedTimeInActiveSeconds"] = (
            self._active_before + int(now - self._started))
        self.store.write(self.doc)  # atomic and durable, every time (about 1 fsync/s)
        if force or now - self._last_progress_log >= PROGRESS_LOG_INTERVAL:
            self._last_progress_log = now
            stats = self.settings.get("stats") or {}
            self.store.log("progress", status=self.job["Status"], succeeded=succeeded,
                           failed=failed, retries=stats.get("retries", 0),
                           throttled=stats.get("throttled", 0))
        self.on_progress(succeeded, failed, self.info.total_tasks)

    def _set_status(self, status: str) -> None:
        """Move the job to `status` (durably); the table in model/status.py must allow it."""
        check_transition(self.job["Status"], status)
        self.job["Status"] = status
        self._update_status(force=True)

    def _check_control(self) -> None:
        """Cancellation and preemption, looked at about once a second."""
        now = time.monotonic()
        if now - self._last_control < STATUS_INTERVAL:
            return
        self._last_control = now
        control = self.store.control()
        if "Priority" in control:
            self.job["Priority"] = control["Priority"]
        if control.get("RequestedStatus") == CANCELLED:
            self.stop_reason = "cancelled"
            raise _Stop(control.get("StatusUpdateReason") or "cancelled by request")
        other = self.should_yield()
        if other:
            self.stop_reason = "preempted"
            raise _Stop(f"paused for job {other}, which has a higher priority")

    def _tick(self) -> None:
        if self.stop_event.is_set():
            raise KeyboardInterrupt
        if self.store.lost:  # our lease on the job expired and another process took it
            self.fatal = ("another process took this job over (its lease expired here); "
                          "this one stops")
            raise _Stop(self.fatal)
        self._check_control()
        self._update_status()
        if self.sched.threshold_exceeded():
            self.stop_reason = "threshold"
            raise _Stop(self._threshold_message())

    def _threshold_message(self) -> str:
        s, f = self.sched.counters()
        return (f"{f} of {s + f} tasks failed, more than {self.sched.failure_ratio:.0%} "
                "(failure threshold)")

    # -- running ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run the job to its end (or to a stop); return the final job document."""
        self.store.lock()
        try:
            # Temporaries a stopped run's workers left mid-write (nobody else writes now).
            self.store.sweep_temporaries()
            self._load()  # what job.json says now that no other process can change it
            return self._run_locked()
        finally:
            if self._ahead is not None:
                self._ahead.close()
            self.store.unlock()

    def _run_locked(self) -> dict[str, Any]:
        status = self.job["Status"]
        if status in (COMPLETE, CANCELLED):
            return self.doc
        if status == FAILED:
            raise JobStateError(self._final_failure())
        cancel = self.store.control().get("RequestedStatus") == CANCELLED or \
            status == CANCELLING
        if status in (NEW, PREPARING) and not cancel:
            prepare_again(self.store, self.doc)  # killed while Preparing: prepare again
            self._load()
            if self.stop_event.is_set():  # stopped while it prepared: it is Ready now
                raise KeyboardInterrupt
            status = self.job["Status"]
            if status == FAILED:
                return self.doc
        if status == SUSPENDED and not cancel:
            raise JobStateError(
                f"job {self.store.job_id} awaits confirmation: run `batchops update-job-status "
                f"--job-id {self.store.job_id} --requested-job-status Ready` first")
        if cancel:
            self._load_checkpoint()
            self.stop_reason = "cancelled"
            return self._finish(self.store.control().get("StatusUpdateReason")
                                or self.job.get("StatusUpdateReason") or "cancelled by request")
        if status in (COMPLETING, FAILING):
            # Killed while publishing the report: publish it (again) and end.
            self._load_checkpoint()
            self.stop_reason = "threshold" if status == FAILING else None
            return self._finish(self.job.get("StatusUpdateReason"))
        self._check_manifest()
        self._load_checkpoint()
        # Workers' backend first (joining a Ray cluster can fail): the job's status is
        # unchanged if it cannot be had.
        backend = None if self.sched.finished else self._backend()
        self.job.pop("StatusUpdateReason", None)
        self.job.pop("FailureReasons", None)
        self.job.pop("TerminationDate", None)
        self.store.log("active", chunks_done=self.sched.chunks_done,
                       chunks=self.sched.n_chunks)
        if status == PAUSING:  # killed while pausing: it did pause
            self._set_status(PAUSED)
        self._set_status(ACTIVE)
        message: str | None = None
        try:
            if backend is not None:
                self._dispatch(backend)
        except _Stop as stop:
            message = str(stop)
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            message = "interrupted"
        if self.fatal:
            self.stop_reason = "fatal"
            message = self.fatal
        elif self.stop_reason is None and self.sched.threshold_exceeded():
            # Every chunk ended before a tick saw the threshold: the job fails all the same.
            self.stop_reason = "threshold"
            message = self._threshold_message()
        return self._finish(message)

    def _final_failure(self) -> str:
        """Why `resume` refuses a Failed job, and what to do instead."""
        code = (self.job.get("FailureReasons") or [{}])[0].get("FailureCode", "failed")
        head = (f"job {self.store.job_id} Failed ({code}), and a failed job is final, as "
                "at Amazon: ")
        if code != "TaskFailureThresholdExceeded" or not self.settings.get("report_manifest"):
            return head + ("fix what its FailureReasons say (`batchops describe-job "
                           f"--job-id {self.store.job_id}`) and create a new job")
        results = f"{self.settings['report_url'].rstrip('/')}/job-{self.store.job_id}/results/"
        if results.startswith("file://"):
            results = results[len("file://"):]
        return head + ("retry its failed tasks with a new job whose --manifest is a "
                       f"failed-tasks part of its report ({results}*-failed.csv; see the "
                       "README, \"Retry the failures\")")

    def cancel_idle(self, reason: str) -> dict[str, Any]:
        """Cancel a job no process is running (the caller holds its lock)."""
        self._load()
        self._load_checkpoint()
        self.stop_reason = "cancelled"
        return self._finish(reason)

    def _finish(self, message: str | None) -> dict[str, Any]:
        # The workers are stopped: the counters are what the checkpoint holds (a worker
        # may have finished a chunk after we stopped listening; running chunks count 0).
        self.sched.release_all()
        self._load_checkpoint()
        if self.stop_reason == "cancelled":
            self.job["StatusUpdateReason"] = message or "cancelled"
            if can_move(self.job["Status"], CANCELLING):  # tasks may have run: a report
                self._set_status(CANCELLING)
                failpoint(self.store.dir, "cancelling")
                self._publish()
            self.job["TerminationDate"] = now_iso()
            self._set_status(CANCELLED)
            self.store.log("cancelled", reason=message)
            return self.doc
        if self.stop_reason == "preempted":
            self.job["StatusUpdateReason"] = message
            self._set_status(PAUSING)
            self._set_status(PAUSED)
            self.store.log("paused", reason=message)
            return self.doc
        self.settings["last_stop"] = self.stop_reason
        if self.stop_reason in ("interrupted", "fatal"):
            self.job["StatusUpdateReason"] = (
                f"{message}; run `batchops resume {self.store.job_id}` to continue")
            self._set_status(PAUSED)
            self.store.log("paused", reason=message)
            return self.doc
        if self.stop_reason == "threshold":
            self.job["StatusUpdateReason"] = message or "failure threshold exceeded"
            self._set_status(FAILING)
            failpoint(self.store.dir, "failing")
            self._publish()
            fail_job(self.store, self.doc, "TaskFailureThresholdExceeded",
                     self.job["StatusUpdateReason"])
            return self.doc
        self._set_status(COMPLETING)
        failpoint(self.store.dir, "completing")
        self._publish()
        failpoint(self.store.dir, "published")
        self.job["TerminationDate"] = now_iso()
        self._set_status(COMPLETE)
        s, f = self.sched.counters()
        self.store.log("complete", succeeded=s, failed=f)
        return self.doc

    def _publish(self) -> None:
        """Write the report; when it cannot be written the job stays where it is
        (Completing, Failing or Cancelling, all work done) and `resume` writes it again,
        or elsewhere with `resume --report URL`."""
        if not self.job["Report"].get("Enabled", True):
            return
        try:
            url = publish(self.store, self.settings["report_url"],
                          self.job["Report"]["ReportScope"],
                          AwsSettings.from_json(self.settings.get("aws")))
        except JobStoreError as exc:
            job_id = self.store.job_id
            message = (f"{exc}; the tasks are done and recorded: `batchops resume {job_id}` "
                       f"writes the report again, `batchops resume {job_id} --report URL` "
                       "writes it elsewhere")
            self.job["StatusUpdateReason"] = fit_text(message)
            self.store.write(self.doc)
            self.store.log("report-unwritable", error=str(exc))
            raise JobStoreError(message) from None
        self.settings["report_manifest"] = url
        # Parts no marker names (attempts that never committed, or lost): only now, with
        # every chunk committed, since an attempt of a dead run on another machine may
        # still be writing parts that its marker will name.
        self.store.sweep_unclaimed_parts()

    # -- dispatch ---------------------------------------------------------------------------

    def _backend(self) -> WorkerBackend:
        if self.given_backend is not None:
            backend, self.given_backend = self.given_backend, None
            return backend
        if self.in_process:
            return InProcessBackend(self.preset_stores)
        if self.engine == "ray":
            from batchops.schedule.raybackend import RayBackend

            return RayBackend(self.ray_address)
        backend = ProcessBackend(self.prestarted)
        self.prestarted = []
        return backend

    def _dispatch(self, backend: WorkerBackend) -> None:
        """Lease chunks to the backend's workers and act on what they say, until every
        chunk is done or the job stops (a _Stop, KeyboardInterrupt, or a fatal error)."""
        n = 1 if self.in_process else int(self.settings["workers"]) or default_workers()
        n = max(1, min(n, self.sched.n_chunks - self.sched.chunks_done))
        cfg = self.worker_config(n)
        self._by_range = bool(getattr(backend, "by_range", False)) and self._reader is not None \
            and self.sched.total_tasks >= getattr(backend, "by_range_from", 0)
        if self._by_range:
            cfg = dataclasses.replace(cfg, manifest=self.info.to_json(),
                                      chunk_size=self.chunk_size)
        leased: dict[int, list[int]] = {}  # worker id -> its chunks, oldest first
        heard: dict[int, float] = {}  # worker id -> when it last said anything
        respawns = 0
        throttled: dict[int, int] = {}  # worker id -> SlowDowns it has reported
        lease_seconds = float(os.environ.get("BATCHOPS_LEASE_SECONDS") or LEASE_SECONDS)
        for wid in backend.start(cfg, n):
            leased[wid] = []
        try:
            while not self.sched.finished:
                if self.stop_event.is_set():
                    raise KeyboardInterrupt
                self._lease_round(backend, leased, heard)
                now = time.monotonic()
                for kind, wid, data in backend.wait(STATUS_INTERVAL / 4):
                    heard[wid] = now
                    if kind == "done":
                        self._on_marker(data)
                        if data["chunk"] in leased.get(wid, ()):
                            leased[wid].remove(data["chunk"])
                    elif kind == "progress":
                        self.sched.progress(*data)
                    elif kind == "fatal":
                        self.fatal = data
                    elif kind == "throttled":
                        if data > throttled.get(wid, 0):  # new SlowDowns: all slow down
                            throttled[wid] = data
                            others = [w for w in leased if w != wid]
                            for other in others:
                                backend.slow_down(other)
                            if others and now - self._last_shared >= STATUS_INTERVAL:
                                self._last_shared = now
                                self.store.log("slowdown-shared", worker=wid, slowdowns=data,
                                               told=others)
                    elif kind == "started":
                        self.store.log("worker-started", worker=wid, **data)
                        self._where[wid] = str(data.get("node", ""))
                        self.on_workers(len(self._where), len(set(self._where.values())))
                    elif kind == "died":
                        if self._where.pop(wid, None) is not None:
                            self.on_workers(len(self._where), len(set(self._where.values())))
                        back = self.sched.release(wid)
                        leased.pop(wid, None)
                        self.store.log("worker-died", worker=wid, chunks=back, cause=data)
                        for c in back:
                            self._count_death(c, data)
                        if not back:  # it died holding nothing: it cannot start
                            respawns += 1
                            if respawns > MAX_RESPAWNS_PER_WORKER * n:
                                self.fatal = "workers keep dying; see the job log"
                        if not self.sched.finished and not self.fatal:
                            leased[backend.add()] = []
                if self.fatal:
                    return
                for wid, chunks in leased.items():
                    if chunks and now - heard.get(wid, now) > lease_seconds:
                        # Silent (stopped, deadlocked): its leases expire, it goes.
                        self.store.log("lease-expired", worker=wid, chunks=chunks,
                                       seconds=lease_seconds)
                        backend.kill(wid)
                        heard[wid] = now
                self._tick()
        finally:
            # A cancel or the failure threshold ends the job: each worker first reports
            # the tasks that ran in its chunks in flight, so the report lists them.
            backend.stop(report=self.stop_reason in ("cancelled", "threshold"))

    def _lease_round(self, backend: WorkerBackend, leased: dict[int, list[int]],
                     heard: dict[int, float]) -> None:
        """Hand out chunks round-robin, one per worker per round, so no worker holds two
        chunks while another has none. While a chunk that took a worker down is still
        to run, each worker holds one chunk at a time, so that the next death names its
        chunk alone."""
        deaths = self.settings.get("chunk_deaths") or {}
        suspects = any(not self.sched.is_done(int(c)) for c in deaths)
        for depth in range(1, (1 if suspects else PREFETCH) + 1):
            for wid, chunks in leased.items():
                if len(chunks) >= depth:
                    continue
                chunk = self._next_chunk()
                if chunk is None:
                    return
                self.sched.lease(chunk.index, wid)
                if not chunks:
                    heard[wid] = time.monotonic()
                chunks.append(chunk.index)
                backend.send(wid, chunk)
                if chunk.index == _duplicate_hook():
                    self._send_twice(backend, leased, wid, chunk)

    def _send_twice(self, backend: WorkerBackend, leased: dict[int, list[int]], wid: int,
                    chunk: Chunk | ChunkRange) -> None:
        """Test hook (BATCHOPS_TEST_DUPLICATE_CHUNK): run a chunk on a second worker at
        the same time, as a worker whose lease was taken back would, to show that only
        one attempt commits. The second attempt holds no lease of the scheduler's."""
        other = next((w for w in leased if w != wid), None)
        if other is not None:
            self.store.log("duplicate-attempt", chunk=chunk.index, workers=[wid, other])
            backend.send(other, chunk)

    def _count_death(self, chunk: int, cause: str) -> None:
        """A chunk's worker died while running it: after POISON_ATTEMPTS such deaths (over
        every run of the job) the chunk is a poison chunk, and its tasks are reported
        failed with a code naming the cause, so the job goes on without it."""
        deaths = self.settings.setdefault("chunk_deaths", {})
        count = deaths[str(chunk)] = int(deaths.get(str(chunk), 0)) + 1
        self._update_status(force=True)  # the count survives a stop
        if count < POISON_ATTEMPTS:
            return
        held = self._held.get(chunk)
        if held is None:  # never read here: read it (it is the next one handed out)
            nxt = self._next_chunk()
            held = nxt if nxt is not None and nxt.index == chunk else None
            if held is None:
                return
        if isinstance(held, ChunkRange):
            assert self._reader is not None  # ranges come from it
            held = self._reader.read_range(held)
        code = ("TaskTimeout" if "timeout" in cause else
                "WorkerKilled" if "killed" in cause or "answering" in cause else
                "WorkerCrashed")
        outcome = Outcome(False, 500, code,
                          f"the chunk holding this task took its worker down {count} times "
                          f"(last: {cause}); its tasks were not retried again")
        marker = write_chunk(self.store, held, dict.fromkeys(range(len(held)), outcome), {},
                             self.job["Report"]["ReportScope"], bool(self.settings["dry_run"]))
        self.store.log("poison-chunk", chunk=chunk, deaths=count, cause=cause)
        self.sched.lease(chunk, -1)
        self._on_marker(marker)


def _duplicate_hook() -> int:
    value = os.environ.get("BATCHOPS_TEST_DUPLICATE_CHUNK")
    return int(value) if value else -1


def run_job(store: JobStore, on_progress: ProgressFn | None = None, in_process: bool = False,
            preset_stores: dict[str, Any] | None = None,
            should_yield: Callable[[], str | None] | None = None,
            prestarted: list[Worker] | None = None,
            stop: threading.Event | None = None,
            aws: AwsSettings | None = None, report_url: str | None = None,
            engine: str = "local", ray_address: str | None = None,
            on_workers: Callable[[int, int], None] | None = None,
            backend: WorkerBackend | None = None,
            settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) a job to its end, or until it is cancelled or preempted; returns
    its final job document.

    Runs on any thread and installs no signal handler: set `stop` (the CLI does on
    SIGINT/SIGTERM) and the job stops soon after, Paused, its checkpoint intact.
    """
    run = JobRun(store, on_progress, in_process, preset_stores, should_yield, prestarted,
                 stop, aws, report_url, engine, ray_address, on_workers, backend, settings)
    try:
        return run.run()
    finally:
        for w in run.prestarted:  # never used (nothing to run, or an error first)
            w.discard()
        if run.given_backend is not None:  # likewise
            run.given_backend.stop(report=False)


__all__ = ["JobRun", "run_job", "FAILED"]
