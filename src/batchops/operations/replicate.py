"""`replicate` (S3ReplicateObject): copy to a destination keeping version, metadata,
tags and ACL where the destination can hold them.

Amazon replicates with the bucket's replication configuration; here the destination
is given as `TargetResource` (an extension, like copy's). S3 → S3 is a server-side
copy that keeps metadata and tags, then the source's ACL is applied; any other pair of
stores streams the object with its content type, metadata and (to S3) tags.
The report's result message names the source version that was replicated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.operations.acl import grant_headers, s3_acl_grants
from batchops.operations.copy import CopyOperation
from batchops.storage.locations import Resolver, is_s3, s3_bucket


class ReplicateOperation(CopyOperation):
    amazon_name = "S3ReplicateObject"
    alias = "replicate"
    verb = "replicate"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        extra = set(params) - {"TargetResource", "TargetKeyPrefix"}
        if extra:
            raise SpecError(f"Operation.S3ReplicateObject takes TargetResource and "
                            f"TargetKeyPrefix only, not {', '.join(sorted(extra))}")
        return super().validate(params, resolver)

    @classmethod
    def amazon_spec(cls, params: Mapping[str, Any], partition: str = "aws") -> dict[str, Any]:
        return {cls.amazon_name: {}}

    async def run(self, chunk: Chunk, i: int) -> str | None:
        src, src_key, dst, dst_key = self.plan(chunk, i)
        version = chunk.versions[i]
        source: dict[str, str] = {}
        if is_s3(src):
            client = await self.resolver.s3api(src).client()
            source = {"Bucket": s3_bucket(src), "Key": src_key}
            if version:
                source["VersionId"] = version
        if self.resolver.same_account(src, dst):
            # CopyObject keeps metadata and tags (directives COPY) server-side.
            await self.s3_copy(src, src_key, version, dst, dst_key, {})
            acl = await client.get_object_acl(**source)
            await client.put_object_acl(Bucket=s3_bucket(dst), Key=dst_key,
                                        **grant_headers(s3_acl_grants(acl)))
        else:
            tags = None
            if is_s3(src) and dst.scheme in ("gs", "az", "azure"):
                tagset = (await client.get_object_tagging(**source)).get("TagSet", [])
                tags = {t["Key"]: t["Value"] for t in tagset} or None
            await self.stream_copy(src, src_key, version, dst, dst_key, tags)
        return f"Replicated version {version}" if version else None

    def sync_capable(self, chunk: Chunk) -> bool:
        return False
