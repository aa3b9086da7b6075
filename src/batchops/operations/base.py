"""The operation interface every operation implements."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from ..chunk import Chunk
from ..errors import SpecError
from ..stores import Location, Resolver, is_s3, s3_bucket


class TaskError(Exception):
    """A task failed in a way the operation itself understands (mapped as given)."""

    def __init__(self, http_status: int, error_code: str, message: str,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.error_code = error_code
        self.retryable = retryable


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
    def amazon_spec(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The `Operation` member of Amazon's job shape for these parameters."""
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

    async def run(self, chunk: Chunk, i: int) -> str | None:
        raise NotImplementedError

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        raise NotImplementedError

    def sync_chunk_done(self) -> None:
        """Called by the thread that ran a chunk's sync tasks once it has taken its last
        task: the place to let go of what the tasks held (open folders, say)."""


def check_tag_set(tags: Any, where: str, limit: int = 10,
                  per: str = "object") -> list[dict[str, str]]:
    """Amazon's limits: at most `limit` tags (10 on an object, 50 on a job), keys up to
    128 and values up to 256 characters."""
    if not isinstance(tags, list):
        raise SpecError(f"{where} must be a list of {{\"Key\": ..., \"Value\": ...}}")
    if len(tags) > limit:
        raise SpecError(f"{where} has {len(tags)} tags; S3 allows at most {limit} per {per}")
    seen = set()
    out = []
    for tag in tags:
        if not isinstance(tag, dict) or not isinstance(tag.get("Key"), str) or \
                not isinstance(tag.get("Value", ""), str):
            raise SpecError(f"{where}: each tag needs a string Key and Value")
        key, value = tag["Key"], tag.get("Value", "")
        if not 1 <= len(key) <= 128:
            raise SpecError(f"{where}: tag key {key[:40]!r} must be 1 to 128 characters")
        if len(value) > 256:
            raise SpecError(f"{where}: the value of tag {key!r} is over 256 characters")
        if key in seen:
            raise SpecError(f"{where}: tag key {key!r} appears twice")
        seen.add(key)
        out.append({"Key": key, "Value": value})
    return out


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
