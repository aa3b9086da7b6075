"""The s3control jobs operations over REST-XML, driven by botocore's API model both ways.

Requests are read by the model's input shapes: `uri` members from the path template,
`querystring` members from the query (typed by their shape), `header` members and the
XML body with botocore's own REST-XML parser (namespaces, lists, types). Responses are
written by walking the output shapes (member names, `locationName`s, list member names,
the XML namespace), and errors in Amazon's `<ErrorResponse>` shape. No field is read or
written by a hand-written line of its own: a member the model adds is carried by the
same walk.
"""

from __future__ import annotations

import base64
import datetime
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

#: The jobs operations the server speaks (the s3control model's names).
OPERATIONS = ("CreateJob", "DescribeJob", "ListJobs", "UpdateJobStatus", "UpdateJobPriority",
              "GetJobTagging", "PutJobTagging", "DeleteJobTagging")
NAMESPACE = "http://awss3control.amazonaws.com/doc/2018-08-20/"

#: HTTP statuses of the model's error shapes (the model itself gives none for these).
ERROR_STATUS = MappingProxyType({
    "BadRequestException": 400, "InvalidRequestException": 400,
    "InvalidNextTokenException": 400, "TooManyTagsException": 400, "NotFoundException": 404,
    "IdempotencyException": 409, "JobStatusException": 409, "TooManyRequestsException": 429,
    "InternalServiceException": 500})


class ApiError(Exception):
    """An error answered in Amazon's XML error shape: `code` is Amazon's error code."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or ERROR_STATUS.get(code, 400)


@dataclass(frozen=True)
class Operation:
    """One operation of the model: its botocore OperationModel and its route."""

    name: str
    method: str
    path: str  # the requestUri template, e.g. /v20180820/jobs/{id}
    model: Any

    def error_code(self, *preferred: str) -> str:
        """The first of `preferred` that the operation's model lists among its errors
        (else the first given)."""
        names = {shape.name for shape in self.model.error_shapes}
        return next((p for p in preferred if p in names), preferred[0])


def load_operations() -> tuple[Operation, ...]:
    """The jobs operations of botocore's s3control model, with their routes."""
    import botocore.session

    service = botocore.session.get_session().get_service_model("s3control")
    out = []
    for name in OPERATIONS:
        op = service.operation_model(name)
        out.append(Operation(name, op.http["method"], op.http["requestUri"], op))
    return tuple(out)


# -- requests ---------------------------------------------------------------------------


def _scalar(shape: Any, text: str, where: str) -> Any:
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
    except ValueError:
        raise ApiError("InvalidRequest", f"{where}: {text!r} is not a number") from None
    if kind == "boolean":
        if text not in ("true", "false"):
            raise ApiError("InvalidRequest", f"{where}: {text!r} is not true or false")
        return text == "true"
    return text


def parse_request(op: Operation, path_params: Mapping[str, str],
                  query: list[tuple[str, str]], headers: Mapping[str, str],
                  body: bytes) -> dict[str, Any]:
    """The operation's input parameters, read from the HTTP request by its input shape."""
    from botocore.parsers import ResponseParserError, RestXMLParser

    shape = op.model.input_shape
    has_body = any("location" not in m.serialization for m in shape.members.values())
    if has_body and body:
        root_name = shape.serialization.get("name")
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise ApiError("MalformedXML", f"the request body is not well-formed XML "
                                           f"({exc})") from None
        if root_name and root.tag.rpartition("}")[2] != root_name:
            raise ApiError("MalformedXML", f"the request body's root element must be "
                                           f"{root_name}, not {root.tag.rpartition('}')[2]}")
    # botocore's REST-XML parser reads `header` members and the body by the shape; it is
    # written for responses, and a request's body follows the same rules.
    parser = RestXMLParser(timestamp_parser=str)
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        params = parser.parse({"body": body if has_body else b"", "headers": lowered,
                               "status_code": 200}, shape)
    except ResponseParserError as exc:
        raise ApiError("MalformedXML", f"the request body does not match "
                                       f"{shape.name} ({exc})") from None
    params.pop("ResponseMetadata", None)
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        key = member.serialization.get("name", name)
        if location == "uri":
            if key in path_params:
                params[name] = _scalar(member, path_params[key], key)
        elif location == "querystring":
            if member.type_name == "map":
                params[name] = dict(query)
                continue
            values = [v for k, v in query if k == key]
            if not values:
                continue
            if member.type_name == "list":
                params[name] = [_scalar(member.member, v, key) for v in values]
            else:
                params[name] = _scalar(member, values[-1], key)
    validate(op, params)
    return params


