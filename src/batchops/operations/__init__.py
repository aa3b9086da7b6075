"""Operations: what is done to each object. One module per operation.

Each operation is declared by Amazon's name (`S3PutObjectCopy`) with a short alias
(`copy`). Its parameters are validated once, when the job is created (`validate`);
an instance is built once per worker and runs per task (`run`, on the worker's event
loop, or `run_sync` on the sync path for in-process stores).
"""

from __future__ import annotations

from .acl import PutAclOperation
from .base import Operation, TaskError
from .checksum import ComputeChecksumOperation
from .copy import CopyOperation
from .delete import DeleteOperation
from .invoke import InvokeOperation
from .noop import NoopOperation
from .objectlock import PutLegalHoldOperation, PutRetentionOperation
from .replicate import ReplicateOperation
from .restore import RestoreOperation
from .tagging import DeleteTaggingOperation, PutTaggingOperation

OPERATIONS: dict[str, type[Operation]] = {
    op.alias: op for op in (
        CopyOperation, PutTaggingOperation, DeleteTaggingOperation, PutAclOperation,
        RestoreOperation, PutRetentionOperation, PutLegalHoldOperation, InvokeOperation,
        ReplicateOperation, ComputeChecksumOperation, DeleteOperation, NoopOperation)
}
BY_AMAZON_NAME: dict[str, type[Operation]] = {op.amazon_name: op for op in OPERATIONS.values()}


def get_operation(name: str) -> type[Operation]:
    """Look an operation up by alias (`copy`) or Amazon name (`S3PutObjectCopy`)."""
    from ..errors import SpecError

    op = OPERATIONS.get(name) or BY_AMAZON_NAME.get(name)
    if op is None:
        known = ", ".join(sorted(OPERATIONS))
        raise SpecError(f"unknown operation {name!r}; choose one of: {known}")
    return op


__all__ = ["OPERATIONS", "BY_AMAZON_NAME", "Operation", "TaskError", "get_operation"]
