"""Addressing objects: from a manifest's bucket name to an obstore store.

- A bucket in the bucket map goes to its URL (`photos=file:///srv/photos`).
- A bucket written as a URL (`file:///srv/photos`, `gs://archive`) is used as it is.
- Any other name is `s3://<name>`.
- An S3 URL may carry its own AWS settings in its query:
  `s3://photos?profile=minio&region=eu-west-1&endpoint_url=http://127.0.0.1:9000`.
  Names only: a URL that carries keys (a user and password, a SAS token, an
  `access_key_id=`) is refused, since URLs are stored in job.json. Buckets without
  settings of their own use the job's (`--profile`, `--region`, `--endpoint-url`), and
  then whatever botocore resolves from the environment and ~/.aws (storage/aws.py).

Stores are built lazily and cached, one per root URL and settings, inside each worker
process (obstore is not fork-safe).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from batchops.model.arns import s3_arn_to_url
from batchops.model.errors import SpecError
from batchops.model.spec import AwsSettings
from batchops.storage.aws import AwsContext, AwsContexts, check_endpoint

_LOCAL_SCHEMES = ("file", "memory")
_REMOTE_SCHEMES = ("s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl", "http", "https")


@dataclass(frozen=True, slots=True)
class Location:
    """A store root URL plus a key prefix inside it (`s3://dst/pre` → `s3://dst`, `pre/`)."""

    root: str
    prefix: str = ""
    #: The bucket's own AWS settings (from its URL's query); None: the job's.
    aws: AwsSettings | None = None
    # Derived once (they are read for every task): the URL scheme, the folder of a
    # file:// root (else None), and whether calls are cheap enough for the sync path
    # (local folder or memory).
    scheme: str = field(init=False, repr=False, compare=False)
    local_path: str | None = field(init=False, repr=False, compare=False)
    in_process: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scheme = self.root.split("://", 1)[0]
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "local_path",
                           unquote(self.root[len("file://"):]) if scheme == "file" else None)
        object.__setattr__(self, "in_process", scheme in _LOCAL_SCHEMES)

    def key(self, key: str) -> str:
        return self.prefix + key


def parse_bucket_map(items: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Parse repeated `NAME=URL` flags."""
    out = []
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise SpecError(f"--bucket-map {item!r}: expected NAME=URL, e.g. photos=file:///srv/x")
        out.append((name, normalise_url(url, f"--bucket-map {name}")))
    return tuple(out)


_SETTING_NAMES = MappingProxyType({"profile": "profile", "region": "region",
                                   "endpoint_url": "endpoint_url", "endpoint": "endpoint_url"})
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def normalise_url(value: str, what: str) -> str:
    """Accept a URL, a bucket ARN or a local path; return a URL (or a bare bucket name).

    Refuses, in one sentence naming `what`: an unknown scheme, a URL that carries
    secrets, an unknown setting in an S3 URL's query, a bucket name S3 cannot have.
    """
    if value.startswith("arn:"):
        return s3_arn_to_url(value, what)
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in _LOCAL_SCHEMES + _REMOTE_SCHEMES:
            raise SpecError(f"{what}: unsupported URL scheme {scheme!r} in {value!r}")
        if scheme == "file" and not value.startswith("file:///"):
            raise SpecError(f"{what}: a file URL needs an absolute path, e.g. file:///srv/x")
        if scheme not in _LOCAL_SCHEMES:
            _check_remote(value, scheme, what)
        return value
    if value.startswith(("/", "./", "../", "~")):
        return "file://" + os.path.abspath(os.path.expanduser(value))
    return value


def _check_bucket_name(bucket: str, what: str) -> None:
    if not bucket or not set(bucket) <= _BUCKET_CHARS or len(bucket) > 255:
        raise SpecError(f"{what + ': ' if what else ''}{bucket!r} is not a bucket name "
                        "(letters, digits, '.', '-' and '_' only)")


