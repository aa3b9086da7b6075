"""What a job is asked to do, as typed frozen data, validated once (no I/O)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchops.model.errors import SpecError
from batchops.model.formats import CSV_FORMAT, INVENTORY_FORMAT, SCOPES

DEFAULT_CONCURRENCY = 64
#: Seconds one task may take (a 5 GB object streamed between providers fits); 0: none.
DEFAULT_TASK_TIMEOUT = 3600.0



@dataclass(frozen=True, slots=True)
class AwsSettings:
    """Where an S3 bucket is and whose credentials sign for it, as aws-cli names them:
    a profile of ~/.aws/config, a region, an endpoint URL. Names only, never keys: this
    is what job.json keeps. None means "as botocore resolves it" (flag, environment,
    profile, `services` section)."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> AwsSettings:
        if not data:
            return cls()
        return cls(data.get("profile"), data.get("region"), data.get("endpoint_url"))

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("profile", self.profile), ("region", self.region),
                                  ("endpoint_url", self.endpoint_url)) if v}

    def __bool__(self) -> bool:
        return bool(self.profile or self.region or self.endpoint_url)


@dataclass(frozen=True)
class JobOptions:
    """A job as requested (from the CLI or a create-job document), before preparing."""

    manifest: str  # path or URL; "" when a manifest generator makes it
    operation: str
    params: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    report_scope: str = "AllTasks"
    report_enabled: bool = True
    chunk_size: int = 0  # 0: automatic (DEFAULT_CHUNK_SIZE, smaller for small manifests)
    engine: str = "local"  # what the job is created to run on: its automatic chunk size
    bucket_map: tuple[tuple[str, str], ...] = ()
    workers: int = 0  # 0: one per core
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = 5
    description: str = ""
    priority: int = 10
    failure_min_tasks: int = 1000
    failure_ratio: float = 0.5
    dry_run: bool = False
    confirmed: bool = False  # the user confirmed a destructive operation (--confirm-delete)
    confirmation_required: bool = False  # Amazon's ConfirmationRequired: start Suspended
    manifest_format: str = CSV_FORMAT  # or INVENTORY_FORMAT
    manifest_etag: str | None = None  # Manifest.Location.ETag: refuse another manifest
    manifest_version: str | None = None  # Manifest.Location.ObjectVersionId: read that one
    manifest_generator: dict[str, Any] | None = None  # S3JobManifestGenerator
    #: With a manifest generator: a CompareMode; the manifest is then the objects that
    #: differ from their copies at the target (schedule/unchanged.py).
    skip_unchanged: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    client_request_token: str | None = None
    role_arn: str | None = None
    account_id: str = "000000000000"  # CreateJob's AccountId: the account in the JobArn
    max_ops_per_second: float = 0.0
    max_bytes_per_second: float = 0.0
    task_timeout: float = DEFAULT_TASK_TIMEOUT
    #: --profile/--region/--endpoint-url: the S3 settings of every bucket that does not
    #: carry its own (`--bucket-map NAME=s3://b?profile=p`).
    aws: AwsSettings = field(default_factory=AwsSettings)

    def check(self) -> None:
        if self.chunk_size < 0:
            raise SpecError("--chunk-size must be at least 1")
        if self.engine not in ("local", "ray"):
            raise SpecError("--engine must be local or ray")
        if self.workers < 0:
            raise SpecError("--workers must be 0 (one per core) or more")
        if self.concurrency < 1:
            raise SpecError("--concurrency must be at least 1")
        if self.max_attempts < 1:
            raise SpecError("--max-attempts must be at least 1")
        if self.report_scope not in SCOPES:
            raise SpecError(f"--report-scope must be one of {', '.join(SCOPES)}")
        if not 0 < self.failure_ratio <= 1:
            raise SpecError("the failure threshold ratio must be in (0, 1]")
        if self.manifest_format not in (CSV_FORMAT, INVENTORY_FORMAT):
            raise SpecError(f"Manifest.Spec.Format must be {CSV_FORMAT} or {INVENTORY_FORMAT}")
        if not self.manifest and not self.manifest_generator:
            raise SpecError("a job needs a manifest (--manifest) or a manifest generator")
        if self.skip_unchanged is not None and not self.manifest_generator:
            raise SpecError("skipping unchanged objects by their listings needs a listing "
                            "(--from-listing)")
        if self.max_ops_per_second < 0 or self.max_bytes_per_second < 0:
            raise SpecError("--max-ops-per-second and --max-bytes-per-second must be positive")
        if self.task_timeout < 0:
            raise SpecError("--task-timeout must be 0 (no limit) or a positive number of seconds")
        if not 0 <= self.priority <= 2147483647:
            raise SpecError("Priority must be a whole number from 0 to 2147483647")
        if len(self.description) > MODEL_TEXT_MAX:
            raise SpecError(f"the job description (Description, --description) is "
                            f"{len(self.description)} characters; S3 allows at most "
                            f"{MODEL_TEXT_MAX}")
        if self.tags:
            check_tag_set([{"Key": k, "Value": v} for k, v in self.tags], "the job's Tags",
                          JOB_TAG_LIMIT, "job")

    def request_digest(self) -> str:
        """What makes two create-job requests "the same" (for ClientRequestToken)."""
        fields = {k: v for k, v in self.__dict__.items() if k != "client_request_token"}
        return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS,
                                           default=str)).hexdigest()



