"""Checks made before any task runs: credentials, endpoint, bucket."""

from __future__ import annotations

from typing import Any

from batchops.storage.locations import Location, Resolver, is_s3, s3_bucket

#: The key a probe reads: one that no one has. A GET of it answers NoSuchKey (the bucket
#: is there and the credentials work) or NoSuchBucket, with no LIST permission needed
#: and whatever odd keys the bucket holds.
_PROBE_KEY = ".batchops-probe-3c1e9d"

#: How many of a manifest's buckets are probed (the first ones named). Where the job
#: writes (the target, the report) is always probed, however many buckets it reads.
MANIFEST_BUCKETS_CHECKED = 8


def _probe(store: Any, loc: Location) -> Any:
    """GET a key that does not exist; returns None when the bucket answered as a bucket
    that is there does, else the Outcome of the last failure."""
    import time

    import obstore as obs

    from batchops.storage.outcomes import classify

    outcome = None
    for attempt in range(3):
        try:
            obs.get(store, loc.prefix + _PROBE_KEY)
            return None
        except Exception as exc:  # noqa: BLE001 - classified by the caller's rules
            outcome = classify(exc)
            if outcome.error_code == "NoSuchKey" or (
                    outcome.http_status == 404 and outcome.error_code != "NoSuchBucket"):
                return None
            if not outcome.retryable:
                return outcome
            time.sleep(0.2 * (attempt + 1))
    return outcome


def preflight(resolver: Resolver, locations: list[Location],
              what: dict[Location, str] | None = None,
              sampled: list[Location] | tuple[Location, ...] = ()) -> None:
    """Before any task runs: credentials resolve, endpoint reachable, bucket there.

    Every S3 bucket of `locations` is checked (where the job writes: the target, the
    report), then the first MANIFEST_BUCKETS_CHECKED other S3 buckets of `sampled` (the
    manifest's). Credentials are resolved through botocore's chain for each distinct
    settings (so a profile, SSO login or credential_process that fails is one sentence).
    Then one GET of a key that does not exist per bucket (transient errors are tried
    three times): it needs no LIST permission. Raises BadInputError with one sentence
    naming the bucket (and `what[loc]`, the flag it came from), endpoint or setting. An
    AccessDenied on that GET is let through: S3 answers it to callers who may read the
    objects they name but not list the bucket.
    """
    seen: set[tuple[str, Any]] = set()
    s3 = []
    for group, limit in ((locations, None), (sampled, MANIFEST_BUCKETS_CHECKED)):
        taken = 0
        for loc in group:
            if limit is not None and taken >= limit:
                break
            if is_s3(loc) and (loc.root, loc.aws) not in seen:
                seen.add((loc.root, loc.aws))
                s3.append(loc)
                taken += 1
    for loc in s3:
        _check(resolver, loc, what)


def _check(resolver: Resolver, loc: Location, what: dict[Location, str] | None) -> None:
    from batchops.model.errors import BadInputError

    ctx = resolver.context(loc)
    ctx.check_credentials()
    where = ctx.endpoint_url or f"the AWS S3 endpoint ({ctx.region})"
    outcome = _probe(resolver.store(loc), loc)
    if outcome is None:
        return
    bucket = s3_bucket(loc)
    label = f"{what[loc]}: " if what and loc in what else ""
    if outcome.error_code == "EndpointUnreachable" or outcome.retryable:
        raise BadInputError(f"{label}cannot reach {where} for bucket {bucket} "
                            f"({outcome.message}); check --endpoint-url, "
                            "AWS_ENDPOINT_URL or the profile's endpoint_url, and the "
                            "network")
    if outcome.http_status == 404 or outcome.error_code == "NoSuchBucket":
        raise BadInputError(f"{label}bucket {bucket} does not exist at {where}")
    if outcome.error_code == "AccessDenied":
        return
    if outcome.http_status in (400, 401, 403):  # credentials, signature, clock
        raise BadInputError(f"{label}bucket {bucket} at {where}: {outcome.message} "
                            f"(credentials of {ctx.where})")
    raise BadInputError(f"{label}bucket {bucket} at {where}: {outcome.message}")
