"""Operations: what is done to each object. One module per operation.

Each operation is declared by Amazon's name (`S3PutObjectCopy`) with a short alias
(`copy`). Its parameters are validated once, when the job is created (`validate`);
an instance is built once per worker and runs per task (`run`, on the worker's event
loop, or `run_sync` on the sync path for in-process stores).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from batchops.operations.acl import PutAclOperation
from batchops.operations.base import Operation
from batchops.operations.checksum import ComputeChecksumOperation
from batchops.operations.copy import CopyOperation
from batchops.operations.delete import DeleteOperation
from batchops.operations.encryption import UpdateEncryptionOperation
from batchops.operations.invoke import InvokeOperation
from batchops.operations.noop import NoopOperation
from batchops.operations.objectlock import PutLegalHoldOperation, PutRetentionOperation
from batchops.operations.replicate import ReplicateOperation
from batchops.operations.restore import RestoreOperation
from batchops.operations.tagging import DeleteTaggingOperation, PutTaggingOperation
from batchops.operations.verify import VerifyOperation
from batchops.storage.outcomes import TaskError

OPERATIONS: Mapping[str, type[Operation]] = MappingProxyType({
    op.alias: op for op in (
        CopyOperation, PutTaggingOperation, DeleteTaggingOperation, PutAclOperation,
        RestoreOperation, PutRetentionOperation, PutLegalHoldOperation, InvokeOperation,
        ReplicateOperation, ComputeChecksumOperation, UpdateEncryptionOperation,
        DeleteOperation, VerifyOperation, NoopOperation)
})
BY_AMAZON_NAME: Mapping[str, type[Operation]] = MappingProxyType(
    {op.amazon_name: op for op in OPERATIONS.values()})


def get_operation(name: str) -> type[Operation]:
    """Look an operation up by alias (`copy`) or Amazon name (`S3PutObjectCopy`)."""
    from batchops.model.errors import SpecError

    op = OPERATIONS.get(name) or BY_AMAZON_NAME.get(name)
    if op is None:
        known = ", ".join(sorted(OPERATIONS))
        raise SpecError(f"unknown operation {name!r}; choose one of: {known}")
    return op


__all__ = ["OPERATIONS", "BY_AMAZON_NAME", "Operation", "TaskError", "get_operation"]
