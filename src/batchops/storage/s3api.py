"""The S3 API client for what obstore has no call for: tagging an existing object,
ACLs, restore, object lock, copies with directives, multipart copy, versioned deletes.

One aiobotocore client per worker and AWS settings, created on first use on the
worker's own event loop, signing with the same credentials object, region and endpoint
as obstore (storage/aws.py). botocore signs requests; botocore's own retries are off
because the scheduler owns retries. Where awscrt measures cheaper per task it carries
the call instead, signing with the same credentials: plain server-side copies
(`CrtCopier`) and tagging, both through `CrtRequests` (awscrt's signer and HTTP client
on kept-alive connections).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from batchops.storage.aws import AwsContext


class S3Api:
    def __init__(self, ctx: AwsContext, concurrency: int = 64) -> None:
        self._ctx = ctx
        self._concurrency = concurrency
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lambda: dict[str, Any] = {}
        self._copier: CrtCopier | None = None
        self._requests: CrtRequests | None = None

    def copier(self) -> CrtCopier:
        """The awscrt client for plain server-side copies (created on first use)."""
        if self._copier is None:
            self._copier = CrtCopier(self._ctx, self.requests())
        return self._copier

    def requests(self) -> CrtRequests:
        """The awscrt signer and HTTP client for small requests (tagging), created on
        first use."""
        if self._requests is None:
            self._requests = CrtRequests(self._ctx, self._concurrency)
        return self._requests

    async def _make(self, service: str, region: str) -> Any:
        from aiobotocore.config import AioConfig

        if self._stack is None:
            self._stack = AsyncExitStack()
        config = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"},
                           max_pool_connections=max(10, self._concurrency),
                           connect_timeout=10, read_timeout=300,
                           # S3's endpoint is the context's; Lambda's is its own or AWS's,
                           # never AWS_ENDPOINT_URL (which names the S3-compatible store).
                           ignore_configured_endpoint_urls=True)
        kwargs: dict[str, Any] = {"config": config, "region_name": region}
        endpoint = self._ctx.endpoint_url if service == "s3" else self._ctx.lambda_endpoint()
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        return await self._stack.enter_async_context(
            self._ctx.aio_session().create_client(service, **kwargs))

    async def client(self) -> Any:
        if self._client is None:
            self._client = await self._make("s3", self._ctx.region)
        return self._client

    async def lambda_client(self, region: str) -> Any:
        """A Lambda client for the function's region (from its ARN), at AWS's endpoint."""
        client = self._lambda.get(region)
        if client is None:
            client = self._lambda[region] = await self._make("lambda", region)
        return client

    async def close(self) -> None:
        if self._requests is not None:
            self._requests.close()
            self._requests = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None
            self._lambda = {}


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
    """Server-side CopyObject between S3 buckets through awscrt (`CrtRequests`: awscrt
    signs and sends, on kept-alive connections; nothing here signs). Measured in
    bench/s3_cpu.py against aiobotocore's copy_object (about 2.3 ms of CPU per copy
    through aiobotocore, bench/RESULTS.md) and awscrt's own S3 client, which cost more
    per copy than the plain HTTP client.

    One per worker; the scheduler owns retries.
    """

    def __init__(self, ctx: AwsContext, requests: CrtRequests | None = None) -> None:
        self._requests = requests if requests is not None else CrtRequests(ctx)

    async def copy(self, src_bucket: str, src_key: str, version: str | None, dst_bucket: str,
                   dst_key: str) -> None:
        from urllib.parse import quote

        source = f"/{src_bucket}/{quote(src_key, safe='/~')}"
        if version:
            source += f"?versionId={quote(version, safe='')}"
        _, body = await self._requests.send("PUT", dst_bucket, dst_key, "",
                                            headers=[("x-amz-copy-source", source)])
        if b"<Error>" in body:  # CopyObject can fail after a 200: the error is in the body
            raise CrtS3Error(500, body, {})


class CrtRequests:
    """Small S3 requests (tagging, CopyObject) signed and sent by awscrt: its SigV4 signer
    (`awscrt.auth.aws_sign_request`, in C) and its HTTP/1.1 client on connections kept
    alive between requests (a pool per endpoint host). Nothing here signs; the body of
    a request is built once per job (from botocore's serializer, `tagging_body`) and
    only the object's path changes per task. Measured in bench/s3_cpu.py against
    aiobotocore's put_object_tagging, whose Python serialisation and signing cost most
    of its CPU per task.

    One per worker and AWS settings; requests complete on one CRT thread and resolve
    asyncio futures on the worker's loop. Errors are raised as `CrtS3Error` (an S3
    answer) and `CrtConnectionError` (no answer; awscrt's error name), which
    storage.outcomes.classify maps like botocore's.
    """

    def __init__(self, ctx: AwsContext, concurrency: int = 64) -> None:
        from awscrt import auth, io

        self._ctx = ctx
        self._endpoint = ctx.endpoint_url or ""
        self._limit = max(1, concurrency)
        elg = io.EventLoopGroup(1)
        self._bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
        self._socket = io.SocketOptions()
        self._buckets: dict[str, tuple[_Pool, str]] = {}
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._signing: dict[bytes, Any] = {}
        self._base: Any = None
        if ctx.credentials() is not None:
            self._base = auth.AwsSigningConfig(
                algorithm=auth.AwsSigningAlgorithm.V4,
                signature_type=auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
                credentials_provider=ctx.crt_credentials_provider(), region=ctx.region,
                service="s3", use_double_uri_encode=False, should_normalize_uri_path=False,
                signed_body_header_type=auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256)

    def tagging_body(self, tag_set: list[dict[str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
        """PutObjectTagging's XML body and its checksum header, as botocore's serializer
        builds them (once per job)."""
        import base64
        import hashlib

        from botocore.serialize import create_serializer

        model = self._ctx.session.get_service_model("s3").operation_model("PutObjectTagging")
        request = create_serializer("rest-xml").serialize_to_request(
            {"Bucket": "b", "Key": "k", "Tagging": {"TagSet": tag_set}}, model)
        body = bytes(request["body"])
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 - S3's
        return body, [("Content-MD5", md5), ("Content-Type", "application/xml")]

    def _target(self, bucket: str) -> tuple[_Pool, str]:
        where = self._buckets.get(bucket)
        if where is None:
            scheme, host, prefix = self._ctx.bucket_endpoint(bucket)
            pool = self._pools.get((scheme, host))
            if pool is None:
                pool = self._pools[(scheme, host)] = _Pool(
                    scheme, host, self._bootstrap, self._socket, self._limit, self._endpoint)
            where = self._buckets[bucket] = (pool, prefix)
        return where

    def _signing_for(self, body: bytes) -> Any:
        # Keyed by the body itself: a job sends the same bytes object every time, whose
        # hash Python keeps, so the SHA-256 is computed once per body, not per request.
        config = self._signing.get(body)
        if config is None:
            import hashlib

            if len(self._signing) > 16:
                self._signing.clear()
            config = self._signing[body] = self._base.replace(
                signed_body_value=hashlib.sha256(body).hexdigest())
        return config

    async def send(self, method: str, bucket: str, key: str, query: str, body: bytes = b"",
                   headers: list[tuple[str, str]] | None = None) -> tuple[int, bytes]:
        """Send one signed request for s3://bucket/key (`query`: `tagging`,
        `tagging&versionId=...`, or empty); return (status, body) of a 2xx answer, raise
        otherwise."""
        import asyncio
        from io import BytesIO
        from urllib.parse import quote

        from awscrt import auth, http

        pool, prefix = self._target(bucket)
        path = f"{prefix}/{quote(key, safe='/~')}" + (f"?{query}" if query else "")
        fields = [("Host", pool.host), *(headers or ()), ("Content-Length", str(len(body)))]
        request = http.HttpRequest(method, path, http.HttpHeaders(fields),
                                   BytesIO(body) if body else None)
        if self._base is not None:
            signed = auth.aws_sign_request(request, self._signing_for(body))
            try:
                if not signed.done():
                    await asyncio.wrap_future(signed)
                signed.result()
            except Exception as exc:  # noqa: BLE001 - awscrt's error, by its name
                raise _crt_error(exc, self._endpoint) from None
        return await pool.send(request)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._buckets.clear()


def _crt_error(exc: BaseException, endpoint: str) -> CrtConnectionError:
    name = getattr(exc, "name", "") or type(exc).__name__
    return CrtConnectionError(name, str(exc), endpoint)


class _Pool:
    """Kept-alive awscrt HTTP/1.1 connections to one host, at most `limit` at once."""

    def __init__(self, scheme: str, host: str, bootstrap: Any, socket: Any, limit: int,
                 endpoint: str) -> None:
        from collections import deque

        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        self.host = host
        self._name = name or host
        self._port = int(port) if port else (443 if scheme == "https" else 80)
        self._tls: Any = None
        if scheme == "https":
            from awscrt import io

            self._tls = io.ClientTlsContext(io.TlsContextOptions()).new_connection_options()
            self._tls.set_server_name(self._name)
        self._bootstrap, self._socket = bootstrap, socket
        self._limit, self._endpoint = limit, endpoint
        self._idle: list[Any] = []
        self._open = 0
        self._waiters: deque[Any] = deque()

    async def _acquire(self) -> Any:
        import asyncio

        while self._idle:
            conn = self._idle.pop()
            if conn.is_open():
                return conn
            self._open -= 1
        if self._open >= self._limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            return await waiter  # a connection handed over by _release (or None: make one)
        self._open += 1
        return None

    async def _connect(self) -> Any:
        import asyncio

        from awscrt import http

        try:
            return await asyncio.wrap_future(http.HttpClientConnection.new(
                self._name, self._port, self._bootstrap, self._socket, self._tls))
        except Exception as exc:  # noqa: BLE001 - awscrt's error, by its name
            self._release(None)
            raise _crt_error(exc, self._endpoint) from None

    def _release(self, conn: Any) -> None:
        """Give `conn` (None: a connection slot) to the next waiter, or keep it idle."""
        if conn is not None and not conn.is_open():
            conn = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._open -= 1
        else:
            self._idle.append(conn)

    async def send(self, request: Any) -> tuple[int, bytes]:
        import asyncio

        conn = await self._acquire()
        if conn is None:
            conn = await self._connect()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        state: dict[str, Any] = {"body": bytearray()}

        def on_response(http_stream: Any, status_code: int, headers: Any, **kw: Any) -> None:
            state["status"], state["headers"] = status_code, headers

        def on_body(http_stream: Any, chunk: bytes, **kw: Any) -> None:
            state["body"] += chunk

        def settle(done: Any) -> None:
            if not future.done():
                error = done.exception()
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

        try:
            stream = conn.request(request, on_response, on_body)
            stream.activate()
        except Exception as exc:  # noqa: BLE001 - a connection closed while idle
            self._release(None)
            raise _crt_error(exc, self._endpoint) from None
        stream.completion_future.add_done_callback(
            lambda done: loop.call_soon_threadsafe(settle, done))
        try:
            await future
        except asyncio.CancelledError:
            conn.close()
            self._release(None)
            raise
        except Exception as exc:  # noqa: BLE001 - awscrt's error, by its name
            conn.close()
            self._release(None)
            raise _crt_error(exc, self._endpoint) from None
        self._release(conn)
        status, body = state["status"], bytes(state["body"])
        if status >= 300:
            headers = {k.lower(): v for k, v in state["headers"]}
            raise CrtS3Error(status, body, headers)
        return status, body

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
