"""The S3 API client for what obstore has no call for: tagging an existing object,
ACLs, restore, object lock, copies with directives, multipart copy, versioned deletes.

One aiobotocore client per worker, created on first use on the worker's own event
loop, with the same credentials (the environment) and endpoint/region
(`stores.s3_endpoint_and_region`) as obstore. botocore signs requests; botocore's own
retries are off because the scheduler owns retries.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import MappingProxyType
from typing import Any

from batchops.storage.config import s3_endpoint_and_region


class S3Api:
    def __init__(self, concurrency: int = 64) -> None:
        self._concurrency = concurrency
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lambda: Any = None
        self._copier: CrtCopier | None = None

    def copier(self) -> CrtCopier:
        """The awscrt client for plain server-side copies (created on first use)."""
        if self._copier is None:
            self._copier = CrtCopier()
        return self._copier

    async def _make(self, service: str) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        if self._stack is None:
            self._stack = AsyncExitStack()
        endpoint, region = s3_endpoint_and_region()
        config = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"},
                           max_pool_connections=max(10, self._concurrency),
                           connect_timeout=10, read_timeout=300)
        kwargs: dict[str, Any] = {"config": config, "region_name": region or "us-east-1"}
        if endpoint and service == "s3":
            kwargs["endpoint_url"] = endpoint
        return await self._stack.enter_async_context(
            get_session().create_client(service, **kwargs))

    async def client(self) -> Any:
        if self._client is None:
            self._client = await self._make("s3")
        return self._client

    async def lambda_client(self) -> Any:
        if self._lambda is None:
            self._lambda = await self._make("lambda")
        return self._lambda

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = self._lambda = None


# CRT reports some S3 answers as named errors, without the status or body: S3's own
# status, code and message for them.
_CRT_STATUS = MappingProxyType({
    "AWS_ERROR_S3_SLOW_DOWN": (503, "SlowDown", "Please reduce your request rate."),
    "AWS_ERROR_S3_INTERNAL_ERROR": (500, "InternalError",
                                    "We encountered an internal error. Please try again."),
    "AWS_ERROR_S3_REQUEST_TIME_TOO_SKEWED": (
        403, "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large."),
})


class CrtS3Error(Exception):
    """An S3 error answered to a request sent through awscrt; shaped like botocore's
    ClientError (`.response`) so errors.classify maps both the same way."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        import re

        text = body.decode(errors="replace")
        code = re.search(r"<Code>([^<]+)</Code>", text)
        message = re.search(r"<Message>([^<]*)</Message>", text)
        self.response = {
            "Error": {"Code": code.group(1) if code else f"HTTP{status}",
                      "Message": message.group(1) if message else f"HTTP {status}"},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers},
        }
        super().__init__(f"{self.response['Error']['Code']}: {self.response['Error']['Message']}")


class CrtConnectionError(ConnectionError):
    """A request sent through awscrt got no answer; `crt_name` is awscrt's error name
    (AWS_IO_SOCKET_CONNECTION_REFUSED, AWS_IO_DNS_INVALID_NAME, ...), by which
    storage.outcomes.classify tells an unreachable endpoint from a dropped connection."""

    def __init__(self, crt_name: str, message: str, endpoint: str = "") -> None:
        super().__init__(f"{crt_name}: {message}")
        self.crt_name = crt_name
        self.endpoint = endpoint


class CrtCopier:
    """Server-side CopyObject between S3 buckets through awscrt (AWS's C runtime: it
    signs and sends; nothing here signs). Measured here at about 0.4 ms of CPU per copy
    against about 2.3 ms for the same call through aiobotocore (bench/RESULTS.md).

    One per worker; requests complete on CRT threads and resolve asyncio futures on the
    worker's loop. CRT's own retries are off: the scheduler owns retries.
    """

    def __init__(self) -> None:
        from urllib.parse import urlsplit

        from awscrt import auth, io, s3

        endpoint, region = s3_endpoint_and_region()
        self._region = region or "us-east-1"
        self._endpoint_host = urlsplit(endpoint).netloc if endpoint else None
        self._endpoint = endpoint or ""
        tls = s3.S3RequestTlsMode.DISABLED if endpoint and endpoint.startswith("http://") \
            else s3.S3RequestTlsMode.ENABLED
        elg = io.EventLoopGroup(1)
        bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
        self._s3 = s3
        self._client = s3.S3Client(
            bootstrap=bootstrap, region=self._region, tls_mode=tls,
            credential_provider=auth.AwsCredentialsProvider.new_default_chain(bootstrap),
            retry_config=s3.S3RetryConfig(retry_mode=s3.S3RetryMode.NONE))

    def _target(self, bucket: str, key: str) -> tuple[str, str]:
        from urllib.parse import quote

        path = quote(key, safe="/~")
        if self._endpoint_host:
            return self._endpoint_host, f"/{bucket}/{path}"
        return f"{bucket}.s3.{self._region}.amazonaws.com", f"/{path}"

    async def copy(self, src_bucket: str, src_key: str, version: str | None, dst_bucket: str,
                   dst_key: str) -> None:
        import asyncio
        from urllib.parse import quote

        from awscrt import http

        host, path = self._target(dst_bucket, dst_key)
        source = f"/{src_bucket}/{quote(src_key, safe='/~')}"
        if version:
            source += f"?versionId={quote(version, safe='')}"
        request = http.HttpRequest("PUT", path, http.HttpHeaders([
            ("Host", host), ("x-amz-copy-source", source), ("Content-Length", "0")]))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        state: dict[str, Any] = {"body": bytearray(), "headers": {}}

        def on_headers(status_code: int, headers: list[tuple[str, str]], **kw: Any) -> None:
            state["status"] = status_code
            state["headers"] = {k.lower(): v for k, v in headers}

        def on_body(chunk: bytes, **kw: Any) -> None:
            state["body"] += chunk

        def settle(error: BaseException | None) -> None:
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

        def on_done(error: BaseException | None = None, status_code: int | None = None,
                    error_body: bytes | None = None,
                    error_headers: list[tuple[str, str]] | None = None, **kw: Any) -> None:
            if error_headers:  # (Retry-After among them)
                state["headers"] = {k.lower(): v for k, v in error_headers}
            status = status_code or state.get("status") or 0
            body = bytes(error_body or state["body"])
            name = getattr(error, "name", "")
            if error is not None and not status and name in _CRT_STATUS:
                status, code, text = _CRT_STATUS[name]
                body = f"<Error><Code>{code}</Code><Message>{text}</Message></Error>".encode()
            if error is not None and not status:
                result: BaseException | None = CrtConnectionError(
                    name or type(error).__name__, str(error), self._endpoint)
            elif status >= 300 or b"<Error>" in body:
                # CopyObject can fail after a 200: the error is then in the body.
                result = CrtS3Error(status if status >= 300 else 500, body, state["headers"])
            else:
                result = None
            loop.call_soon_threadsafe(settle, result)

        self._client.make_request(type=self._s3.S3RequestType.DEFAULT, request=request,
                                  operation_name="CopyObject", on_headers=on_headers,
                                  on_body=on_body, on_done=on_done)
        await future
