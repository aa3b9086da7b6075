"""Addressing objects: from a manifest's bucket name to an obstore store.

- A bucket in the bucket map goes to its URL (`photos=file:///srv/photos`).
- A bucket written as a URL (`file:///srv/photos`, `gs://archive`) is used as it is.
- Any other name is `s3://<name>`, with the usual AWS settings from the environment
  (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
  `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for S3-compatible servers; plain `http://`
  endpoints work).

Stores are built lazily and cached, one per root URL, inside each worker process
(obstore is not fork-safe). Credentials are read from the environment when a store is
built and are never written anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from batchops.model.errors import SpecError
from batchops.storage.config import s3_endpoint_and_region

_LOCAL_SCHEMES = ("file", "memory")
_REMOTE_SCHEMES = ("s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl", "http", "https")


@dataclass(frozen=True, slots=True)
class Location:
    """A store root URL plus a key prefix inside it (`s3://dst/pre` → `s3://dst`, `pre/`)."""

    root: str
    prefix: str = ""
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


def normalise_url(value: str, what: str) -> str:
    """Accept a URL, a bucket ARN or a local path; return a URL (or a bare bucket name)."""
    if value.startswith("arn:aws:s3:::"):
        return "s3://" + value[len("arn:aws:s3:::"):]
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in _LOCAL_SCHEMES + _REMOTE_SCHEMES:
            raise SpecError(f"{what}: unsupported URL scheme {scheme!r} in {value!r}")
        if scheme == "file" and not value.startswith("file:///"):
            raise SpecError(f"{what}: a file URL needs an absolute path, e.g. file:///srv/x")
        return value
    if value.startswith(("/", "./", "../", "~")):
        return "file://" + os.path.abspath(os.path.expanduser(value))
    return value


def split_location(url: str) -> Location:
    """`s3://b/p/q` → Location("s3://b", "p/q/"); `file:///x/y` → Location("file:///x/y")."""
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
    return Location(root, path + "/" if path else "")


class Resolver:
    """Bucket names → Locations → obstore stores (cached per root)."""

    def __init__(self, bucket_map: tuple[tuple[str, str], ...] = (),
                 preset: Mapping[str, Any] | None = None, concurrency: int = 64) -> None:
        self._map = dict(bucket_map)
        self._stores: dict[str, Any] = dict(preset or {})
        self._locations: dict[str, Location] = {}
        self._s3api: Any = None
        self._concurrency = concurrency

    def s3api(self) -> Any:
        """The worker's S3 API client (aiobotocore), for what obstore cannot do."""
        if self._s3api is None:
            from batchops.storage.s3api import S3Api

            self._s3api = S3Api(self._concurrency)
        return self._s3api

    async def aclose(self) -> None:
        if self._s3api is not None:
            await self._s3api.close()

    def location(self, bucket: str) -> Location:
        loc = self._locations.get(bucket)
        if loc is None:
            loc = self._locations[bucket] = self._resolve(bucket)
        return loc

    def _resolve(self, bucket: str) -> Location:
        url = self._map.get(bucket)
        if url is None:
            url = bucket if "://" in bucket else "s3://" + bucket
        elif "://" not in url:
            url = "s3://" + url
        return split_location(url)

    def store(self, loc: Location, create: bool = False) -> Any:
        store = self._stores.get(loc.root)
        if store is None:
            store = build_store(loc.root, create=create)
            self._stores[loc.root] = store
        return store


def s3_bucket(loc: Location) -> str:
    """The bucket name of an S3 location (for the S3 API client)."""
    return loc.root.split("://", 1)[1]


def is_s3(loc: Location) -> bool:
    return loc.scheme in ("s3", "s3a")


def _s3_kwargs() -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        # The scheduler owns retries (with the report's view of every attempt).
        "retry_config": {"max_retries": 0, "retry_timeout": timedelta(seconds=60)},
        "client_options": {"connect_timeout": timedelta(seconds=10),
                           "timeout": timedelta(seconds=300)},
    }
    endpoint, region = s3_endpoint_and_region()
    if endpoint:
        kwargs["endpoint"] = endpoint
        if endpoint.startswith("http://"):
            kwargs["client_options"]["allow_http"] = True
    if region:
        kwargs["region"] = region
    return kwargs


def build_store(root: str, create: bool = False) -> Any:
    """Build the obstore store for a root URL."""
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
    if scheme in ("s3", "s3a"):
        return S3Store(urlsplit(root).netloc, **_s3_kwargs())
    return from_url(root, retry_config={"max_retries": 0,
                                        "retry_timeout": timedelta(seconds=60)})


def supports_attributes(loc: Location) -> bool:
    """Whether a store keeps content type and user metadata on put."""
    return loc.scheme not in ("file",)


