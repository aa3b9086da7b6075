"""The operation interface every operation implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..chunk import Chunk
from ..stores import Resolver


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

    def __init__(self, params: Mapping[str, Any], resolver: Resolver) -> None:
        self.params = params
        self.resolver = resolver

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        """Check and normalise the parameters; return them as stored in the job."""
        return dict(params)

    @classmethod
    def amazon_spec(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The `Operation` member of Amazon's job shape for these parameters."""
        return {cls.amazon_name: {}}

    def sync_capable(self, chunk: Chunk) -> bool:
        """Whether every task of `chunk` may run on the sync path (in-process stores)."""
        return False

    async def run(self, chunk: Chunk, i: int) -> str | None:
        raise NotImplementedError

    def run_sync(self, chunk: Chunk, i: int) -> str | None:
        raise NotImplementedError
