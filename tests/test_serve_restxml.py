"""serve/restxml.py against botocore itself, for every member of every jobs operation.

For each operation, an example of its input with every member the model has (built by
walking the shapes) is serialized by botocore's own REST-XML serializer, as a client
sends it, and read back by the server's `parse_request`; an example of its output with
every member is written by the server's `build_response` and read back by botocore's
own parser, as a client reads it. Both must give back what went in: no member is lost,
renamed or mistyped either way.
"""

from __future__ import annotations

import datetime
import re
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.parsers import RestXMLParser
from botocore.serialize import create_serializer

from batchops.serve.restxml import (
    OPERATIONS,
    ApiError,
    build_response,
    error_body,
    load_operations,
    parse_request,
)

WHEN = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def example(shape: Any, name: str = "x", depth: int = 0) -> Any:
    """A valid value of `shape` with every member set (lists of two, enums' first)."""
    kind = shape.type_name
    if kind == "structure":
        members = list(shape.members.items())
        if shape.is_tagged_union:
            members = members[:1]
        if depth > 8:
            members = [(k, v) for k, v in members if k in shape.required_members]
        return {k: example(v, k, depth + 1) for k, v in members}
    if kind == "list":
        return [example(shape.member, name, depth + 1) for _ in range(2)]
    if kind == "map":
        return {f"k{i}": example(shape.value, name, depth + 1) for i in range(2)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        low = shape.metadata.get("min", 1)
        high = shape.metadata.get("max", 64)
        text = f"v-{name}-0123456789"
        text = (text * (low // len(text) + 1))[:max(low, min(len(text), high))]
        return text
    if kind in ("integer", "long"):
        return int(shape.metadata.get("min", 0)) + 3
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return WHEN
    if kind in ("double", "float"):
        return 1.5
    if kind == "blob":
        return b"blob-bytes"
    raise AssertionError(f"no example for {kind}")


def as_sent(value: Any) -> Any:
    """What the server reads back for a value botocore sent (timestamps stay text)."""
    if isinstance(value, dict):
        return {k: as_sent(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_sent(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


@pytest.fixture(scope="module")
def operations() -> dict[str, Any]:
    return {op.name: op for op in load_operations()}


def _path_params(template: str, path: str) -> dict[str, str]:
    pattern = re.sub(r"\{(\w+)\+?\}", r"(?P<\1>[^/]+)", template.split("?")[0])
    match = re.fullmatch(pattern, path)
    assert match, (template, path)
    return {k: unquote(v) for k, v in match.groupdict().items()}


@pytest.mark.parametrize("name", OPERATIONS)
def test_every_input_member_botocore_sends_is_read_back(operations, name) -> None:
    op = operations[name]
    params = example(op.model.input_shape)
    params["AccountId"] = "123456789012"
    sent = create_serializer("rest-xml").serialize_to_request(params, op.model)
    query = [(k, str(v)) for k, values in sent["query_string"].items()
             for v in (values if isinstance(values, list) else [values])]
    got = parse_request(op, _path_params(op.path, sent["url_path"].split("?")[0]), query,
                        dict(sent["headers"]), sent["body"] or b"")
    assert got == as_sent(params)


@pytest.mark.parametrize("name", OPERATIONS)
def test_every_output_member_is_read_back_by_botocore(operations, name) -> None:
    op = operations[name]
    result = example(op.model.output_shape) if op.model.output_shape is not None else {}
    status, headers, body = build_response(op, result)
    parsed = RestXMLParser().parse({"status_code": status, "headers": headers, "body": body},
                                   op.model.output_shape)
    parsed.pop("ResponseMetadata", None)
    assert parsed == result


def test_members_the_model_does_not_know_are_written_and_ignored(operations) -> None:
    """A batchops operation (no shape in Amazon's model) is kept in the XML, and botocore
    passes over it."""
    op = operations["DescribeJob"]
    job = example(op.model.output_shape)
    job["Job"]["Operation"] = {"BatchopsNoop": {"Delay": 1, "Tags": ["a", "b"]}}
    _, _, body = build_response(op, job)
    assert b"<BatchopsNoop><Delay>1</Delay><Tags><member>a</member>" in body
    parsed = RestXMLParser().parse({"status_code": 200, "headers": {}, "body": body},
                                   op.model.output_shape)
    assert parsed["Job"]["Operation"] == {}


def test_errors_are_amazons_shape_and_bad_requests_are_refused(operations) -> None:
    parsed = RestXMLParser().parse({"status_code": 404, "headers": {}, "body": error_body(
        "NotFoundException", "no job x", "REQ1")}, None)
    assert parsed["Error"] == {"Code": "NotFoundException", "Message": "no job x"}
    assert parsed["ResponseMetadata"]["RequestId"] == "REQ1"
    op = operations["CreateJob"]
    with pytest.raises(ApiError) as err:
        parse_request(op, {}, [], {"x-amz-account-id": "123456789012"}, b"<CreateJob")
    assert err.value.code == "MalformedXML"
    with pytest.raises(ApiError) as err:
        parse_request(op, {}, [], {"x-amz-account-id": "123456789012"},
                      b"<Other xmlns='x'><Priority>1</Priority></Other>")
    assert err.value.code == "MalformedXML" and "CreateJobRequest" in err.value.message
    with pytest.raises(ApiError) as err:  # a required member missing: botocore's validator
        parse_request(op, {}, [], {"x-amz-account-id": "123456789012"},
                      b"<CreateJobRequest><Priority>1</Priority></CreateJobRequest>")
    assert err.value.code == "BadRequestException"
    with pytest.raises(ApiError) as err:
        parse_request(operations["ListJobs"], {}, [("maxResults", "many")],
                      {"x-amz-account-id": "123456789012"}, b"")
    assert err.value.code == "InvalidRequest"
