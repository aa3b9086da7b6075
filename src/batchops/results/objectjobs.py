"""The job store on an object store: `BATCHOPS_HOME=s3://bucket/prefix` (or
`--job-store`), for clusters whose nodes share no folder.

The same layout as the folder (results/jobstore.py), as keys under the prefix:

    <prefix>/jobs/<job-id>/job.json, control.json, lock
                          chunks/<chunk>.json       markers (created with If-None-Match: *)
                          results/<part>.csv        report parts, named by attempt
                          manifest/<file>           the job's copy of the manifest, indexes
                          log/<time>-<token>.json   one object per event (no appends here)

- Every write is one PUT, so it is atomic. A chunk's marker is created with obstore's
  `PutMode.Create` (S3: `If-None-Match: *`): of two attempts exactly one commits.
- The lock is a lease object: {"owner", "expires"}, created with `PutMode.Create`,
  renewed by its holder (a thread, every third of the lease) with If-Match on its
  ETag, and taken over with If-Match once it has expired, so a dead driver never
  blocks `resume` and two live ones never both run. A holder whose renewal fails has
  lost the job: `lost` tells the coordinator to stop.
- The job's manifest copy is uploaded once prepared; a process elsewhere fetches its
  small index files into a local cache and reads each chunk with a ranged GET.
- The local `dir` is a cache folder on this machine (the manifest's indexes, test
  hooks), never the truth.

No secret is stored: the store is reached with the standard AWS chain (or the URL's
`?profile=`), as every S3 location is.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from batchops.model.errors import JobLockedError, JobNotFoundError, JobStoreError
from batchops.results.jobstore import JobStore, _scrubbed, batchops_home, makedirs, now_iso

#: Seconds a job store lease lasts without renewal (BATCHOPS_LEASE_SECONDS overrides).
LEASE_SECONDS = 30.0


def is_remote_home(home: str) -> bool:
    return "://" in home and not home.startswith("file://")


def _folder_url(home: str) -> str:
    """The job store URL as a folder (`.../prefix/`), its settings query kept."""
    base, sep, query = home.partition("?")
    return base.rstrip("/") + "/" + sep + query


def _store_of(home: str) -> tuple[Any, str]:
    """The obstore store and key prefix of a job store URL (an S3 one signed with the
    settings of its query: ?profile=&region=&endpoint_url=)."""
    from batchops.storage.locations import Resolver, split_location

    loc = split_location(_folder_url(home))
    return Resolver().store(loc), loc.prefix


def cache_folder(home: str) -> str:
    """This machine's cache of a job store on an object store."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "batchops", hashlib.sha256(home.encode()).hexdigest()[:16])


def _why(exc: BaseException) -> str:
    from batchops.storage.outcomes import classify

    outcome = classify(exc)
    return f"{outcome.error_code}: {outcome.message}" if outcome.error_code else outcome.message


def check_home(home: str, what: str) -> None:
    """Refuse a job store that cannot be reached (no bucket, no credentials, nothing at
    the endpoint) in one sentence naming `what` (the flag or variable), before anything
    is made: the preflight of every S3 location (one GET of a key nobody has)."""
    import obstore as obs

    from batchops.model.errors import SpecError
    from batchops.storage.locations import Resolver, is_s3, normalise_url, split_location
    from batchops.storage.preflight import preflight

    normalise_url(home, what)  # no secrets in it, a scheme batchops knows
    loc = split_location(_folder_url(home))
    if is_s3(loc):
        preflight(Resolver(), [loc], {loc: f"{what} {home}"})
        return
    try:
        store, prefix = _store_of(home)
        obs.get(store, prefix + ".batchops-probe-" + secrets.token_hex(4))
    except FileNotFoundError:
        return  # it answers, and lets us read
    except Exception as exc:  # noqa: BLE001 - any store error: one sentence
        raise SpecError(f"{what} {home}: the job store cannot be reached ({_why(exc)})"
                        ) from None


