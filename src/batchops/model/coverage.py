"""Every member of s3control's CreateJob, honoured or refused (issue 11 §4).

`HONOURED` names, for each member batchops acts on, the test that shows it; `REFUSED`
gives, for each member it cannot act on, the sentence a job naming it is refused with
(create-job, and `run --operation JSON`). tests/test_model_coverage.py walks the model
botocore ships and fails on any member that is in neither table. Paths are dotted;
`[]` is a list's item, `{}` a map's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from batchops.model.errors import SpecError

_OPS = "tests/test_operations.py::"
_COV = "tests/test_model_coverage.py::"
_LIFE = "tests/test_lifecycle.py::"
_INV = "tests/test_manifests_inventory.py::"
_FLT = "tests/test_generator_filters.py::"
_COPY = "Operation.S3PutObjectCopy"
_GEN = "ManifestGenerator.S3JobManifestGenerator"
_ACL = "Operation.S3PutObjectAcl.AccessControlPolicy"

HONOURED: Mapping[str, str] = MappingProxyType({
    "AccountId": _COV + "test_account_and_role_are_the_jobs",
    "RoleArn": _COV + "test_account_and_role_are_the_jobs",
    "ConfirmationRequired": _LIFE + "test_a_suspended_job_runs_only_once_confirmed",
    "ClientRequestToken": _LIFE + "test_client_request_token_is_idempotent",
    "Description": "tests/test_conformance.py::"
                   "test_over_long_descriptions_and_reasons_are_refused_or_fit",
    "Priority": _LIFE + "test_a_higher_priority_job_preempts_then_the_other_resumes",
    "Tags": _LIFE + "test_priority_updates_and_job_tags",
    "Tags[].Key": _LIFE + "test_priority_updates_and_job_tags",
    "Tags[].Value": _LIFE + "test_priority_updates_and_job_tags",
    "Operation": "tests/test_conformance.py::"
                 "test_every_amazon_operation_round_trips_and_conforms",
    # invoke
    "Operation.LambdaInvoke": _OPS + "test_invoke_python_function",
    "Operation.LambdaInvoke.FunctionArn": _OPS + "test_invoke_python_function",
    "Operation.LambdaInvoke.InvocationSchemaVersion": _OPS + "test_invoke_python_function",
    "Operation.LambdaInvoke.UserArguments": _OPS + "test_invoke_python_function",
    # copy
    _COPY: "tests/test_copy.py::test_s3_to_s3_across_buckets_keeps_content_type_and_metadata",
    f"{_COPY}.TargetResource": "tests/test_copy.py::"
                               "test_s3_to_s3_across_buckets_keeps_content_type_and_metadata",
    f"{_COPY}.TargetKeyPrefix": "tests/test_copy.py::test_s3_to_s3_same_bucket_with_prefix",
    f"{_COPY}.CannedAccessControlList": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.MetadataDirective": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.StorageClass": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.NewObjectTagging": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.NewObjectTagging[].Key": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.NewObjectTagging[].Value": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.NewObjectMetadata": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.NewObjectMetadata.ContentType": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.NewObjectMetadata.UserMetadata": _OPS + "test_copy_options_are_applied",
    f"{_COPY}.NewObjectMetadata.CacheControl": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.NewObjectMetadata.ContentDisposition": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.NewObjectMetadata.ContentEncoding": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.NewObjectMetadata.ContentLanguage": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.NewObjectMetadata.HttpExpiresDate": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.NewObjectMetadata.SSEAlgorithm": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.RedirectLocation": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.ModifiedSinceConstraint": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.UnModifiedSinceConstraint": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.RequesterPays": _COV + "test_copy_metadata_and_conditions",
    f"{_COPY}.AccessControlGrants": _COV + "test_copy_grants_and_kms",
    f"{_COPY}.AccessControlGrants[].Grantee": _COV + "test_copy_grants_and_kms",
    f"{_COPY}.AccessControlGrants[].Grantee.TypeIdentifier": _COV + "test_copy_grants_and_kms",
    f"{_COPY}.AccessControlGrants[].Grantee.Identifier": _COV + "test_copy_grants_and_kms",
    # S3's ACL grants carry no display name; Amazon's job takes it and S3 drops it too.
    f"{_COPY}.AccessControlGrants[].Grantee.DisplayName": _COV + "test_copy_grants_and_kms",
    f"{_COPY}.AccessControlGrants[].Permission": _COV + "test_copy_grants_and_kms",
    f"{_COPY}.SSEAwsKmsKeyId": _COV + "test_copy_grants_and_kms",
    f"{_COPY}.BucketKeyEnabled": _COV + "test_copy_grants_and_kms",
    f"{_COPY}.ChecksumAlgorithm": _COV + "test_copy_checksum_algorithms",
    f"{_COPY}.ObjectLockLegalHoldStatus": _COV + "test_copy_object_lock",
    f"{_COPY}.ObjectLockMode": _COV + "test_copy_object_lock",
    f"{_COPY}.ObjectLockRetainUntilDate": _COV + "test_copy_object_lock",
    # ACL, tagging, restore, object lock, checksums
    "Operation.S3PutObjectAcl": _OPS + "test_put_acl_canned_and_grants",
    _ACL: _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.CannedAccessControlList": _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList": _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Owner": _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Owner.ID": _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Owner.DisplayName": _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Grants": _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Grants[].Grantee": _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Grants[].Grantee.TypeIdentifier":
        _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Grants[].Grantee.Identifier":
        _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Grants[].Grantee.DisplayName":
        _OPS + "test_put_acl_canned_and_grants",
    f"{_ACL}.AccessControlList.Grants[].Permission": _OPS + "test_put_acl_canned_and_grants",
    "Operation.S3PutObjectTagging": _OPS + "test_put_tagging_replaces_the_tag_set",
    "Operation.S3PutObjectTagging.TagSet": _OPS + "test_put_tagging_replaces_the_tag_set",
    "Operation.S3PutObjectTagging.TagSet[].Key": _OPS + "test_put_tagging_replaces_the_tag_set",
    "Operation.S3PutObjectTagging.TagSet[].Value":
        _OPS + "test_put_tagging_replaces_the_tag_set",
    "Operation.S3DeleteObjectTagging": _OPS + "test_delete_tagging",
    "Operation.S3InitiateRestoreObject": _OPS + "test_restore_archived_objects",
    "Operation.S3InitiateRestoreObject.ExpirationInDays": _OPS + "test_restore_archived_objects",
    "Operation.S3InitiateRestoreObject.GlacierJobTier": _OPS + "test_restore_archived_objects",
    "Operation.S3PutObjectLegalHold": _OPS + "test_put_retention_and_legal_hold",
    "Operation.S3PutObjectLegalHold.LegalHold": _OPS + "test_put_retention_and_legal_hold",
    "Operation.S3PutObjectLegalHold.LegalHold.Status": _OPS + "test_put_retention_and_legal_hold",
    "Operation.S3PutObjectRetention": _OPS + "test_put_retention_and_legal_hold",
    "Operation.S3PutObjectRetention.BypassGovernanceRetention":
        _OPS + "test_put_retention_and_legal_hold",
    "Operation.S3PutObjectRetention.Retention": _OPS + "test_put_retention_and_legal_hold",
    "Operation.S3PutObjectRetention.Retention.RetainUntilDate":
        _OPS + "test_put_retention_and_legal_hold",
    "Operation.S3PutObjectRetention.Retention.Mode": _OPS + "test_put_retention_and_legal_hold",
    "Operation.S3ComputeObjectChecksum": _OPS + "test_compute_checksum_matches_hashlib_and_zlib",
    "Operation.S3ComputeObjectChecksum.ChecksumAlgorithm":
        _OPS + "test_compute_checksum_matches_hashlib_and_zlib",
    "Operation.S3ComputeObjectChecksum.ChecksumType":
        _OPS + "test_compute_checksum_matches_hashlib_and_zlib",
    "Operation.S3UpdateObjectEncryption": _COV + "test_update_object_encryption",
    "Operation.S3UpdateObjectEncryption.ObjectEncryption": _COV + "test_update_object_encryption",
    "Operation.S3UpdateObjectEncryption.ObjectEncryption.SSEKMS":
        _COV + "test_update_object_encryption",
    "Operation.S3UpdateObjectEncryption.ObjectEncryption.SSEKMS.KMSKeyArn":
        _COV + "test_update_object_encryption",
    "Operation.S3UpdateObjectEncryption.ObjectEncryption.SSEKMS.BucketKeyEnabled":
        _COV + "test_update_object_encryption",
    # report and manifest
    "Report": "tests/test_report_locations.py::test_manifest_from_s3_and_report_to_s3",
    "Report.Bucket": "tests/test_report_locations.py::test_manifest_from_s3_and_report_to_s3",
    "Report.Prefix": "tests/test_report_locations.py::test_manifest_from_s3_and_report_to_s3",
    "Report.Format": _COV + "test_specs_that_cannot_work_are_refused",
    "Report.Enabled": _COV + "test_account_and_role_are_the_jobs",
    "Report.ReportScope":
        "tests/test_copy.py::test_missing_objects_fail_with_404_and_are_not_retried",
    "Manifest": _LIFE + "test_bucket_and_object_arns_name_s3_buckets_and_objects",
    "Manifest.Spec": _LIFE + "test_bucket_and_object_arns_name_s3_buckets_and_objects",
    "Manifest.Spec.Format": _INV + "test_an_inventory_report_runs_every_listed_object",
    "Manifest.Spec.Fields": _LIFE + "test_the_manifest_object_version_is_honoured",
    "Manifest.Location": _LIFE + "test_bucket_and_object_arns_name_s3_buckets_and_objects",
    "Manifest.Location.ObjectArn":
        _LIFE + "test_bucket_and_object_arns_name_s3_buckets_and_objects",
    "Manifest.Location.ObjectVersionId": _LIFE + "test_the_manifest_object_version_is_honoured",
    "Manifest.Location.ETag": _LIFE + "test_a_manifest_etag_mismatch_fails_the_job",
    # generated manifests
    "ManifestGenerator": _INV + "test_generated_manifest_filters_over_s3",
    _GEN: _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.SourceBucket": _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.EnableManifestOutput":
        _INV + "test_the_generated_manifest_is_written_and_can_be_reused",
    f"{_GEN}.ManifestOutputLocation":
        _INV + "test_the_generated_manifest_is_written_and_can_be_reused",
    f"{_GEN}.ManifestOutputLocation.Bucket":
        _INV + "test_the_generated_manifest_is_written_and_can_be_reused",
    f"{_GEN}.ManifestOutputLocation.ManifestPrefix":
        _INV + "test_the_generated_manifest_is_written_and_can_be_reused",
    f"{_GEN}.ManifestOutputLocation.ManifestFormat":
        _INV + "test_the_generated_manifest_is_written_and_can_be_reused",
    f"{_GEN}.Filter": _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.CreatedAfter": _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.CreatedBefore": _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.KeyNameConstraint": _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.KeyNameConstraint.MatchAnyPrefix":
        _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.KeyNameConstraint.MatchAnySuffix":
        _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.KeyNameConstraint.MatchAnySubstring":
        _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.ObjectSizeGreaterThanBytes": _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.ObjectSizeLessThanBytes": _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.MatchAnyStorageClass": _INV + "test_generated_manifest_filters_over_s3",
    f"{_GEN}.Filter.EligibleForReplication":
        _FLT + "test_eligible_for_replication_follows_the_replication_rules",
    # ObjectReplicationStatuses and the SSE-C and DSSE-KMS key cases: moto sets no
    # replication status, stores no SSE-C and answers no DSSE-KMS key id; their test
    # runs behind a proxy answering those HEADs as S3 does.
    f"{_GEN}.Filter.ObjectReplicationStatuses": _FLT + "test_what_moto_does_not_keep",
    f"{_GEN}.Filter.MatchAnyObjectEncryption": _FLT + "test_every_object_encryption_moto_stores",
    f"{_GEN}.Filter.MatchAnyObjectEncryption[].SSES3":
        _FLT + "test_every_object_encryption_moto_stores",
    f"{_GEN}.Filter.MatchAnyObjectEncryption[].SSEKMS":
        _FLT + "test_every_object_encryption_moto_stores",
    f"{_GEN}.Filter.MatchAnyObjectEncryption[].SSEKMS.KmsKeyArn":
        _FLT + "test_every_object_encryption_moto_stores",
    f"{_GEN}.Filter.MatchAnyObjectEncryption[].SSEKMS.BucketKeyEnabled":
        _FLT + "test_every_object_encryption_moto_stores",
    f"{_GEN}.Filter.MatchAnyObjectEncryption[].DSSEKMS":
        _FLT + "test_every_object_encryption_moto_stores",
    f"{_GEN}.Filter.MatchAnyObjectEncryption[].DSSEKMS.KmsKeyArn":
        _FLT + "test_what_moto_does_not_keep",
    f"{_GEN}.Filter.MatchAnyObjectEncryption[].SSEC": _FLT + "test_what_moto_does_not_keep",
    f"{_GEN}.Filter.MatchAnyObjectEncryption[].NOTSSE":
        _FLT + "test_every_object_encryption_moto_stores",
})

_OWNER = ("batchops cannot check which account owns a bucket (S3-compatible stores have "
          "no such check); remove {} or check the owner before creating the job")
_EVENT_HOLD = ("S3 has no event-hold call that batchops could make for it; remove {}")

REFUSED: Mapping[str, str] = MappingProxyType({
    f"{_COPY}.AnnotationDirective": "no store batchops reaches keeps annotations: remove it",
    f"{_COPY}.ObjectLockEventHold": _EVENT_HOLD.format("ObjectLockEventHold"),
    f"{_COPY}.ObjectLockEventHoldDuration": _EVENT_HOLD.format("ObjectLockEventHoldDuration"),
    f"{_COPY}.ObjectLockEventHoldDuration.Days": _EVENT_HOLD.format("ObjectLockEventHoldDuration"),
    f"{_COPY}.ObjectLockEventHoldDuration.Years":
        _EVENT_HOLD.format("ObjectLockEventHoldDuration"),
    f"{_COPY}.NewObjectMetadata.ContentLength": "S3 sets a copy's length from its source: "
                                                "remove ContentLength",
    f"{_COPY}.NewObjectMetadata.ContentMD5": "S3 computes a copy's MD5 itself: remove "
                                             "ContentMD5 (ChecksumAlgorithm asks for a "
                                             "checksum)",
    f"{_COPY}.NewObjectMetadata.RequesterCharged": "RequesterCharged is what S3 answers, not "
                                                   "something a copy can ask for: use "
                                                   "RequesterPays",
    "Operation.S3PutObjectRetention.Retention.EventHold": _EVENT_HOLD.format("EventHold"),
    "Operation.S3PutObjectRetention.Retention.EventHoldDuration":
        _EVENT_HOLD.format("EventHoldDuration"),
    "Operation.S3PutObjectRetention.Retention.EventHoldDuration.Days":
        _EVENT_HOLD.format("EventHoldDuration"),
    "Operation.S3PutObjectRetention.Retention.EventHoldDuration.Years":
        _EVENT_HOLD.format("EventHoldDuration"),
    "Operation.S3ReplicateObject": "S3ReplicateObject copies to the destinations of the "
                                   "bucket's replication configuration, which batchops does "
                                   "not read: use `batchops run --operation replicate "
                                   "--target URL`",
    "Report.ExpectedBucketOwner": _OWNER.format("Report.ExpectedBucketOwner"),
    f"{_GEN}.ExpectedBucketOwner": _OWNER.format("ExpectedBucketOwner"),
    f"{_GEN}.ManifestOutputLocation.ExpectedManifestBucketOwner":
        _OWNER.format("ExpectedManifestBucketOwner"),
    f"{_GEN}.ManifestOutputLocation.ManifestEncryption":
        "batchops writes the generated manifest with the bucket's default encryption: "
        "remove ManifestEncryption (set a default encryption on that bucket instead)",
    f"{_GEN}.ManifestOutputLocation.ManifestEncryption.SSES3":
        "batchops writes the generated manifest with the bucket's default encryption: "
        "remove ManifestEncryption",
    f"{_GEN}.ManifestOutputLocation.ManifestEncryption.SSEKMS":
        "batchops writes the generated manifest with the bucket's default encryption: "
        "remove ManifestEncryption",
    f"{_GEN}.ManifestOutputLocation.ManifestEncryption.SSEKMS.KeyId":
        "batchops writes the generated manifest with the bucket's default encryption: "
        "remove ManifestEncryption",
})


def check_request(request: Mapping[str, Any], shape: Any, where: str = "create-job") -> None:
    """Walk a request along its model shape: a member in REFUSED, or a value outside its
    member's enum, is refused in one sentence naming the member. Members named
    `Batchops*` (ours) and members the model does not have are left to the caller."""
    _walk(request, shape, "", where)


def _walk(value: Any, shape: Any, path: str, where: str) -> None:
    if path in REFUSED:
        raise SpecError(f"{where}: {path}: {REFUSED[path]}")
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        for name, member in value.items():
            if name.startswith("Batchops") or name not in shape.members:
                continue
            _walk(member, shape.members[name], f"{path}.{name}" if path else name, where)
    elif kind == "list" and isinstance(value, list):
        for item in value:
            _walk(item, shape.member, path + "[]", where)
    elif kind == "map" and isinstance(value, Mapping):
        for item in value.values():
            _walk(item, shape.value, path + "{}", where)
    elif kind == "string" and getattr(shape, "enum", None) and isinstance(value, str) \
            and value not in shape.enum:
        raise SpecError(f"{where}: {path} must be one of {', '.join(shape.enum)}, "
                        f"not {value!r}")
