"""`update-encryption` (S3UpdateObjectEncryption): SSE-KMS for objects already stored.

On AWS (no custom endpoint) each object gets S3's UpdateObjectEncryption call, which
changes the encryption without moving the data. Elsewhere, and when AWS answers that
the call is not there, the object is copied onto itself with the new encryption
(CopyObject, metadata and tags kept). The report row's result message says which path
was taken. An S3-compatible store is never sent UpdateObjectEncryption: a store that
does not know `PUT ?encryption` may take it for a PUT of the object and overwrite the
data with the request's XML (moto does, measured here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.operations.base import Operation
from batchops.storage.locations import Resolver

_WHERE = "Operation.S3UpdateObjectEncryption.ObjectEncryption"
UPDATED = "UpdateObjectEncryption: encryption changed in place"
COPIED = ("copied onto itself with the new encryption (this store has no "
          "UpdateObjectEncryption)")
#: AWS's answers when an endpoint has no UpdateObjectEncryption: then the copy is made.
_NOT_THERE = frozenset({"NotImplemented", "MethodNotAllowed", "UnsupportedOperation"})


class UpdateEncryptionOperation(Operation):
    amazon_name = "S3UpdateObjectEncryption"
    alias = "update-encryption"
    needs_s3_api = True
    verb = "change the encryption of"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        enc = params.get("ObjectEncryption")
        kms = enc.get("SSEKMS") if isinstance(enc, Mapping) else None
        if not isinstance(kms, Mapping) or not isinstance(kms.get("KMSKeyArn"), str) \
                or not kms["KMSKeyArn"]:
            raise SpecError(f"{_WHERE}.SSEKMS.KMSKeyArn is required (the KMS key to encrypt "
                            "with, e.g. arn:aws:kms:us-east-1:111122223333:key/...)")
        out: dict[str, Any] = {"KMSKeyArn": kms["KMSKeyArn"]}
        if kms.get("BucketKeyEnabled") is not None:
            if not isinstance(kms["BucketKeyEnabled"], bool):
                raise SpecError(f"{_WHERE}.SSEKMS.BucketKeyEnabled must be true or false")
            out["BucketKeyEnabled"] = kms["BucketKeyEnabled"]
        return {"ObjectEncryption": {"SSEKMS": out}}

    async def run(self, chunk: Chunk, i: int) -> str | None:
        from botocore.exceptions import ClientError

        client = await self.s3_client(chunk, i)
        obj = self.s3_object(chunk, i)
        kms = self.params["ObjectEncryption"]["SSEKMS"]
        if self.resolver.context(self.resolver.location(chunk.buckets[i])).endpoint_url is None:
            try:
                await client.update_object_encryption(
                    **obj, ObjectEncryption=self.params["ObjectEncryption"])
                return UPDATED
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _NOT_THERE:
                    raise
        source = dict(obj)
        extra = {"BucketKeyEnabled": kms["BucketKeyEnabled"]} \
            if "BucketKeyEnabled" in kms else {}
        await client.copy_object(Bucket=obj["Bucket"], Key=obj["Key"], CopySource=source,
                                 MetadataDirective="COPY", TaggingDirective="COPY",
                                 ServerSideEncryption="aws:kms", SSEKMSKeyId=kms["KMSKeyArn"],
                                 **extra)
        return COPIED