class ObjectJobStore(JobStore):
    """One job's keys on an object store (see the module docstring)."""

    def __init__(self, job_id: str, home: str | None = None) -> None:
        home = home or batchops_home()
        self.job_id = job_id
        self.home = home
        self._store, prefix = _store_of(home)
        self.prefix = f"{prefix}jobs/{job_id}/"
        self.dir = os.path.join(cache_folder(home), "jobs", job_id)
        self.chunks_dir = self.prefix + "chunks"
        self.results_dir = self.prefix + "results"
        base, sep, query = home.partition("?")
        self._base = base.rstrip("/")  # for sentences (the settings are in the query)
        self._query = sep + query
        self.job_path = f"{self._base}/jobs/{job_id}/job.json"
        self._lock_fd = None
        self._lease: dict[str, Any] | None = None
        self._renewer: threading.Thread | None = None
        self._stop_renewing = threading.Event()
        self.lost = False

    # -- bytes ------------------------------------------------------------------------------

    def _get(self, name: str) -> bytes | None:
        import obstore as obs

        try:
            return bytes(obs.get(self._store, self.prefix + name).bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - any store error: one sentence
            raise JobStoreError(f"cannot read {self.job_path.rsplit('/', 1)[0]}/{name} "
                                f"({_why(exc)})") from None

    def _put(self, name: str, data: bytes, mode: Any = "overwrite") -> dict[str, Any]:
        import obstore as obs

        try:
            result: Any = obs.put(self._store, self.prefix + name, data, mode=mode)
            return dict(result)
        except (FileExistsError, obs.exceptions.AlreadyExistsError,
                obs.exceptions.PreconditionError):
            raise
        except Exception as exc:  # noqa: BLE001 - any store error: one sentence
            raise JobStoreError(f"cannot write {self.job_path.rsplit('/', 1)[0]}/{name} "
                                f"({_why(exc)})") from None

    def _list(self, sub: str) -> list[str]:
        import obstore as obs

        names: list[str] = []
        try:
            for batch in obs.list(self._store, prefix=self.prefix + sub, chunk_size=1000):
                names += [m["path"][len(self.prefix):] for m in batch]
        except Exception as exc:  # noqa: BLE001 - any store error: one sentence
            raise JobStoreError(f"cannot list {self.job_path.rsplit('/', 1)[0]}/{sub} "
                                f"({_why(exc)})") from None
        return names

    def _delete(self, name: str) -> None:
        import obstore as obs

        try:
            obs.delete(self._store, self.prefix + name)
        except FileNotFoundError:
            pass

    # -- creation and lookup -----------------------------------------------------------

    @classmethod
    def create(cls, job_id: str, home: str | None = None) -> JobStore:
        import obstore as obs

        store = cls(job_id, home)
        try:
            store._put("created", now_iso().encode(), mode="create")
        except (obs.exceptions.AlreadyExistsError, FileExistsError):
            raise JobStoreError(f"job {job_id} already exists in {store.home}") from None
        makedirs(store.dir)
        return store

    @classmethod
    def open(cls, job_id: str, home: str | None = None) -> JobStore:
        store = cls(job_id, home)
        if "/" in job_id or job_id in ("", ".", "..") or store._get("job.json") is None:
            raise JobNotFoundError(f"no job {job_id!r} in {store.home} (see `batchops list-jobs`)")
        makedirs(store.dir)
        return store

    @staticmethod
    def ids_in(home: str) -> list[str]:
        import obstore as obs

        store, prefix = _store_of(home)
        try:
            found = obs.list_with_delimiter(store, prefix=prefix + "jobs/")
        except Exception as exc:  # noqa: BLE001 - any store error: one sentence
            raise JobStoreError(f"cannot list the jobs in {home} ({_why(exc)})") from None
        ids = [p[len(prefix + "jobs/"):].rstrip("/") for p in found["common_prefixes"]]
        return [i for i in ids if ObjectJobStore(i, home)._get("job.json") is not None]

    def destroy(self) -> None:
        for name in self._list(""):
            self._delete(name)
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    def exists(self) -> bool:
        return self._get("job.json") is not None

    def default_report_url(self) -> str:
        return f"{self._base}/jobs/{self.job_id}/report{self._query}"

    # -- job.json, control ---------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        data = self._get("job.json")
        if data is None:
            raise JobNotFoundError(f"no job {self.job_id!r} in {self.home}")
        try:
            doc: dict[str, Any] = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise JobStoreError(f"{self.job_path} is corrupt: {exc}") from None
        return doc

    def write(self, doc: dict[str, Any], durable: bool = True) -> None:
        job = doc.get("Job")
        if isinstance(job, dict) and ("StatusUpdateReason" in job or "FailureReasons" in job):
            doc = dict(doc, Job={k: _scrubbed(v) if k in ("StatusUpdateReason",
                                                          "FailureReasons") else v
                                 for k, v in job.items()})
        self._put("job.json", orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        self._status_written(doc)

    def control(self) -> dict[str, Any]:
        data = self._get("control.json")
        try:
            return orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            return {}

    def update_control(self, **changes: Any) -> dict[str, Any]:
        """Read-modify-write control.json with If-Match on its ETag (tried again when
        another writer came in between)."""
        import obstore as obs

        for _ in range(20):
            mode: Any
            try:
                got = obs.get(self._store, self.prefix + "control.json")
                control, mode = orjson.loads(bytes(got.bytes())), {"e_tag": got.meta["e_tag"]}
            except FileNotFoundError:
                control, mode = {}, "create"
            control.update(changes)
            try:
                self._put("control.json", orjson.dumps(control), mode=mode)
                return dict(control)
            except (obs.exceptions.AlreadyExistsError, obs.exceptions.PreconditionError,
                    FileExistsError):
                time.sleep(0.05)
        raise JobStoreError(f"cannot update the control of job {self.job_id}: too many "
                            "writers at once")

    # -- checkpoint and parts ------------------------------------------------------------

    def marker_path(self, chunk: int) -> str:
        return f"{self._base}/jobs/{self.job_id}/chunks/{chunk:012d}.json"

    def commit_marker(self, chunk: int, marker: dict[str, Any]) -> dict[str, Any] | None:
        import obstore as obs

        name = f"chunks/{chunk:012d}.json"
        try:
            self._put(name, orjson.dumps(marker), mode="create")
            return None
        except (obs.exceptions.AlreadyExistsError, obs.exceptions.PreconditionError,
                FileExistsError):
            data = self._get(name)
            if data is None:  # created and removed meanwhile: cannot happen in a job
                raise JobStoreError(f"the marker {self.marker_path(chunk)} came and went"
                                    ) from None
            winner: dict[str, Any] = orjson.loads(data)
            return winner

    def markers(self) -> Iterator[dict[str, Any]]:
        for name in sorted(n for n in self._list("chunks/") if n.endswith(".json")):
            data = self._get(name)
            if data is not None:
                yield orjson.loads(data)

    def put_part(self, name: str, data: bytes) -> None:
        self._put("results/" + name, data)

    def read_part(self, name: str) -> bytes:
        data = self._get("results/" + name)
        if data is None:
            raise JobStoreError(f"the report part {self.results_dir}/{name} is missing")
        return data

    def part_file(self, name: str) -> str | None:
        return None  # not a local file: read_part

    def delete_part(self, name: str) -> None:
        self._delete("results/" + name)

    def sweep_temporaries(self) -> int:
        return 0  # every write is one PUT: nothing half-written to sweep

    def sweep_unclaimed_parts(self) -> int:
        claimed = {part.get("name") for marker in self.markers()
                   for part in marker.get("parts") or () if isinstance(part, dict)}
        removed = 0
        for name in self._list("results/"):
            base = name[len("results/"):]
            if base.startswith("chunk-") and base.endswith(".csv") and base not in claimed:
                self._delete(name)
                removed += 1
        return removed

    # -- the manifest copy ----------------------------------------------------------------

    def save_manifest(self, paths: list[str]) -> None:
        """Upload the job's manifest copy and its indexes (files under `dir`)."""
        from pathlib import Path

        import obstore as obs

        for path in paths:
            if path and os.path.isfile(path):
                try:
                    obs.put(self._store, self.prefix + "manifest/" + os.path.basename(path),
                            Path(path))
                except Exception as exc:  # noqa: BLE001 - one sentence
                    raise JobStoreError(f"cannot upload the job's manifest copy to "
                                        f"{self.home} ({_why(exc)})") from None

    def manifest_source(self, paths: dict[str, str]
                        ) -> tuple[dict[str, str], Callable[[int, int], bytes] | None]:
        """Local paths for the manifest's small files (fetched into the cache when this
        machine lacks them) and, for the copy itself, a ranged reader."""
        import obstore as obs

        local: dict[str, str] = {}
        for field, path in paths.items():
            if not path:
                local[field] = path
                continue
            here = os.path.join(self.dir, os.path.basename(path))
            if field != "path" and not os.path.isfile(here):
                data = self._get("manifest/" + os.path.basename(path))
                if data is not None:
                    makedirs(self.dir)
                    tmp = f"{here}.tmp.{os.getpid()}"
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.replace(tmp, here)
            local[field] = here
        key = self.prefix + "manifest/" + os.path.basename(paths["path"])

        def fetch(start: int, end: int) -> bytes:
            return bytes(obs.get_range(self._store, key, start=start, end=end))

        return local, fetch

    # -- log -------------------------------------------------------------------------------

    def log(self, event: str, **fields: Any) -> None:
        line = orjson.dumps({"time": now_iso(), "event": event,
                             **{k: _scrubbed(v) for k, v in fields.items()}})
        try:
            self._put(f"log/{time.time_ns():020d}-{secrets.token_hex(3)}.json", line)
        except JobStoreError:
            pass  # the log is best effort; the checkpoint is what matters

    def log_lines(self) -> list[bytes]:
        return [d for n in sorted(self._list("log/")) if (d := self._get(n)) is not None]

    # -- lock: a lease object ----------------------------------------------------------------

    def _lease_seconds(self) -> float:
        return float(os.environ.get("BATCHOPS_LEASE_SECONDS") or LEASE_SECONDS)

    def lock(self) -> None:
        import socket  # here: a local job store's commands never need it

        import obstore as obs

        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        body = orjson.dumps({"owner": owner, "expires": time.time() + self._lease_seconds()})
        try:
            result = self._put("lock", body, mode="create")
        except (obs.exceptions.AlreadyExistsError, obs.exceptions.PreconditionError,
                FileExistsError):
            try:
                got = obs.get(self._store, self.prefix + "lock")
                held, tag = orjson.loads(bytes(got.bytes())), got.meta["e_tag"]
            except FileNotFoundError:
                return self.lock()  # released meanwhile
            if held.get("expires", 0) > time.time():
                raise JobLockedError(f"job {self.job_id} is already running ({held.get('owner')}"
                                     "); wait for it or stop it first") from None
            try:  # expired: its holder is dead or cut off; take it over
                result = self._put("lock", body, mode={"e_tag": tag})
            except (obs.exceptions.PreconditionError, FileExistsError):
                raise JobLockedError(f"job {self.job_id} is being taken over by another "
                                     "process") from None
        self._lease = {"owner": owner, "e_tag": result["e_tag"]}
        self.lost = False
        self._stop_renewing.clear()
        self._renewer = threading.Thread(target=self._renew, name="batchops-lease",
                                         daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        import obstore as obs

        period = self._lease_seconds() / 3
        while not self._stop_renewing.wait(period):
            lease = self._lease
            if lease is None:
                return
            body = orjson.dumps({"owner": lease["owner"],
                                 "expires": time.time() + self._lease_seconds()})
            try:
                result = self._put("lock", body, mode={"e_tag": lease["e_tag"]})
                lease["e_tag"] = result["e_tag"]
            except (obs.exceptions.PreconditionError, FileNotFoundError, FileExistsError):
                self.lost = True  # someone took it over: this process must stop
                return
            except JobStoreError:
                continue  # the store is away for a moment: try again

    def unlock(self) -> None:
        lease, self._lease = self._lease, None
        self._stop_renewing.set()
        if self._renewer is not None:
            self._renewer.join(5)
            self._renewer = None
        if lease is None or self.lost:
            return
        import obstore as obs

        try:  # ours still (the ETag says so): remove it
            got = obs.get(self._store, self.prefix + "lock")
            if got.meta["e_tag"] == lease["e_tag"]:
                obs.delete(self._store, self.prefix + "lock")
        except Exception:  # noqa: BLE001 - an expired lease does no harm
            pass

    def is_locked(self) -> bool:
        data = self._get("lock")
        if data is None:
            return False
        try:
            return bool(orjson.loads(data).get("expires", 0) > time.time())
        except orjson.JSONDecodeError:
            return False


__all__ = ["LEASE_SECONDS", "ObjectJobStore", "cache_folder", "check_home", "is_remote_home"]
