"""`put-acl` (S3PutObjectAcl): a canned ACL or an explicit grant list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..chunk import Chunk
from ..errors import SpecError
from ..stores import Resolver
from .base import Operation

CANNED = ("private", "public-read", "public-read-write", "aws-exec-read", "authenticated-read",
          "bucket-owner-read", "bucket-owner-full-control")
PERMISSIONS = ("FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP")
GRANTEE_TYPES = {"id": "CanonicalUser", "emailAddress": "AmazonCustomerByEmail", "uri": "Group"}
_WHERE = "Operation.S3PutObjectAcl.AccessControlPolicy"


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
        acl = policy["AccessControlList"]
        grants = []
        for grant in acl.get("Grants") or []:
            g = grant["Grantee"]
            kind = GRANTEE_TYPES[g["TypeIdentifier"]]
            field = {"CanonicalUser": "ID", "AmazonCustomerByEmail": "EmailAddress",
                     "Group": "URI"}[kind]
            grantee = {"Type": kind, field: g["Identifier"]}
            if g.get("DisplayName"):
                grantee["DisplayName"] = g["DisplayName"]
            grants.append({"Grantee": grantee, "Permission": grant["Permission"]})
        owner = {"ID": acl["Owner"]["ID"]}
        if acl["Owner"].get("DisplayName"):
            owner["DisplayName"] = acl["Owner"]["DisplayName"]
        return {"AccessControlPolicy": {"Grants": grants, "Owner": owner}}

    async def run(self, chunk: Chunk, i: int) -> str | None:
        client = await self.resolver.s3api().client()
        await client.put_object_acl(**self.s3_object(chunk, i), **self._request())
        return None
