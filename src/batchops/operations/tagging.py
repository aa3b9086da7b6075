"""`put-tagging` (S3PutObjectTagging) and `delete-tagging` (S3DeleteObjectTagging)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchops.model.chunk import Chunk
from batchops.model.spec import check_tag_set
from batchops.operations.base import Operation
from batchops.storage.locations import Resolver


class PutTaggingOperation(Operation):
    """Replace each object's whole tag set."""

    amazon_name = "S3PutObjectTagging"
    alias = "put-tagging"
    needs_s3_api = True
    verb = "tag"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        return {"TagSet": check_tag_set(params.get("TagSet", []),
                                        "Operation.S3PutObjectTagging.TagSet")}

    async def run(self, chunk: Chunk, i: int) -> str | None:
        client = await self.s3_client(chunk, i)
        await client.put_object_tagging(**self.s3_object(chunk, i),
                                        Tagging={"TagSet": self.params["TagSet"]})
        return None


class DeleteTaggingOperation(Operation):
    """Remove each object's tag set."""

    amazon_name = "S3DeleteObjectTagging"
    alias = "delete-tagging"
    needs_s3_api = True
    verb = "untag"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        return {}

    async def run(self, chunk: Chunk, i: int) -> str | None:
        client = await self.s3_client(chunk, i)
        await client.delete_object_tagging(**self.s3_object(chunk, i))
        return None
