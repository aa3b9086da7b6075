"""`put-tagging` (S3PutObjectTagging) and `delete-tagging` (S3DeleteObjectTagging).

Both go through awscrt's signer and HTTP client (storage/s3api.py `CrtRequests`): the
tag set's XML body is built once per worker by botocore's serializer, and each task
only names its object. Through aiobotocore the same call cost about four times the CPU
per task, nearly all of it botocore's Python serialisation and signing (bench/s3_cpu.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchops.model.chunk import Chunk
from batchops.model.spec import check_tag_set
from batchops.operations.base import Operation
from batchops.storage.locations import Resolver, s3_bucket


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

    def __init__(self, params: Mapping[str, Any], resolver: Resolver, job_id: str = "") -> None:
        super().__init__(params, resolver, job_id)
        self._body: dict[Any, tuple[bytes, list[tuple[str, str]]]] = {}

    async def run(self, chunk: Chunk, i: int) -> str | None:
        loc = self.resolver.location(chunk.buckets[i])
        requests = self.resolver.s3api(loc).requests()
        body = self._body.get(loc.aws)
        if body is None:  # once per worker and AWS settings
            body = self._body[loc.aws] = requests.tagging_body(list(self.params["TagSet"]))
        await requests.send("PUT", s3_bucket(loc), loc.key(chunk.keys[i]),
                            _query(chunk.versions[i]), body[0], body[1])
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
        loc = self.resolver.location(chunk.buckets[i])
        await self.resolver.s3api(loc).requests().send(
            "DELETE", s3_bucket(loc), loc.key(chunk.keys[i]), _query(chunk.versions[i]))
        return None


def _query(version: str | None) -> str:
    """The tagging subresource, of one version when the row names one."""
    if not version:
        return "tagging"
    from urllib.parse import quote

    return f"tagging&versionId={quote(version, safe='')}"
