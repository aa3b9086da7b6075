"""`restore` (S3InitiateRestoreObject): start restoring archived objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.operations.base import Operation, require_enum
from batchops.storage.locations import Resolver

_WHERE = "Operation.S3InitiateRestoreObject"


class RestoreOperation(Operation):
    amazon_name = "S3InitiateRestoreObject"
    alias = "restore"
    needs_s3_api = True
    verb = "restore"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        days = params.get("ExpirationInDays")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool)
                                 or days < 1):
            raise SpecError(f"{_WHERE}.ExpirationInDays must be a whole number of days ≥ 1")
        tier = require_enum(params, "GlacierJobTier", ("BULK", "STANDARD"), _WHERE)
        out: dict[str, Any] = {}
        if days is not None:
            out["ExpirationInDays"] = days
        out["GlacierJobTier"] = tier or "BULK"
        return out

    async def run(self, chunk: Chunk, i: int) -> str | None:
        client = await self.s3_client(chunk, i)
        request: dict[str, Any] = {
            "GlacierJobParameters": {"Tier": self.params["GlacierJobTier"].capitalize()}}
        if "ExpirationInDays" in self.params:
            request["Days"] = self.params["ExpirationInDays"]
        response = await client.restore_object(**self.s3_object(chunk, i),
                                               RestoreRequest=request)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # 202: restore started; 200: a restored copy already exists and was extended.
        return "Restore already done; expiry updated" if status == 200 else None