MODEL_TEXT_MAX = 256  # Description, StatusUpdateReason, FailureReason in s3control's model



def check_tag_set(tags: Any, where: str, limit: int = 10,
                  per: str = "object") -> list[dict[str, str]]:
    """Amazon's limits: at most `limit` tags (10 on an object, 50 on a job), keys up to
    128 and values up to 256 characters."""
    if not isinstance(tags, list):
        raise SpecError(f"{where} must be a list of {{\"Key\": ..., \"Value\": ...}}")
    if len(tags) > limit:
        raise SpecError(f"{where} has {len(tags)} tags; S3 allows at most {limit} per {per}")
    seen = set()
    out = []
    for tag in tags:
        if not isinstance(tag, dict) or not isinstance(tag.get("Key"), str) or \
                not isinstance(tag.get("Value", ""), str):
            raise SpecError(f"{where}: each tag needs a string Key and Value")
        key, value = tag["Key"], tag.get("Value", "")
        if not 1 <= len(key) <= 128:
            raise SpecError(f"{where}: tag key {key[:40]!r} must be 1 to 128 characters")
        if len(value) > 256:
            raise SpecError(f"{where}: the value of tag {key!r} is over 256 characters")
        if key in seen:
            raise SpecError(f"{where}: tag key {key!r} appears twice")
        seen.add(key)
        out.append({"Key": key, "Value": value})
    return out



@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a worker needs, pickled to it once. Holds no secrets."""

    job_id: str
    home: str
    operation: str
    params: dict[str, Any]
    bucket_map: tuple[tuple[str, str], ...]
    concurrency: int
    max_attempts: int
    report_scope: str
    dry_run: bool = False
    max_ops_per_second: float = 0.0  # this worker's share of the job's limit; 0: none
    max_bytes_per_second: float = 0.0
    #: Seconds one task may run before it counts as failed (retryable) and, on the sync
    #: path, before its worker is stopped and its chunk taken back; 0: no limit.
    task_timeout: float = 0.0
    aws: AwsSettings = field(default_factory=AwsSettings)
    #: For workers that read their chunks from byte ranges themselves (Ray actors): the
    #: job's prepared manifest (ManifestInfo.to_json()) and its chunk size.
    manifest: dict[str, Any] | None = None
    chunk_size: int = 0
    #: Environment variables a worker on another machine sets in its process first:
    #: where AWS configuration is (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL...), never
    #: keys (schedule/raybackend.py says which).
    env: tuple[tuple[str, str], ...] = ()


def fit_text(text: str) -> str:
    """A reason or description cut to the s3control model's 256 characters."""
    return text if len(text) <= MODEL_TEXT_MAX else text[:MODEL_TEXT_MAX - 1] + "…"



JOB_TAG_LIMIT = 50  # S3TagSet on a job (PutJobTagging, CreateJob); an object takes 10

