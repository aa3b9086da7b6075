"""The S3 API client for what obstore has no call for: tagging an existing object,
ACLs, restore, object lock, copies with directives, multipart copy, versioned deletes.

One aiobotocore client per worker, created on first use on the worker's own event
loop, with the same credentials (the environment) and endpoint/region
(`stores.s3_endpoint_and_region`) as obstore. botocore signs requests; botocore's own
retries are off because the scheduler owns retries.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from .stores import s3_endpoint_and_region


class S3Api:
    def __init__(self, concurrency: int = 64) -> None:
        self._concurrency = concurrency
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lambda: Any = None

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
