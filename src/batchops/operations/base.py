"""The operation interface every operation implements."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from batchops.manifest.reader import ManifestInfo
from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.storage.locations import Location, Resolver, is_s3, s3_bucket


class Operation:
    """One operation, instantiated once per worker process.

    Subclasses set `amazon_name` and `alias`, implement `validate` (job creation time,
    raises SpecError) and `run` (per task; returns the report's result message, or
    None for "Successful"; raises on failure, classified by errors.classify).
    """

    amazon_name: ClassVar[str]
    alias: ClassVar[str]
    #: True when the operation does nothing per object (the whole chunk succeeds).
    no_task_work: ClassVar[bool] = False
    #: True when the operation destroys data: a job needs an explicit confirmation.
    destructive: ClassVar[bool] = False
    #: True when the operation needs the S3 API (tagging, ACLs, restore, object lock).
    needs_s3_api: ClassVar[bool] = False
    #: What the operation does, for refusals ("set ACLs on").
    verb: ClassVar[str] = "run on"

    def __init__(self, params: Mapping[str, Any], resolver: Resolver, job_id: str = "") -> None:
        self.params = params
        self.resolver = resolver
        self.job_id = job_id
        #: Set by the executor when the job has --max-bytes-per-second.
        self.bytes_limiter: Any = None
        self._moved = 0  # bytes moved through this process since take_bytes (copies)
        self._moved_lock = threading.Lock()

    def moved(self, n: int) -> None:
        """Count `n` bytes of an object this process has read and written in full."""
        with self._moved_lock:
            self._moved += n

    def take_bytes(self) -> int:
        """The bytes moved since the last call; each chunk's marker carries them to the
        coordinator (job.json's stats, /metrics). A server-side copy moves none here."""
        with self._moved_lock:
            n, self._moved = self._moved, 0
        return n

    async def throttle_bytes(self, n: int) -> None:
        """Wait so that moving `n` more bytes keeps within --max-bytes-per-second."""
        if self.bytes_limiter is not None and n > 0:
            import asyncio
            import time

            wait = self.bytes_limiter.reserve(float(n), time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)

    def throttle_bytes_sync(self, n: int) -> None:
        if self.bytes_limiter is not None and n > 0:
            import time

            wait = self.bytes_limiter.reserve(float(n), time.monotonic())
            if wait > 0:
                time.sleep(wait)

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        """Check and normalise the parameters; return them as stored in the job."""
        return dict(params)

    @classmethod
    def check_locations(cls, params: Mapping[str, Any], sources: Iterable[Location]) -> None:
        """Refuse, at job creation, stores this operation cannot work on."""
        if not cls.needs_s3_api:
            return
        for loc in sources:
            if not is_s3(loc):
                raise SpecError(f"{cls.alias} cannot {cls.verb} objects in {loc.root}: only "
                                "S3 and S3-compatible stores support it")

    @classmethod
    def check_manifest(cls, params: Mapping[str, Any], info: ManifestInfo) -> None:
        """Refuse, once the manifest is prepared, rows this operation cannot run."""

    @classmethod
    def preflight(cls, params: Mapping[str, Any], resolver: Resolver) -> None:
        """Checks of what the operation calls besides the buckets, made before any task
        runs (raise BadInputError in one sentence)."""

    @classmethod
    def amazon_spec(cls, params: Mapping[str, Any], partition: str = "aws") -> dict[str, Any]:
        """The `Operation` member of Amazon's job shape for these parameters (with ARNs
        of the job's `partition`)."""
        return {cls.amazon_name: dict(params)}

    def sync_capable(self, chunk: Chunk) -> bool:
        """Whether every task of `chunk` may run on the sync path (in-process stores)."""
        return False

    def s3_object(self, chunk: Chunk, i: int) -> dict[str, str]:
        """Bucket, Key and (when given) VersionId of task i, for S3 API calls."""
        loc = self.resolver.location(chunk.buckets[i])
        args = {"Bucket": s3_bucket(loc), "Key": loc.key(chunk.keys[i])}
        if chunk.versions[i]:
            args["VersionId"] = chunk.versions[i]  # type: ignore[assignment]
        return args

    async def s3_client(self, chunk: Chunk, i: int) -> Any:
        """The S3 API client for task i's bucket (its endpoint and credentials)."""
        return await self.resolver.s3api(self.resolver.location(chunk.buckets[i])).client()

    async def run(self, chunk: Chunk, i: int) -> str | None:
        raise NotImplementedError

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        raise NotImplementedError

    def sync_chunk_done(self) -> None:
        """Called by the thread that ran a chunk's sync tasks once it has taken its last
        task: the place to let go of what the tasks held (open folders, say)."""

    def run_chunk_sync(self, chunk: Chunk, indices: list[int]) -> list[Any] | None:
        """Run tasks `indices` of `chunk` in one call, or return None when this chunk
        cannot run that way (the loop then runs it task by task).

        The list holds one entry per index, in order: None (succeeded), a str (succeeded,
        with that result message) or the exception the task failed with (classified by
        storage.outcomes.classify, and retried through `run_sync` when retryable)."""
        return None

    def make_durable(self) -> None:
        """Make durable the data that the tasks run since the last call wrote (fsync or
        syncfs of local targets). The loop calls it before a chunk's marker is written;
        it raises OSError when that cannot be done."""


def require_enum(params: Mapping[str, Any], name: str, choices: tuple[str, ...], where: str,
                 required: bool = False) -> Any:
    value = params.get(name)
    if value is None:
        if required:
            raise SpecError(f"{where}.{name} is required ({' | '.join(choices)})")
        return None
    if value not in choices:
        raise SpecError(f"{where}.{name} must be one of {' | '.join(choices)}, not {value!r}")
    return value