def _check_remote(url: str, scheme: str, what: str) -> None:
    """No secrets in a URL (it is stored in job.json); an S3 URL's query holds only
    settings by name."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise SpecError(f"{what}: {url!r} is not a valid URL") from None
    if parts.username or parts.password:
        raise SpecError(f"{what}: a user or password in a URL would be stored with the job; "
                        "give credentials through a profile (?profile=NAME) or the "
                        "environment")
    if scheme in ("s3", "s3a"):
        _check_bucket_name(parts.netloc, what)
        aws_settings(parts.query, what)
    elif parts.query:
        raise SpecError(f"{what}: a query string in a {scheme}:// URL is not taken (a SAS "
                        "token or key there would be stored with the job); give that "
                        "store's credentials through its environment variables")


def aws_settings(query: str, what: str) -> AwsSettings | None:
    """The AWS settings in an S3 URL's query (`profile`, `region`, `endpoint_url`)."""
    if not query:
        return None
    found: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        field_name = _SETTING_NAMES.get(name)
        if field_name is None:
            raise SpecError(
                f"{what}: {name!r} is not a setting an S3 URL takes (profile, region, "
                "endpoint_url); keys and secrets go in a profile of ~/.aws/config, "
                "never in a URL")
        if not value:
            raise SpecError(f"{what}: {name}= needs a value")
        found[field_name] = value
    if "endpoint_url" in found:
        try:
            check_endpoint(found["endpoint_url"], what)
        except Exception as exc:  # noqa: BLE001 - one sentence with the flag
            raise SpecError(str(exc)) from None
    return AwsSettings(**found)


def split_location(url: str) -> Location:
    """`s3://b/p/q` → Location("s3://b", "p/q/"); `file:///x/y` → Location("file:///x/y");
    `s3://b/p?profile=x` → Location("s3://b", "p/", AwsSettings(profile="x"))."""
    scheme = url.split("://", 1)[0]
    if scheme in _LOCAL_SCHEMES:
        return Location(url.rstrip("/") if len(url) > len(scheme) + 4 else url)
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.strip("/")
    if scheme in ("az", "azure", "abfs", "abfss", "adl") and "/" in path and not parts.username:
        # az://account/container/prefix: the container is part of the root.
        container, _, path = path.partition("/")
        root = f"{root}/{container}"
    aws = aws_settings(parts.query, url) if scheme in ("s3", "s3a") else None
    return Location(root, path + "/" if path else "", aws)


class Resolver:
    """Bucket names → Locations → obstore stores (cached per root)."""

    def __init__(self, bucket_map: tuple[tuple[str, str], ...] = (),
                 preset: Mapping[str, Any] | None = None, concurrency: int = 64,
                 aws: AwsSettings | None = None) -> None:
        self._map = dict(bucket_map)
        self._stores: dict[Any, Any] = dict(preset or {})
        self._locations: dict[str, Location] = {}
        self._s3api: dict[AwsSettings, Any] = {}
        self._concurrency = concurrency
        aws = aws or AwsSettings()
        self.aws = AwsContexts(aws, _origin(aws))

    def context(self, loc: Location | None) -> AwsContext:
        """The resolved AWS settings of an S3 location (its own, else the job's)."""
        if loc is None or loc.aws is None:
            return self.aws.get(None)
        return self.aws.get(loc.aws, f"the settings of {loc.root}")

    def s3api(self, loc: Location | None) -> Any:
        """The AWS API clients (aiobotocore) for `loc`'s settings (None: the job's), for
        what obstore cannot do; one per settings in this process."""
        ctx = self.context(loc)
        api = self._s3api.get(ctx.settings)
        if api is None:
            from batchops.storage.s3api import S3Api

            api = self._s3api[ctx.settings] = S3Api(ctx, self._concurrency)
        return api

    def same_account(self, a: Location, b: Location) -> bool:
        """Whether a server-side copy from `a` to `b` can work: both S3, signed by the same
        settings (one endpoint, one set of credentials)."""
        return is_s3(a) and is_s3(b) and self.context(a).settings == self.context(b).settings

    async def aclose(self) -> None:
        for api in self._s3api.values():
            await api.close()

    def location(self, bucket: str) -> Location:
        loc = self._locations.get(bucket)
        if loc is None:
            loc = self._locations[bucket] = self._resolve(bucket)
        return loc

    def _resolve(self, bucket: str) -> Location:
        url = self._map.get(bucket)
        if url is None:
            if "://" not in bucket:
                _check_bucket_name(bucket, "")
            url = bucket if "://" in bucket else "s3://" + bucket
        elif "://" not in url:
            url = "s3://" + url
        return split_location(url)

    def store(self, loc: Location, create: bool = False) -> Any:
        key = (loc.root, loc.aws) if loc.aws else loc.root
        store = self._stores.get(key)
        if store is None:
            ctx = self.context(loc) if is_s3(loc) else None
            store = build_store(loc.root, create=create, aws=ctx)
            self._stores[key] = store
        return store


