"""Object lock: `put-retention` (S3PutObjectRetention), `put-legal-hold` (S3PutObjectLegalHold)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.operations.base import Operation, require_enum
from batchops.storage.locations import Resolver


def parse_timestamp(value: Any, where: str) -> str:
    """An ISO 8601 timestamp (or epoch seconds) → ISO 8601 in UTC."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            when = datetime.fromtimestamp(value, UTC)
        else:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise SpecError(f"{where} must be an ISO 8601 timestamp such as "
                        f"2030-01-01T00:00:00Z, not {value!r}") from None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class PutRetentionOperation(Operation):
    amazon_name = "S3PutObjectRetention"
    alias = "put-retention"
    needs_s3_api = True
    verb = "set retention on"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        where = "Operation.S3PutObjectRetention"
        retention = params.get("Retention")
        if not isinstance(retention, dict):
            raise SpecError(f"{where}.Retention is required, with Mode and RetainUntilDate")
        mode = require_enum(retention, "Mode", ("COMPLIANCE", "GOVERNANCE"),
                            f"{where}.Retention", required=True)
        if "RetainUntilDate" not in retention:
            raise SpecError(f"{where}.Retention.RetainUntilDate is required")
        until = parse_timestamp(retention["RetainUntilDate"], f"{where}.Retention.RetainUntilDate")
        bypass = params.get("BypassGovernanceRetention", False)
        if not isinstance(bypass, bool):
            raise SpecError(f"{where}.BypassGovernanceRetention must be true or false")
        return {"BypassGovernanceRetention": bypass,
                "Retention": {"Mode": mode, "RetainUntilDate": until}}

    async def run(self, chunk: Chunk, i: int) -> str | None:
        client = await self.s3_client(chunk, i)
        r = self.params["Retention"]
        until = datetime.fromisoformat(r["RetainUntilDate"].replace("Z", "+00:00"))
        await client.put_object_retention(
            **self.s3_object(chunk, i),
            Retention={"Mode": r["Mode"], "RetainUntilDate": until},
            BypassGovernanceRetention=self.params["BypassGovernanceRetention"])
        return None


class PutLegalHoldOperation(Operation):
    amazon_name = "S3PutObjectLegalHold"
    alias = "put-legal-hold"
    needs_s3_api = True
    verb = "set legal holds on"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        where = "Operation.S3PutObjectLegalHold"
        hold = params.get("LegalHold")
        if not isinstance(hold, dict):
            raise SpecError(f"{where}.LegalHold is required, with Status ON or OFF")
        status = require_enum(hold, "Status", ("ON", "OFF"), f"{where}.LegalHold", required=True)
        return {"LegalHold": {"Status": status}}

    async def run(self, chunk: Chunk, i: int) -> str | None:
        client = await self.s3_client(chunk, i)
        await client.put_object_legal_hold(**self.s3_object(chunk, i),
                                           LegalHold=self.params["LegalHold"])
        return None
