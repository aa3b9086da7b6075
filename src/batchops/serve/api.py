"""What each s3control jobs operation does, on the job store of one server.

Each function takes the operation's input parameters (parsed by serve/restxml.py from
the model) and the caller's account, and returns the output parameters (written back by
the model). The work is the library's: schedule/create.py makes jobs, schedule/control.py
confirms, cancels, reprioritises, tags and describes them, the same code the CLI runs.
A job of another account is not there for the caller (NotFoundException).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from batchops.model.errors import (
    BadInputError,
    BatchopsError,
    IdempotencyError,
    JobNotFoundError,
    JobStateError,
    SpecError,
)
from batchops.model.request import options_from_request
from batchops.model.spec import AwsSettings
from batchops.results.jobstore import JobStore
from batchops.results.stores import job_store
from batchops.schedule.control import (
    delete_job_tagging,
    describe,
    job_tags,
    put_job_tagging,
    update_job_priority,
    update_job_status,
)
from batchops.serve.index import JobIndex, NextTokenError
from batchops.serve.restxml import ApiError, Operation
from batchops.serve.runners import RunnerPool

#: ListJobs' page when MaxResults is not given (the model allows up to 1000).
DEFAULT_PAGE = 1000


class Jobs:
    """The jobs operations of one server: its index, its runner pool, its settings."""

    def __init__(self, index: JobIndex, pool: RunnerPool, home: str | None = None,
                 aws: AwsSettings | None = None,
                 settings: Mapping[str, Any] | None = None, create_shape: Any = None) -> None:
        self.index = index
        self.pool = pool
        self.home = home
        self.aws = aws or AwsSettings()
        self.settings = dict(settings or {})  # JobOptions fields of every job created
        self.create_shape = create_shape  # CreateJob's input shape, loaded once

    def _store(self, params: Mapping[str, Any], account: str) -> JobStore:
        job_id = str(params.get("JobId", ""))
        entry = self.index.get(job_id)
        if entry is None or entry.account != account:
            raise JobNotFoundError(f"no job {job_id} in account {account}")
        store = job_store(job_id, self.home)
        if self.pool.on_store is not None:  # --notify: confirm and cancel change statuses
            self.pool.on_store(store)
        return store

    def create_job(self, params: Mapping[str, Any], account: str) -> dict[str, Any]:
        request = dict(params, AccountId=account)
        opts = options_from_request(request, self.create_shape, aws=self.aws,
                                    **self.settings)
        return {"JobId": self.pool.create(opts)}

    def describe_job(self, params: Mapping[str, Any], account: str) -> dict[str, Any]:
        return describe(self._store(params, account))

    def list_jobs(self, params: Mapping[str, Any], account: str) -> dict[str, Any]:
        try:
            return self.index.list_jobs(account, tuple(params.get("JobStatuses") or ()),
                                   int(params.get("MaxResults") or DEFAULT_PAGE),
                                   params.get("NextToken"))
        except NextTokenError:
            raise ApiError("InvalidNextTokenException",
                           "the NextToken is not one this server gave") from None

    def update_job_status(self, params: Mapping[str, Any], account: str) -> dict[str, Any]:
        store = self._store(params, account)
        out = update_job_status(store, params["RequestedJobStatus"],
                                params.get("StatusUpdateReason"))
        self.index.add(store.job_id)
        return out

    def update_job_priority(self, params: Mapping[str, Any], account: str) -> dict[str, Any]:
        store = self._store(params, account)
        out = update_job_priority(store, int(params["Priority"]))
        self.index.add(store.job_id)
        return out

    def get_job_tagging(self, params: Mapping[str, Any], account: str) -> dict[str, Any]:
        return {"Tags": job_tags(self._store(params, account))}

    def put_job_tagging(self, params: Mapping[str, Any], account: str) -> dict[str, Any]:
        put_job_tagging(self._store(params, account), params.get("Tags") or [])
        return {}

    def delete_job_tagging(self, params: Mapping[str, Any], account: str) -> dict[str, Any]:
        delete_job_tagging(self._store(params, account))
        return {}

    def handlers(self) -> Mapping[str, Callable[[Mapping[str, Any], str], dict[str, Any]]]:
        """Operation name -> its function."""
        return MappingProxyType({
            "CreateJob": self.create_job, "DescribeJob": self.describe_job,
            "ListJobs": self.list_jobs, "UpdateJobStatus": self.update_job_status,
            "UpdateJobPriority": self.update_job_priority,
            "GetJobTagging": self.get_job_tagging, "PutJobTagging": self.put_job_tagging,
            "DeleteJobTagging": self.delete_job_tagging})


def api_error(op: Operation, exc: BatchopsError) -> ApiError:
    """A library error as the operation's modelled error (Amazon's codes)."""
    message = str(exc)
    if isinstance(exc, JobNotFoundError):
        return ApiError(op.error_code("NotFoundException"), message)
    if isinstance(exc, IdempotencyError):
        return ApiError(op.error_code("IdempotencyException", "BadRequestException"), message)
    if isinstance(exc, JobStateError):
        return ApiError(op.error_code("JobStatusException", "BadRequestException",
                                      "InvalidRequestException"), message)
    if isinstance(exc, (SpecError, BadInputError)):
        if "tags" in message.lower() and "at most" in message.lower():
            code = op.error_code("TooManyTagsException", "BadRequestException")
        else:
            code = op.error_code("BadRequestException", "InvalidRequestException")
        return ApiError(code, message)
    return ApiError(op.error_code("InternalServiceException"), message, 500)


__all__ = ["DEFAULT_PAGE", "Jobs", "api_error"]
