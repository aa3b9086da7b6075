"""The job store: everything about a job under one folder.

    $BATCHOPS_HOME/jobs/<job-id>/
      job.json        {"Job": <Amazon's JobDescriptor>, "Batchops": <run settings>}
      chunks/         one marker per finished chunk: the checkpoint (first writer wins)
      results/        report parts, one or two per attempt at a chunk (succeeded / failed)
      control.json    what control commands ask of the job (priority, tags, cancel);
                      written by them, read by the process running the job
      log             one JSON line per event
      lock            held (flock) by the process running the job

Every write is atomic: temporary file, fsync, rename, fsync of the folder. A chunk is
done when its marker exists, and its marker is written only after its parts are
durable. A chunk may run twice at once (a worker whose lease was taken back, on
another machine of a cluster): each attempt names its parts by an attempt token, and
the marker is created exclusively (link(2) of a durable temporary, which fails on a
name that exists), so the first attempt to finish wins and the marker names its parts;
publishing reads only the parts markers name. Files and folders are created readable
by their owner only.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from batchops.model.errors import JobLockedError, JobNotFoundError, JobStoreError
from batchops.storage.outcomes import scrub

DIR_MODE = 0o700
LOCK_PATIENCE = 0.5  # seconds `lock` retries a lock another process may hold for a look
FILE_MODE = 0o600


def batchops_home() -> str:
    return os.environ.get("BATCHOPS_HOME") or os.path.join(os.path.expanduser("~"), ".batchops")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes, flags: int, durable: bool) -> None:
    """Write all of `data` to a new file (fsynced when `durable`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` so that a crash leaves either the old or the new file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        _write_file(tmp, data, os.O_TRUNC, durable)
        os.replace(tmp, path)
        if durable:
            _fsync_dir(os.path.dirname(path) or ".")
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise JobStoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def create_exclusive(path: str, data: bytes) -> bool:
    """Create `path` holding `data` unless it exists: True when this call created it.

    The data goes to a durable temporary first, which is then linked to `path`; link(2)
    refuses a name that exists, atomically, on local filesystems and on NFS alike, so of
    two writers exactly one wins and nobody ever sees a half-written file."""
    tmp = f"{path}.tmp.{os.getpid()}{secrets.randbelow(10**6):06d}"
    try:
        _write_file(tmp, data, os.O_EXCL, durable=True)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        _fsync_dir(os.path.dirname(path) or ".")
        return True
    except OSError as exc:
        raise JobStoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def makedirs(path: str) -> None:
    """Create `path` and any missing parents, each readable by the owner only."""
    missing = []
    head = os.path.abspath(path)
    while head and not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    try:
        for folder in reversed(missing):
            try:
                os.mkdir(folder, DIR_MODE)
            except FileExistsError:
                if not os.path.isdir(folder):
                    raise
    except OSError as exc:
        raise JobStoreError(f"cannot create {path}: {exc.strerror or exc}") from None


_REASONS = frozenset({"StatusUpdateReason", "FailureReasons"})


def _scrubbed(value: Any) -> Any:
    """`value` with `scrub` applied to every string in it (in lists and dicts too)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


class JobStore:
    """One job's folder. The same interface over an object store's keys is
    results/objectjobs.py; results/stores.py picks one by the job home's URL."""

    #: Set (by a lease's holder) when another process took the job over: stop.
    lost = False
    #: `watch_status`'s listener, called as listener(doc, previous status) after a write
    #: of job.json that changes the job's status (every status write is one of those).
    _on_status: Callable[[dict[str, Any], str | None], None] | None = None
    _status_seen: str | None = None

    def __init__(self, job_id: str, home: str | None = None) -> None:
        self.job_id = job_id
        self.home = home or batchops_home()
        self.dir = os.path.join(self.home, "jobs", job_id)
        self.chunks_dir = os.path.join(self.dir, "chunks")
        self.results_dir = os.path.join(self.dir, "results")
        self.job_path = os.path.join(self.dir, "job.json")
        self._lock_fd: int | None = None

    # -- creation and lookup -----------------------------------------------------------

    @classmethod
    def create(cls, job_id: str, home: str | None = None) -> JobStore:
        store = cls(job_id, home)
        makedirs(os.path.join(store.home, "jobs"))
        try:
            os.mkdir(store.dir, DIR_MODE)
        except FileExistsError:
            raise JobStoreError(f"job {job_id} already exists in {store.home}") from None
        except OSError as exc:
            raise JobStoreError(f"cannot create {store.dir}: {exc.strerror or exc}") from None
        makedirs(store.chunks_dir)
        makedirs(store.results_dir)
        return store

    @classmethod
    def open(cls, job_id: str, home: str | None = None) -> JobStore:
        store = cls(job_id, home)
        if "/" in job_id or job_id in ("", ".", "..") or not os.path.isfile(store.job_path):
            raise JobNotFoundError(f"no job {job_id!r} in {store.home} (see `batchops list-jobs`)")
        return store

    @staticmethod
    def all_ids(home: str | None = None) -> list[str]:
        root = os.path.join(home or batchops_home(), "jobs")
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.isfile(os.path.join(root, n, "job.json"))]

    def exists(self) -> bool:
        return os.path.isfile(self.job_path)

    def default_report_url(self) -> str:
        """Where the report goes when the job names no location: inside the job."""
        return "file://" + os.path.join(self.dir, "report")

    def destroy(self) -> None:
        """Remove a job folder that was never completed (failed creation)."""
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    # -- job.json -----------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        try:
            with open(self.job_path, "rb") as f:
                return orjson.loads(f.read())
        except FileNotFoundError:
            raise JobNotFoundError(f"no job {self.job_id!r} in {self.home}") from None
        except orjson.JSONDecodeError as exc:
            raise JobStoreError(f"{self.job_path} is corrupt: {exc}") from None

    def write(self, doc: dict[str, Any], durable: bool = True) -> None:
        job = doc.get("Job")
        if isinstance(job, dict) and ("StatusUpdateReason" in job or "FailureReasons" in job):
            # Reasons may quote error text a server returned: scrubbed of secrets.
            doc = dict(doc, Job={k: _scrubbed(v) if k in _REASONS else v
                                 for k, v in job.items()})
        atomic_write(self.job_path, orjson.dumps(doc, option=orjson.OPT_INDENT_2), durable)
        self._status_written(doc)

    def watch_status(self, listener: Callable[[dict[str, Any], str | None], None],
                     status: str | None) -> None:
        """Call `listener(doc, previous)` after each write through this store that moves
        the job on from `status` (its status now; None for a job not yet written)."""
        self._on_status, self._status_seen = listener, status

    def _status_written(self, doc: dict[str, Any]) -> None:
        status = (doc.get("Job") or {}).get("Status")
        if self._on_status is not None and status != self._status_seen:
            previous, self._status_seen = self._status_seen, status
            self._on_status(doc, previous)

    # -- control (written by update-job-*, read by the running process) ---------------------

    def control(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.dir, "control.json"), "rb") as f:
                return orjson.loads(f.read())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}

    def update_control(self, **changes: Any) -> dict[str, Any]:
        """Read-modify-write control.json under its own short lock."""
        fd = os.open(os.path.join(self.dir, "control.lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            control = self.control()
            control.update(changes)
            atomic_write(os.path.join(self.dir, "control.json"), orjson.dumps(control))
            return control
        finally:
            os.close(fd)

    # -- checkpoint -----------------------------------------------------------------------

    def marker_path(self, chunk: int) -> str:
        return os.path.join(self.chunks_dir, f"{chunk:012d}.json")

    def sweep_temporaries(self) -> int:
        """Remove the temporaries of atomic writes that a stopped process left in the job
        folder (`<name>.tmp.<pid>`: a worker stopped in the middle of writing a report
        part). Call it holding the job's lock; returns how many went."""
        removed = 0
        for folder in (self.dir, self.chunks_dir, self.results_dir):
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                stem, dot, pid = name.rpartition(".tmp.")
                if dot and stem and pid.isdigit():
                    try:
                        os.unlink(os.path.join(folder, name))
                        removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def commit_marker(self, chunk: int, marker: dict[str, Any]) -> dict[str, Any] | None:
        """Create chunk `chunk`'s marker unless another attempt did first. Returns None
        when this one won, else the winner's marker."""
        path = self.marker_path(chunk)
        if create_exclusive(path, orjson.dumps(marker)):
            return None
        with open(path, "rb") as f:
            winner: dict[str, Any] = orjson.loads(f.read())
        return winner

    def sweep_unclaimed_parts(self) -> int:
        """Remove report parts no marker names: those of attempts that stopped before they
        committed, or lost to another attempt. Call it holding the job's lock, with no
        worker running; returns how many went."""
        claimed = {part.get("name") for marker in self.markers()
                   for part in marker.get("parts") or () if isinstance(part, dict)}
        removed = 0
        try:
            names = os.listdir(self.results_dir)
        except FileNotFoundError:
            return 0
        for name in names:
            if name.startswith("chunk-") and name.endswith(".csv") and name not in claimed:
                try:
                    os.unlink(os.path.join(self.results_dir, name))
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def put_part(self, name: str, data: bytes) -> None:
        """Write a report part (durable on return)."""
        atomic_write(os.path.join(self.results_dir, name), data)

    def read_part(self, name: str) -> bytes:
        with open(os.path.join(self.results_dir, name), "rb") as f:
            return f.read()

    def part_file(self, name: str) -> str | None:
        """A report part's local file (None where parts are not local files)."""
        return os.path.join(self.results_dir, name)

    def delete_part(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.results_dir, name))
        except FileNotFoundError:
            pass

    def save_manifest(self, paths: list[str]) -> None:
        """Keep the job's manifest copy where every reader finds it (a folder: it is)."""

    def manifest_source(self, paths: dict[str, str]
                        ) -> tuple[dict[str, str], Callable[[int, int], bytes] | None]:
        """Local paths of the manifest's files, and a ranged reader of the copy when it
        is not a local file (a folder: the paths as they are, no reader)."""
        return paths, None

    def log_lines(self) -> list[bytes]:
        try:
            with open(os.path.join(self.dir, "log"), "rb") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def markers(self) -> Iterator[dict[str, Any]]:
        """Every finished chunk's marker, in chunk order."""
        try:
            names = sorted(n for n in os.listdir(self.chunks_dir) if n.endswith(".json"))
        except FileNotFoundError:
            return
        for name in names:
            with open(os.path.join(self.chunks_dir, name), "rb") as f:
                yield orjson.loads(f.read())

    # -- log ------------------------------------------------------------------------------

    def log(self, event: str, **fields: Any) -> None:
        """Append one event line; every string in it is scrubbed of secrets (error text
        a server returned may echo them)."""
        line = orjson.dumps({"time": now_iso(), "event": event,
                             **{k: _scrubbed(v) for k, v in fields.items()}}) + b"\n"
        try:
            fd = os.open(os.path.join(self.dir, "log"),
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            pass  # the log is best effort; the checkpoint is what matters

    # -- lock -------------------------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the lock if no live process holds it; True when taken."""
        try:
            self.lock()
        except JobLockedError:
            return False
        return True

    def lock(self) -> None:
        """Hold the job's lock; refuse when another live process holds it.

        flock locks die with their process, so a lock left by kill -9 never blocks.
        `is_locked` (describe-job, list-jobs, the runner) holds a shared lock for an
        instant to look: a lock refused is tried again for LOCK_PATIENCE seconds, so a
        look never makes a run fail.
        """
        path = os.path.join(self.dir, "lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        deadline = time.monotonic() + LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JobLockedError(
                f"job {self.job_id} is already running (process {holder}); "
                "wait for it or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def is_locked(self) -> bool:
        path = os.path.join(self.dir, "lock")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


def elapsed_since(start: float) -> int:
    return int(time.monotonic() - start)
