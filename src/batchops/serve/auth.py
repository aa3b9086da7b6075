"""Who sent a request: SigV4, verified by recomputing it with botocore's own signer.

The operator gives the server its keys in a file in the shape of ~/.aws/credentials,
one section a key:

    [ops-team]
    aws_access_key_id = AKIA...
    aws_secret_access_key = ...
    aws_account_id = 123456789012

A key reaches the jobs of its account only (`x-amz-account-id` must be that account,
and signed). Keys stay in this process's memory: never in the job store, a log or an
error text. The file must not be readable by group or others.

A request is verified by rebuilding it as botocore's AWSRequest with exactly the headers
it signed, and letting botocore's S3SigV4Auth compute the canonical request, the string
to sign and the signature with the key's secret; the two signatures are compared in
constant time. Errors are S3's: InvalidAccessKeyId, SignatureDoesNotMatch,
RequestTimeTooSkewed, XAmzContentSHA256Mismatch, AuthorizationHeaderMalformed,
AccessDenied.
"""

from __future__ import annotations

import configparser
import datetime
import hashlib
import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from batchops.model.errors import SpecError
from batchops.serve.restxml import ApiError

#: How far a request's X-Amz-Date may be from the server's clock (S3's 15 minutes).
MAX_SKEW = datetime.timedelta(minutes=15)
ALGORITHM = "AWS4-HMAC-SHA256"
SIGNING_NAME = "s3"  # the s3control model's signingName
UNSIGNED = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")


@dataclass(frozen=True)
class Key:
    """One operator key: its id, secret (never shown) and the account it acts for."""

    access_key_id: str
    secret: str = field(repr=False)
    account_id: str


def load_keys(path: str) -> Mapping[str, Key]:
    """The keys of a credentials-style file, by access key id; one sentence on error."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SpecError(f"--keys {path}: cannot read it ({exc.strerror})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SpecError(f"--keys {path}: holds secret keys but group or others may read "
                        f"it; run `chmod 600 {path}`")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        raise SpecError(f"--keys {path}: not a credentials file "
                        f"({type(exc).__name__})") from None
    keys: dict[str, Key] = {}
    for name in parser.sections():
        section = parser[name]
        missing = [k for k in ("aws_access_key_id", "aws_secret_access_key",
                               "aws_account_id") if not section.get(k, "").strip()]
        if missing:
            raise SpecError(f"--keys {path}: section [{name}] has no {missing[0]}")
        account = section["aws_account_id"].strip()
        if not (account.isdigit() and len(account) == 12):
            raise SpecError(f"--keys {path}: section [{name}]: aws_account_id must be 12 "
                            "digits")
        key_id = section["aws_access_key_id"].strip()
        if key_id in keys:
            raise SpecError(f"--keys {path}: access key {key_id} is given twice")
        keys[key_id] = Key(key_id, section["aws_secret_access_key"].strip(), account)
    if not keys:
        raise SpecError(f"--keys {path}: no key in it (sections with aws_access_key_id, "
                        "aws_secret_access_key and aws_account_id)")
    return MappingProxyType(keys)


def _denied(code: str, message: str) -> ApiError:
    return ApiError(code, message, 403 if code != "AuthorizationHeaderMalformed" else 400)


def _parse_authorization(value: str) -> tuple[list[str], list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _denied("AuthorizationHeaderMalformed",
                      f"the Authorization header must use {ALGORITHM} (SigV4)")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, v = part.strip().partition("=")
        if sep:
            fields[name] = v
    try:
        scope = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except KeyError as exc:
        raise _denied("AuthorizationHeaderMalformed",
                      f"the Authorization header has no {exc.args[0]}") from None
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise _denied("AuthorizationHeaderMalformed",
                      "the Authorization header's Credential is not "
                      "KEY/DATE/REGION/SERVICE/aws4_request")
    return scope, signed, signature


def verify(keys: Mapping[str, Key], method: str, url: str,
           headers: list[tuple[str, str]], body: bytes,
           now: datetime.datetime | None = None) -> Key:
    """The key that signed this request, or ApiError with S3's code.

    `url` is the request as it was sent (http://HOST/raw/path?raw-query), `headers` every
    header as received."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    received: dict[str, list[str]] = {}
    for name, value in headers:
        received.setdefault(name.lower(), []).append(value)
    authorization = received.get("authorization")
    if not authorization:
        if "X-Amz-Signature=" in url or "X-Amz-Credential=" in url:
            raise _denied("AccessDenied", "query-string (presigned) authentication is not "
                                          "accepted here; sign the request's headers")
        raise _denied("AccessDenied", "the request is not signed (no Authorization "
                                      "header); this server verifies SigV4")
    scope, signed, signature = _parse_authorization(authorization[0])
    key = keys.get(scope[0])
    if key is None:
        raise _denied("InvalidAccessKeyId",
                      "the AWS access key id you provided does not exist in our records")
    if "x-amz-security-token" in received:
        raise _denied("InvalidToken", "this server's keys are long-term keys; the request "
                                      "carries a session token")
    amz_date = (received.get("x-amz-date") or [""])[0]
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.UTC)
    except ValueError:
        raise _denied("AccessDenied", "the request has no valid X-Amz-Date "
                                      "(YYYYMMDDTHHMMSSZ)") from None
    now = now or datetime.datetime.now(datetime.UTC)
    if abs(now - when) > MAX_SKEW:
        raise _denied("RequestTimeTooSkewed", "the difference between the request time and "
                                              "the server's time is too large")
    if scope[1] != amz_date[:8]:
        raise _denied("AuthorizationHeaderMalformed",
                      f"the Credential's date {scope[1]} is not X-Amz-Date's day")
    if scope[3] != SIGNING_NAME:
        raise _denied("AuthorizationHeaderMalformed",
                      f"the Credential's service must be {SIGNING_NAME!r}")
    for need in ("host", "x-amz-date", "x-amz-account-id"):
        if need in received and need not in signed:
            raise _denied("AccessDenied", f"the {need} header must be signed")
    if any(h not in received for h in signed):
        raise _denied("SignatureDoesNotMatch",
                      "a header named in SignedHeaders is not in the request")
    content = received["x-amz-content-sha256"][0] if "x-amz-content-sha256" in received \
        else None
    if content in UNSIGNED or (content and content.startswith("STREAMING-")):
        if body:
            raise _denied("AccessDenied", "an unsigned payload is not accepted: this server "
                                          "speaks plain HTTP, so the body must be signed")
    elif content is not None and not hmac.compare_digest(
            content, hashlib.sha256(body).hexdigest()):
        raise _denied("XAmzContentSHA256Mismatch", "the provided 'x-amz-content-sha256' "
                                                   "header does not match what was computed")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={h: ",".join(received[h]) for h in signed})
    request.context["timestamp"] = amz_date
    signer = S3SigV4Auth(Credentials(key.access_key_id, key.secret), scope[3], scope[2])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        raise _denied("SignatureDoesNotMatch",
                      "the request signature we calculated does not match the signature "
                      "you provided; check your key and signing method")
    return key


__all__ = ["Key", "MAX_SKEW", "load_keys", "verify"]
