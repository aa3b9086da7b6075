"""AWS configuration resolved as aws-cli resolves it, by botocore, once per process.

An `AwsSettings` (a profile name, a region, an endpoint URL: names only) becomes an
`AwsContext`: a botocore session for that profile, its credentials, region and S3
endpoint. botocore does all the resolving (nothing here reads a config file or an
environment variable of its own, but `AWS_REGION`, which aws-cli v2 reads and botocore
does not):

- credentials: environment, `~/.aws/credentials` and `~/.aws/config` (`AWS_PROFILE`,
  `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`), `credential_process`, SSO,
  assume-role profiles, web identity, container and instance metadata;
- region: `--region` or the bucket's `?region=`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the
  profile's `region`;
- endpoint: `--endpoint-url` or the bucket's `?endpoint_url=`, `AWS_ENDPOINT_URL_S3`,
  `AWS_ENDPOINT_URL`, the profile's `services` section and `endpoint_url`.

Every client of one context signs with the same credentials object, refreshed by
botocore when temporary: obstore through its credential-provider hook, aiobotocore
through a credential resolver that hands out that object, awscrt through a delegate
provider. Each process (a worker is a fresh interpreter) resolves once; no key is ever
written anywhere.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from batchops.model.errors import BadInputError
from batchops.model.spec import AwsSettings

#: How long obstore keeps a credential before asking again. botocore refreshes
#: temporary credentials 15 minutes before they expire, so what obstore holds is
#: always valid for at least 10 more minutes.
_OBSTORE_TTL = timedelta(minutes=5)


def _where(settings: AwsSettings, origin: str) -> str:
    if origin:
        return origin
    if settings.profile:
        return f"--profile {settings.profile}"
    if os.environ.get("AWS_PROFILE"):
        return f"AWS_PROFILE={os.environ['AWS_PROFILE']}"
    return "the default AWS configuration"


def _skip_signature() -> bool:
    return os.environ.get("AWS_SKIP_SIGNATURE", "").lower() in ("1", "true")


class AwsContext:
    """One AwsSettings resolved in this process."""

    def __init__(self, settings: AwsSettings, origin: str = "") -> None:
        import botocore.session
        from botocore.exceptions import BotoCoreError

        self.settings = settings
        self.where = _where(settings, origin)
        try:
            session = botocore.session.Session(profile=settings.profile)
            scoped = session.get_scoped_config()  # raises ProfileNotFound
            region = (settings.region or os.environ.get("AWS_REGION")
                      or session.get_config_variable("region"))
            endpoint = settings.endpoint_url or self._configured_endpoint(session, scoped)
        except BotoCoreError as exc:
            raise BadInputError(f"{self.where}: {_sentence(exc)}") from None
        self.session = session
        self.region: str = region or "us-east-1"
        self.endpoint_url: str | None = endpoint or None
        if self.endpoint_url:
            check_endpoint(self.endpoint_url, self.where)
        s3_config = scoped.get("s3")
        self.virtual_hosted = isinstance(s3_config, dict) and \
            s3_config.get("addressing_style") == "virtual"
        self._credentials: Any = None
        self._signer: Any = None

    @property
    def partition(self) -> str:
        """The AWS partition of this context's region (`aws`, `aws-cn`, `aws-us-gov`, ...)
        as botocore maps regions to partitions; `aws` for a region botocore does not
        know (an S3-compatible store's own name)."""
        from botocore.exceptions import UnknownRegionError

        try:
            return str(self.session.get_partition_for_region(self.region))
        except UnknownRegionError:
            return "aws"

    @staticmethod
    def _configured_endpoint(session: Any, scoped: dict[str, Any]) -> str | None:
        """botocore's own lookup of a configured S3 endpoint (environment, `services`
        section, profile), unless `ignore_configured_endpoint_urls` is set."""
        from botocore.configprovider import ConfiguredEndpointProvider

        if session.get_config_variable("ignore_configured_endpoint_urls"):
            return None
        provider = ConfiguredEndpointProvider(full_config=session.full_config,
                                              scoped_config=scoped, client_name="s3")
        return provider.provide()

    # -- credentials ----------------------------------------------------------------------

    def credentials(self) -> Any:
        """botocore's credentials object for this profile (refreshable where temporary),
        or None when unsigned requests were asked for (AWS_SKIP_SIGNATURE)."""
        if self._credentials is None and not _skip_signature():
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                creds = self.session.get_credentials()
            except (BotoCoreError, ClientError) as exc:  # ClientError: STS, SSO portal
                raise BadInputError(f"{self.where}: cannot get AWS credentials: "
                                    f"{_sentence(exc)}") from None
            if creds is None:
                raise BadInputError(
                    f"no AWS credentials for {self.where}: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or name a profile of ~/.aws/config with "
                    "--profile (aws configure, aws sso login)")
            self._credentials = creds
        return self._credentials

    def check_credentials(self) -> None:
        """Resolve now (preflight): a profile with no keys, a credential_process that
        fails or an expired SSO login is one sentence before any task runs."""
        creds = self.credentials()
        if creds is None:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            frozen = creds.get_frozen_credentials()
        except (BotoCoreError, ClientError) as exc:  # ClientError: STS, SSO portal
            raise BadInputError(f"{self.where}: cannot get AWS credentials: "
                                f"{_sentence(exc)}") from None
        if not frozen.access_key or not frozen.secret_key:
            raise BadInputError(f"{self.where}: the AWS credentials have no access key or "
                                "no secret key")

    def lambda_endpoint(self) -> str | None:
        """Lambda's endpoint: one configured for Lambda itself (AWS_ENDPOINT_URL_LAMBDA,
        a `services` section), never the global AWS_ENDPOINT_URL or profile endpoint_url,
        which name the S3-compatible store; else AWS's own."""
        from botocore.configprovider import ConfiguredEndpointProvider

        if self.session.get_config_variable("ignore_configured_endpoint_urls"):
            return None
        scoped = {k: v for k, v in self.session.get_scoped_config().items()
                  if k != "endpoint_url"}  # the profile's global endpoint: not Lambda's
        environ = {k: v for k, v in os.environ.items() if k == "AWS_ENDPOINT_URL_LAMBDA"}
        found = ConfiguredEndpointProvider(full_config=self.session.full_config,
                                           scoped_config=scoped, client_name="lambda",
                                           environ=environ).provide()
        return found or None

    def check_function(self, arn: str, region: str) -> None:
        """GetFunction, before any task runs: a missing function or a refusal is one
        sentence (exit 2)."""
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        self.credentials()  # no credentials: the sentence for that first
        client: Any = self.session.create_client(
            "lambda", region_name=region, endpoint_url=self.lambda_endpoint(),
            config=Config(ignore_configured_endpoint_urls=True,  # type: ignore[call-arg]
                          retries={"total_max_attempts": 2}, connect_timeout=10))
        try:
            client.get_function(FunctionName=arn)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise BadInputError(
                f"FunctionArn {arn}: {error.get('Code', 'error')}: "
                f"{_sentence(Exception(error.get('Message', '')))}") from None
        except BotoCoreError as exc:
            raise BadInputError(f"FunctionArn {arn}: cannot reach Lambda in {region}: "
                                f"{_sentence(exc)}") from None

    # -- clients --------------------------------------------------------------------------

    def obstore_options(self) -> dict[str, Any]:
        """S3Store keyword arguments: region, endpoint and the shared credentials."""
        kwargs: dict[str, Any] = {"region": self.region}
        client: dict[str, Any] = {}
        if self.endpoint_url:
            kwargs["endpoint"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                client["allow_http"] = True
        if self.virtual_hosted:
            kwargs["virtual_hosted_style_request"] = True
        creds = self.credentials()
        if creds is None:
            kwargs["skip_signature"] = True
        else:
            from obstore.auth.boto3 import Boto3CredentialProvider

            kwargs["credential_provider"] = Boto3CredentialProvider(self.session,
                                                                    ttl=_OBSTORE_TTL)
        kwargs["client_options"] = client
        return kwargs

    def aio_session(self) -> Any:
        """An aiobotocore session that signs with this context's credentials object (no
        second resolution: a credential_process or SSO login runs once per process)."""
        from aiobotocore.credentials import AioCredentialResolver
        from aiobotocore.session import AioSession

        session = AioSession(profile=self.settings.profile)
        session.register_component(
            "credential_provider", AioCredentialResolver([_SharedProvider(self.credentials())]))
        return session

    def crt_credentials_provider(self) -> Any:
        """An awscrt provider for botocore's credentials object: static keys as they are
        (no call back per request), temporary ones through a delegate that asks botocore
        (which refreshes them)."""
        from awscrt import auth
        from botocore.credentials import RefreshableCredentials

        creds = self.credentials()
        if creds is None:
            return auth.AwsCredentialsProvider.new_static("", "")
        if not isinstance(creds, RefreshableCredentials):
            frozen = creds.get_frozen_credentials()
            return auth.AwsCredentialsProvider.new_static(frozen.access_key, frozen.secret_key,
                                                          frozen.token)

        def get() -> Any:
            frozen = creds.get_frozen_credentials()
            return auth.AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)

        return auth.AwsCredentialsProvider.new_delegate(get)

    def bucket_endpoint(self, bucket: str) -> tuple[str, str, str]:
        """(scheme, host, path prefix) of `bucket`, from botocore's endpoint rules:
        virtual host or path style, FIPS, dual-stack and partitions as botocore decides
        them. A HeadObject is prepared once per bucket and stopped before it is sent."""
        from urllib.parse import urlsplit

        if self._signer is None:
            from botocore import UNSIGNED
            from botocore.config import Config

            self._signer = self.session.create_client(
                "s3", region_name=self.region, endpoint_url=self.settings.endpoint_url,
                config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))

            def stop(request: Any, **kwargs: Any) -> None:
                raise _Resolved(request.url)

            self._signer.meta.events.register("before-send.s3", stop)
        try:
            self._signer.head_object(Bucket=bucket, Key="k")
            raise RuntimeError("botocore sent a request it was asked to stop")
        except _Resolved as resolved:
            parts = urlsplit(resolved.url)
        return parts.scheme, parts.netloc, parts.path[:-2]  # the path ends in "/k"