def _origin(aws: AwsSettings) -> str:
    """How an error names the job's own settings: the flags that set them."""
    flags = [f"{flag} {value}" for flag, value in (
        ("--profile", aws.profile), ("--region", aws.region),
        ("--endpoint-url", aws.endpoint_url)) if value]
    return " ".join(flags)


def s3_bucket(loc: Location) -> str:
    """The bucket name of an S3 location (for the S3 API client)."""
    return loc.root.split("://", 1)[1]


def is_s3(loc: Location) -> bool:
    return loc.scheme in ("s3", "s3a")


def _s3_kwargs(ctx: AwsContext) -> dict[str, Any]:
    kwargs = ctx.obstore_options()
    # The scheduler owns retries (with the report's view of every attempt).
    kwargs["retry_config"] = {"max_retries": 0, "retry_timeout": timedelta(seconds=60)}
    kwargs["client_options"].update({"connect_timeout": timedelta(seconds=10),
                                     "timeout": timedelta(seconds=300)})
    return kwargs


def build_store(root: str, create: bool = False, aws: AwsContext | None = None) -> Any:
    """Build the obstore store for a root URL (an S3 one with `aws`'s settings, else
    the default ones)."""
    from obstore.store import LocalStore, MemoryStore, S3Store, from_url

    scheme = root.split("://", 1)[0]
    if scheme == "memory":
        return MemoryStore()
    if scheme == "file":
        path = unquote(root[len("file://"):])
        if create:
            os.makedirs(path, exist_ok=True)
        elif not os.path.isdir(path):
            raise FileNotFoundError(f"No such folder {path}")
        return LocalStore(path)
    retry: Any = {"max_retries": 0, "retry_timeout": timedelta(seconds=60)}
    if scheme in ("s3", "s3a"):
        # conditional_put: PutMode.Create sends If-None-Match: * (job store markers and
        # leases: first writer wins), an e_tag mode If-Match.
        return S3Store(urlsplit(root).netloc, conditional_put="etag",
                       **_s3_kwargs(aws or AwsContext(AwsSettings())))
    if scheme in ("az", "azure"):
        # az://ACCOUNT/CONTAINER: obstore's from_url would take the account for the
        # container; the rest of the settings come from AZURE_* variables.
        from obstore.store import AzureStore

        parts = urlsplit(root)
        container = parts.path.strip("/")
        if not container:
            raise SpecError(f"{root}: an Azure URL names an account and a container: "
                            "az://ACCOUNT/CONTAINER/prefix")
        return AzureStore(container, account_name=parts.netloc, retry_config=retry)
    return from_url(root, retry_config=retry)


def supports_attributes(loc: Location) -> bool:
    """Whether a store keeps content type and user metadata on put."""
    return loc.scheme not in ("file",)


