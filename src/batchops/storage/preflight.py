"""Checks made before any task runs: credentials, endpoint, bucket."""

from __future__ import annotations

import os
from typing import Any

from batchops.storage.config import s3_endpoint_and_region
from batchops.storage.locations import Location, Resolver, is_s3, s3_bucket


def _has_aws_credentials() -> bool:
    env = os.environ
    return bool(
        (env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
        or env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
        or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        or env.get("AWS_SKIP_SIGNATURE", "").lower() in ("1", "true")
    )



def _probe(store: Any, loc: Location) -> Any:
    """List at most one key; returns None, or the Outcome of the last failure."""
    import time

    import obstore as obs

    from batchops.storage.outcomes import classify

    outcome = None
    for attempt in range(3):
        try:
            next(iter(obs.list(store, prefix=loc.prefix or None, chunk_size=1)), None)
            return None
        except Exception as exc:  # noqa: BLE001 - classified by the caller's rules
            outcome = classify(exc)
            if not outcome.retryable:
                return outcome
            time.sleep(0.2 * (attempt + 1))
    return outcome



def preflight(resolver: Resolver, locations: list[Location]) -> None:
    """Before any task runs: credentials present, endpoint reachable, bucket there.

    One LIST of at most one key per S3 bucket (up to three buckets; transient errors are
    tried three times). Raises BadInputError with one sentence naming the bucket,
    endpoint or variable.
    """
    from batchops.model.errors import BadInputError

    s3 = [loc for loc in locations if is_s3(loc)][:3]
    if not s3:
        return
    if not _has_aws_credentials():
        raise BadInputError("no AWS credentials: set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)")
    endpoint, _ = s3_endpoint_and_region()
    where = endpoint or "the AWS S3 endpoint"
    for loc in s3:
        outcome = _probe(resolver.store(loc), loc)
        if outcome is None:
            continue
        bucket = s3_bucket(loc)
        if outcome.error_code == "EndpointUnreachable":
            raise BadInputError(f"cannot reach {where} for bucket {bucket}: check "
                                "AWS_ENDPOINT_URL and the network")
        if outcome.retryable:
            raise BadInputError(f"cannot reach {where} for bucket {bucket} "
                                f"({outcome.message}); check AWS_ENDPOINT_URL and the network")
        if outcome.http_status == 404 or outcome.error_code == "NoSuchBucket":
            raise BadInputError(f"bucket {bucket} does not exist at {where}")
        if outcome.fatal and outcome.http_status in (400, 401, 403):  # credentials, clock
            raise BadInputError(f"bucket {bucket} at {where}: "
                                f"{outcome.message}")
        if outcome.http_status == 403:
            raise BadInputError(f"access to bucket {bucket} at {where} was refused "
                                f"({outcome.error_code}); check the credentials in "
                                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
        raise BadInputError(f"bucket {bucket} at {where}: {outcome.message}")

