"""ARNs, in one place, parsed by botocore's ArnParser, in every partition (`aws`,
`aws-cn`, `aws-us-gov`, ...): S3 bucket and object ARNs to and from `s3://` URLs,
and the region of a Lambda function's ARN."""

from __future__ import annotations

from typing import Any

from batchops.model.errors import SpecError


def parse_arn(value: str, what: str) -> dict[str, Any]:
    """{partition, service, region, account, resource}, or SpecError naming `what`."""
    from botocore.utils import ArnParser, InvalidArnException

    try:
        return ArnParser().parse_arn(value)
    except InvalidArnException:
        raise SpecError(f"{what}: {value!r} is not an ARN "
                        "(arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)") from None


def s3_arn_to_url(value: str, what: str) -> str:
    """`arn:aws:s3:::bucket[/key]` (any partition) → `s3://bucket[/key]`."""
    arn = parse_arn(value, what)
    if arn["service"] != "s3" or arn["region"] or arn["account"] or not arn["resource"]:
        raise SpecError(f"{what}: {value!r} is not an S3 bucket or object ARN "
                        "(arn:aws:s3:::bucket or arn:aws:s3:::bucket/key)")
    return "s3://" + arn["resource"]


def s3_url_to_arn(url: str, partition: str = "aws") -> str:
    """`s3://bucket[/key]` → `arn:PARTITION:s3:::bucket[/key]`; other URLs are kept as
    they are (a store URL names a bucket where Amazon's document wants an ARN). Callers
    pass the partition of the ARN the user gave, or of the bucket's region
    (`AwsContext.partition`)."""
    if url.startswith("s3://"):
        return f"arn:{partition}:s3:::{url[len('s3://'):].split('?', 1)[0]}"
    return url


def given_partition(value: object) -> str | None:
    """The partition of an ARN a user gave (`arn:aws-cn:s3:::b` → `aws-cn`); None when
    `value` is not an ARN."""
    if not isinstance(value, str) or not value.startswith("arn:"):
        return None  # (as ArnParser.is_arn answers, without importing botocore: ~0.17 s)
    from botocore.utils import ArnParser

    if ArnParser.is_arn(value):
        return value.split(":", 2)[1]
    return None


def is_s3_arn(value: str) -> bool:
    if not value.startswith("arn:"):
        return False
    from botocore.utils import ArnParser

    return ArnParser.is_arn(value) and value.split(":", 3)[2] == "s3"


def lambda_region(value: str, what: str) -> str:
    """The region of `arn:aws:lambda:REGION:ACCOUNT:function:NAME`."""
    arn = parse_arn(value, what)
    if arn["service"] != "lambda" or not arn["region"]:
        raise SpecError(f"{what}: {value!r} is not a Lambda function ARN "
                        "(arn:aws:lambda:REGION:ACCOUNT:function:NAME)")
    return str(arn["region"])