class _Resolved(Exception):  # noqa: N818 - not an error: how a prepared request is stopped
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class _SharedProvider:
    """An aiobotocore credential provider that hands out one botocore credentials
    object (aiobotocore awaits `get_frozen_credentials`; botocore refreshes it)."""

    METHOD = "batchops-shared"
    CANONICAL_NAME = "batchops-shared"

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    async def load(self) -> Any:
        from aiobotocore.credentials import AioCredentials

        if self._credentials is None:
            return None
        shared = self._credentials

        class Shared(AioCredentials):
            async def get_frozen_credentials(self) -> Any:
                return shared.get_frozen_credentials()

        frozen = shared.get_frozen_credentials()
        return Shared(frozen.access_key, frozen.secret_key, frozen.token,
                      method=self.METHOD)


def check_endpoint(url: str, where: str) -> None:
    """An endpoint URL must be http(s)://host[:port] with no user or password in it."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadInputError(f"{where}: endpoint URL {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(f"{where}: endpoint URL {url!r} needs a scheme and a host, "
                            "e.g. https://s3.example.com or http://127.0.0.1:9000")
    if parts.username or parts.password:
        raise BadInputError(f"{where}: endpoint URL {parts.hostname}: a user or password in "
                            "a URL would be stored with the job; put keys in a profile")
    del port


def _sentence(exc: BaseException) -> str:
    from batchops.storage.outcomes import scrub

    text = str(exc).strip().rstrip(".")
    return scrub(text[:1].lower() + text[1:]) if text else type(exc).__name__


class AwsContexts:
    """This process's contexts, one per AwsSettings (held by a Resolver)."""

    def __init__(self, default: AwsSettings, origin: str = "") -> None:
        self.default = default
        self._origin = origin
        self._contexts: dict[AwsSettings, AwsContext] = {}

    def get(self, settings: AwsSettings | None, origin: str = "") -> AwsContext:
        key = self.default if settings is None else settings
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = AwsContext(
                key, origin if settings is not None else self._origin)
        return ctx
