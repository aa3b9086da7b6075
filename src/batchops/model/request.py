"""Amazon's CreateJob request → JobOptions.

A user's `aws s3control create-job --cli-input-json file://job.json` document runs
unchanged. It is first checked against the CreateJob input shape of the `s3control`
API model that botocore ships (member names, types, required members), with botocore's
own validator, then mapped onto JobOptions. `AccountId` is the account of the job's
JobArn; `RoleArn` is kept and returned by DescribeJob (the job acts with the caller's
own AWS configuration, not by assuming it). Extensions beyond Amazon's model
(operations named `Batchops*`, members named `Batchops*`, store URLs where Amazon takes
ARNs) are allowed. Every member of the model is honoured or refused: model/coverage.py.
"""

from __future__ import annotations

import copy
import os
import uuid
from typing import Any

import orjson

from batchops.model.arns import s3_arn_to_url
from batchops.model.coverage import check_request
from batchops.model.errors import SpecError
from batchops.model.formats import CSV_FORMAT, INVENTORY_FORMAT
from batchops.model.spec import JobOptions


def load_json_arg(value: str, flag: str) -> Any:
    """A JSON-valued flag: inline JSON or `file://path`, as aws-cli takes them."""
    text = value
    if value.startswith("file://"):
        path = value[len("file://"):]
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise SpecError(f"{flag}: cannot read {path} ({exc.strerror})") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SpecError(f"{flag}: not valid JSON ({exc})") from None


def _strip_extensions(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_extensions(v) for k, v in value.items() if not k.startswith("Batchops")}
    if isinstance(value, list):
        return [_strip_extensions(v) for v in value]
    return value


def input_shape() -> Any:
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3control")
    return model.operation_model("CreateJob").input_shape


def validate_against_model(request: dict[str, Any], shape: Any = None) -> None:
    """Check a CreateJob request with botocore's validator, then what batchops refuses
    (model/coverage.py) and the enums botocore's validator leaves alone; one sentence on
    error. `shape`: CreateJob's input shape, if the caller has it loaded (loading it
    costs tens of milliseconds)."""
    shape = shape or input_shape()
    checked = _strip_extensions(copy.deepcopy(request))
    checked.setdefault("AccountId", "000000000000")
    checked.setdefault("RoleArn", "arn:aws:iam::000000000000:role/batchops")
    checked.setdefault("ClientRequestToken", str(uuid.uuid4()))
    operation = checked.get("Operation")
    if isinstance(operation, dict):
        # Our own operations have no shape in Amazon's model.
        checked["Operation"] = {k: v for k, v in operation.items()
                                if not k.startswith("Batchops")} or {"S3DeleteObjectTagging": {}}
    _validate(checked, shape, "create-job")
    check_request(request, shape)
    if request.get("Manifest") and request.get("ManifestGenerator"):
        raise SpecError("create-job: give a Manifest or a ManifestGenerator, not both")


def _validate(value: dict[str, Any], shape: Any, where: str) -> None:
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(value, shape)
    if report.has_errors():
        lines = [line.strip() for line in report.generate_report().splitlines()
                 if line.strip()]
        raise SpecError(f"{where}: {lines[0]}" + (f" (and {len(lines) - 1} more)"
                                                  if len(lines) > 1 else ""))


def validate_operation(operation: dict[str, Any]) -> None:
    """`run --operation JSON`: Amazon's Operation member, checked against the model as
    create-job checks it (members, types, enums, what batchops refuses)."""
    shape = input_shape()
    own = {k: v for k, v in operation.items() if not k.startswith("Batchops")}
    if own:
        _validate(_strip_extensions(own), shape.members["Operation"], "--operation")
    check_request({"Operation": operation}, shape, "--operation")


def _checked_arn(value: str) -> str:
    """An S3 ARN is checked and kept as given (its partition is the job's: `aws-cn`
    ARNs stay `aws-cn` in DescribeJob); creating the job turns it into a URL."""
    if value.startswith("arn:"):
        s3_arn_to_url(value, "create-job")
    return value


def options_from_request(request: dict[str, Any], shape: Any = None,
                         **extra: Any) -> JobOptions:
    """Map a CreateJob request (already validated) onto JobOptions."""
    validate_against_model(request, shape)
    operation = request.get("Operation") or {}
    if len(operation) != 1:
        raise SpecError("create-job: Operation must name exactly one operation")
    name, params = next(iter(operation.items()))
    manifest = request.get("Manifest")
    generator = (request.get("ManifestGenerator") or {}).get("S3JobManifestGenerator")
    if not manifest and not generator:
        raise SpecError("create-job: give a Manifest or a ManifestGenerator")
    location, fmt, etag, version = "", CSV_FORMAT, None, None
    if manifest:
        spec, loc = manifest.get("Spec", {}), manifest.get("Location", {})
        fmt = spec.get("Format", CSV_FORMAT)
        fields = spec.get("Fields")
        if fmt == CSV_FORMAT and fields not in (None, ["Bucket", "Key"],
                                                ["Bucket", "Key", "VersionId"]):
            raise SpecError("create-job: Manifest.Spec.Fields must be [Bucket, Key] or "
                            "[Bucket, Key, VersionId]")
        if fmt not in (CSV_FORMAT, INVENTORY_FORMAT):
            raise SpecError(f"create-job: Manifest.Spec.Format {fmt!r} is not supported")
        location = _checked_arn(str(loc.get("ObjectArn", "")))
        etag = loc.get("ETag") or None
        version = loc.get("ObjectVersionId") or None
    report = request.get("Report") or {}
    report_url = None
    if report.get("Bucket"):
        report_url = _checked_arn(report["Bucket"])
        if report.get("Prefix"):
            report_url = report_url.rstrip("/") + "/" + report["Prefix"].strip("/")
    return JobOptions(
        manifest=location, operation=name, params=params or {}, report=report_url,
        report_scope=report.get("ReportScope", "AllTasks"),
        report_enabled=bool(report.get("Enabled", True)),
        description=request.get("Description", ""),
        priority=int(request.get("Priority", 10)),
        confirmation_required=bool(request.get("ConfirmationRequired", False)),
        manifest_format=fmt, manifest_etag=etag, manifest_version=version,
        manifest_generator=generator,
        tags=tuple((t["Key"], t.get("Value", "")) for t in request.get("Tags") or []),
        client_request_token=request.get("ClientRequestToken"),
        role_arn=request.get("RoleArn"),
        account_id=str(request.get("AccountId") or "000000000000"),
        **extra,
    )