def validate(op: Operation, params: dict[str, Any]) -> None:
    """botocore's own validation of the parameters against the input shape (required
    members, types, lengths, ranges)."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(params, op.model.input_shape)
    if report.has_errors():
        lines = [ln.strip() for ln in report.generate_report().splitlines() if ln.strip()]
        raise ApiError(op.error_code("BadRequestException", "InvalidRequestException"),
                       lines[0] if lines else "invalid request")


# -- responses --------------------------------------------------------------------------


def _timestamp(value: Any) -> str:
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, datetime.UTC)
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    value = value.astimezone(datetime.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _text(shape: Any, value: Any) -> str:
    kind = shape.type_name if shape is not None else None
    if kind == "timestamp":
        return _timestamp(value)
    if kind == "blob":
        return base64.b64encode(value if isinstance(value, bytes) else
                                str(value).encode()).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write(parent: ET.Element, name: str, shape: Any, value: Any) -> None:
    """Append `value` to `parent` as element(s) `name`, by `shape` (None: a value the model
    does not describe, such as a batchops operation, written by its JSON form)."""
    kind = shape.type_name if shape is not None else (
        "structure" if isinstance(value, dict) else "list" if isinstance(value, list) else None)
    if kind == "list":
        member = shape.member if shape is not None else None
        item = (member.serialization.get("name") if member is not None else None) or "member"
        if shape is not None and shape.serialization.get("flattened"):
            for v in value:
                _write(parent, name, member, v)
            return
        node = ET.SubElement(parent, name)
        for v in value:
            _write(node, item, member, v)
        return
    if kind == "map":
        node = ET.SubElement(parent, name)
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        for k, v in value.items():
            entry = node if shape.serialization.get("flattened") else \
                ET.SubElement(node, "entry")
            _write(entry, key_name, shape.key, k)
            _write(entry, value_name, shape.value, v)
        return
    if kind == "structure":
        node = ET.SubElement(parent, name)
        _write_members(node, shape, value)
        return
    ET.SubElement(parent, name).text = _text(shape, value)


def _write_members(node: ET.Element, shape: Any, value: Mapping[str, Any]) -> None:
    members = shape.members if shape is not None else {}
    for key, v in value.items():
        if v is None:
            continue
        member = members.get(key)
        if member is not None and member.serialization.get("location"):
            continue  # headers and the status code are not in the body
        tag = (member.serialization.get("name") if member is not None else None) or key
        if member is not None and member.type_name == "list" and \
                member.serialization.get("flattened"):
            tag = member.member.serialization.get("name") or tag
        _write(node, tag, member, v)


def build_response(op: Operation, result: Mapping[str, Any]
                   ) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the operation's output `result`, by its output shape."""
    shape = op.model.output_shape
    headers: dict[str, str] = {}
    status = 200
    if shape is None:
        return status, headers, b""
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if name not in result or result[name] is None:
            continue
        if location == "header":
            headers[member.serialization.get("name", name)] = _text(member, result[name])
        elif location == "statusCode":
            status = int(result[name])
    body_members = {k: v for k, v in result.items()
                    if k not in shape.members or
                    not shape.members[k].serialization.get("location")}
    if not any(not m.serialization.get("location") for m in shape.members.values()):
        return status, headers, b""
    root = ET.Element(shape.name, xmlns=NAMESPACE)
    _write_members(root, shape, body_members)
    headers["Content-Type"] = "application/xml"
    return status, headers, xml_bytes(root)


def xml_bytes(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8",
                                                                     xml_declaration=False)


def error_body(code: str, message: str, request_id: str) -> bytes:
    """Amazon's error document: ErrorResponse/Error/{Code,Message}, RequestId."""
    root = ET.Element("ErrorResponse", xmlns=NAMESPACE)
    error = ET.SubElement(root, "Error")
    ET.SubElement(error, "Code").text = code
    ET.SubElement(error, "Message").text = message
    ET.SubElement(root, "RequestId").text = request_id
    return xml_bytes(root)


__all__ = ["ApiError", "NAMESPACE", "OPERATIONS", "Operation", "build_response", "error_body",
           "load_operations", "parse_request"]
