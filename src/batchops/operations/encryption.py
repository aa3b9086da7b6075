"""`update-encryption` (S3UpdateObjectEncryption): SSE-KMS for objects already stored.

On AWS (no custom endpoint) each object gets S3's UpdateObjectEncryption call, which
changes the encryption without moving the data. Elsewhere, and when AWS answers that
the call is not there, the object is copied onto itself with the new encryption
(CopyObject). The report row's result message says which path was taken. An
S3-compatible store is never sent UpdateObjectEncryption: a store that does not know
`PUT ?encryption` may take it for a PUT of the object and overwrite the data with the
request's XML (moto does, measured here).

What the copy keeps: the data, the user metadata and the system metadata CopyObject
copies (Content-Type, Cache-Control, ...), the tags, and, read from a HEAD of the object
(the version named in the manifest), its storage class (S3 would make the copy
STANDARD) and its website redirect location (which CopyObject never copies). What it
does not keep: the object's ACL grants (the copy gets the bucket's default ACL, as any
new object), its Object Lock retention and legal hold, and its version id and last
modified time (a versioned bucket gets a new version; the old one stays). CopyObject
copies objects up to 5 GB; a larger object's task fails.
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
#: HeadObject members the copy onto itself passes on (CopyObject's members of the same
#: name): absent from a HEAD of a STANDARD object, or of one with no redirect.
_KEPT_FROM_HEAD = ("StorageClass", "WebsiteRedirectLocation")


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
        extra: dict[str, Any] = {"BucketKeyEnabled": kms["BucketKeyEnabled"]} \
            if "BucketKeyEnabled" in kms else {}
        head = await client.head_object(**obj)
        for member in _KEPT_FROM_HEAD:  # what CopyObject would not keep of its own
            if head.get(member):
                extra[member] = head[member]
        await client.copy_object(Bucket=obj["Bucket"], Key=obj["Key"], CopySource=dict(obj),
                                 MetadataDirective="COPY", TaggingDirective="COPY",
                                 ServerSideEncryption="aws:kms", SSEKMSKeyId=kms["KMSKeyArn"],
                                 **extra)
        return COPIED
