"""Where S3 requests go: endpoint and region, shared by every S3 client."""

from __future__ import annotations

import os


def s3_endpoint_and_region() -> tuple[str | None, str | None]:
    """The S3 endpoint and region from the environment, shared by every S3 client."""
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    if region is None and endpoint:
        region = "us-east-1"
    return endpoint, region

