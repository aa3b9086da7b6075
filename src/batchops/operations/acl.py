"""`put-acl` (S3PutObjectAcl): a canned ACL or an explicit grant list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from batchops.model.chunk import Chunk
from batchops.model.errors import SpecError
from batchops.operations.base import Operation
from batchops.storage.locations import Resolver

CANNED = ("private", "public-read", "public-read-write", "aws-exec-read", "authenticated-read",
          "bucket-owner-read", "bucket-owner-full-control")
PERMISSIONS = ("FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP")
GRANTEE_TYPES = MappingProxyType(
    {"id": "CanonicalUser", "emailAddress": "AmazonCustomerByEmail", "uri": "Group"})
_WHERE = "Operation.S3PutObjectAcl.AccessControlPolicy"
GRANT_HEADERS = MappingProxyType({"FULL_CONTROL": "GrantFullControl", "READ": "GrantRead",
                 "READ_ACP": "GrantReadACP", "WRITE": "GrantWrite", "WRITE_ACP": "GrantWriteACP"})
_S3_GRANTEE = MappingProxyType({"CanonicalUser": ("id", "ID"), "Group": ("uri", "URI"),
               "AmazonCustomerByEmail": ("emailAddress", "EmailAddress")})


def grant_headers(grants: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """(TypeIdentifier, Identifier, Permission) grants → S3's x-amz-grant-* arguments.

    The grant headers set the whole ACL as one request, like an AccessControlPolicy
    body, and every S3-compatible server understands them.
    """
    out: dict[str, list[str]] = {}
    for kind, ident, permission in grants:
        out.setdefault(GRANT_HEADERS[permission], []).append(f'{kind}="{ident}"')
    return {k: ", ".join(v) for k, v in out.items()}


def s3_acl_grants(acl: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """An S3 GetObjectAcl response's grants as (TypeIdentifier, Identifier, Permission)."""
    out = []
    for grant in acl.get("Grants", []):
        g = grant["Grantee"]
        kind, field = _S3_GRANTEE.get(g.get("Type", ""), ("id", "ID"))
        if g.get(field):
            out.append((kind, g[field], grant["Permission"]))
    return out


class PutAclOperation(Operation):
    amazon_name = "S3PutObjectAcl"
    alias = "put-acl"
    needs_s3_api = True
    verb = "set ACLs on"

    @classmethod
    def validate(cls, params: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
        policy = params.get("AccessControlPolicy")
        if not isinstance(policy, dict):
            raise SpecError(f"{_WHERE} is required: a CannedAccessControlList or an "
                            "AccessControlList with Owner and Grants")
        canned = policy.get("CannedAccessControlList")
        acl = policy.get("AccessControlList")
        if (canned is None) == (acl is None):
            raise SpecError(f"{_WHERE} needs exactly one of CannedAccessControlList and "
                            "AccessControlList")
        if canned is not None and canned not in CANNED:
            raise SpecError(f"{_WHERE}.CannedAccessControlList must be one of "
                            f"{' | '.join(CANNED)}, not {canned!r}")
        if acl is not None:
            owner = acl.get("Owner") if isinstance(acl, dict) else None
            if not isinstance(owner, dict) or not owner.get("ID"):
                raise SpecError(f"{_WHERE}.AccessControlList.Owner.ID is required")
            for n, grant in enumerate(acl.get("Grants") or []):
                where = f"{_WHERE}.AccessControlList.Grants[{n}]"
                grantee = grant.get("Grantee") if isinstance(grant, dict) else None
                if not isinstance(grantee, dict) or \
                        grantee.get("TypeIdentifier") not in GRANTEE_TYPES or \
                        not grantee.get("Identifier"):
                    raise SpecError(f"{where}.Grantee needs TypeIdentifier (id | emailAddress "
                                    "| uri) and Identifier")
                if grant.get("Permission") not in PERMISSIONS:
                    raise SpecError(f"{where}.Permission must be one of {' | '.join(PERMISSIONS)}")
        return {"AccessControlPolicy": policy}

    def _request(self) -> dict[str, Any]:
        policy = self.params["AccessControlPolicy"]
        if policy.get("CannedAccessControlList"):
            return {"ACL": policy["CannedAccessControlList"]}
        return grant_headers(
            (g["Grantee"]["TypeIdentifier"], g["Grantee"]["Identifier"], g["Permission"])
            for g in policy["AccessControlList"].get("Grants") or [])

    async def run(self, chunk: Chunk, i: int) -> str | None:
        client = await self.s3_client(chunk, i)
        await client.put_object_acl(**self.s3_object(chunk, i), **self._request())
        return None
