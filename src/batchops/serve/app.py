"""The server's HTTP side: one routing table, and the s3control jobs API on it.

`routes()` is the table. The API's routes come from botocore's model (each operation's
method and requestUri, e.g. GET /v20180820/jobs/{id}); the console and /metrics add
theirs there. Starlette routes the requests, uvicorn serves them (serve/server.py).

Host names do not matter: botocore sends `<account>.<endpoint host>` as the host, and
the server routes by path alone and takes the account from `x-amz-account-id` (signed,
and bound to the caller's key under SigV4). So a client reaches it either through a
wildcard DNS name that resolves to the server (`*.jobs.example.com`), or by using the
server as its HTTP proxy (`Config(proxies={"http": "http://HOST:PORT"})`), which needs
no DNS at all: the server accepts absolute-form request targets
(`GET http://123456789012.any-name/v20180820/jobs HTTP/1.1`).
"""

from __future__ import annotations

import sys
import traceback
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from batchops.model.errors import BatchopsError
from batchops.serve.api import Jobs, api_error
from batchops.serve.auth import Key, verify
from batchops.serve.consoleauth import CONSOLE_ACCOUNT_HEADER
from batchops.serve.restxml import (
    ApiError,
    Operation,
    build_response,
    error_body,
    parse_request,
)

ACCOUNT_HEADER = "x-amz-account-id"


class AbsoluteForm:
    """ASGI middleware: a request whose target is absolute (`GET http://host/path`, as
    an HTTP proxy receives it) is routed by its path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(("http://", "https://")):
            raw = scope.get("raw_path") or scope["path"].encode()
            parts = urlsplit(raw.decode("latin-1"))
            scope = dict(scope, raw_path=(parts.path or "/").encode("latin-1"),
                         path=unquote(parts.path) or "/")
        await self.app(scope, receive, send)


class Service:
    """The API of one server: the model's operations, the jobs, who may call."""

    def __init__(self, operations: tuple[Operation, ...], jobs: Jobs,
                 keys: Mapping[str, Key] | None) -> None:
        self.operations = operations
        self.jobs = jobs
        self.keys = keys  # None: --auth none (loopback only)
        self.handlers = jobs.handlers()

    def account(self, method: str, url: str, headers: list[tuple[str, str]],
                body: bytes) -> str:
        """The caller's account: the signing key's (SigV4), or x-amz-account-id as given
        (--auth none)."""
        given = next((v for k, v in headers if k.lower() == ACCOUNT_HEADER), "")
        if self.keys is None:
            if not given:
                raise ApiError("InvalidRequest", "the x-amz-account-id header is missing")
            return given
        # Signed in to the console: CsrfGuard (serve/consoleauth.py) vouches for the
        # session's account, and strips this header from whatever arrives.
        console = next((v for k, v in headers if k.lower() == CONSOLE_ACCOUNT_HEADER), None)
        if console:
            if given and given != console:
                raise ApiError("AccessDenied", f"the console's session may not act for "
                                               f"account {given}", 403)
            return console
        key = verify(self.keys, method, url, headers, body)
        if given and given != key.account_id:
            raise ApiError("AccessDenied", f"access key {key.access_key_id} may not act for "
                                           f"account {given}", 403)
        return key.account_id

    def handle(self, op: Operation, method: str, url: str, headers: list[tuple[str, str]],
               path_params: Mapping[str, str], query: list[tuple[str, str]],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One API request: (status, headers, body), errors in Amazon's XML shape."""
        request_id = uuid.uuid4().hex[:16].upper()
        ids = {"x-amz-request-id": request_id, "x-amz-id-2": request_id}
        try:
            try:
                account = self.account(method, url, headers, body)
                params = parse_request(op, path_params, query, dict(headers), body)
                result = self.handlers[op.name](params, account)
            except BatchopsError as exc:
                raise api_error(op, exc) from None
            status, out_headers, content = build_response(op, result)
            return status, {**out_headers, **ids}, content
        except ApiError as exc:
            return exc.status, {"Content-Type": "application/xml", **ids}, \
                error_body(exc.code, exc.message, request_id)
        except Exception as exc:  # noqa: BLE001 - a bug answers 500, and says so on stderr
            traceback.print_exc(file=sys.stderr)
            return 500, {"Content-Type": "application/xml", **ids}, \
                error_body(op.error_code("InternalServiceException"),
                           f"internal error ({type(exc).__name__})", request_id)

    def endpoint(self, op: Operation) -> Any:
        """The Starlette endpoint of one operation."""

        async def call(request: Request) -> Response:
            body = await request.body()
            raw_path = request.scope.get("raw_path", request.url.path.encode()).decode(
                "latin-1")
            query = request.scope.get("query_string", b"").decode("latin-1")
            url = f"http://{request.headers.get('host', 'localhost')}{raw_path}" + \
                (f"?{query}" if query else "")
            status, headers, content = await run_in_threadpool(
                self.handle, op, request.method, url, list(request.headers.items()),
                request.path_params, parse_qsl(query, keep_blank_values=True), body)
            return Response(content, status, headers=headers)

        return call


def api_routes(service: Service) -> list[BaseRoute]:
    """One route per operation of the model: its method and requestUri; then, under the
    API's prefix, an XML error for any other request (a client's parser reads it)."""
    table: list[BaseRoute] = [Route(op.path, service.endpoint(op), methods=[op.method],
                                    name=op.name) for op in service.operations]
    prefix = "/" + service.operations[0].path.strip("/").split("/")[0]
    served = ", ".join(f"{op.method} {op.path}" for op in service.operations)

    async def unknown(request: Request) -> Response:
        message = (f"no s3control jobs operation is {request.method} {request.url.path}; "
                   f"this server serves {served}")
        return Response(error_body("NotFound", message, uuid.uuid4().hex[:16].upper()), 404,
                        media_type="application/xml")

    table.append(Route(prefix + "/{rest:path}", unknown, methods=[
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False))
    return table


def routes(service: Service) -> list[BaseRoute]:
    """The server's routing table. Each front of the server adds its routes here: the
    s3control API, the console (serve/console.py), /metrics (serve/metrics.py)."""
    return [*api_routes(service)]


def build_app(service: Service) -> ASGIApp:
    """The ASGI application uvicorn serves."""
    from batchops.serve.console import Console, console_routes
    from batchops.serve.consoleauth import ConsoleAuth, CsrfGuard
    from batchops.serve.metrics import metrics_registry, metrics_routes

    index, home = service.jobs.index, service.jobs.home
    auth = ConsoleAuth(service.keys)  # --auth sigv4: the console signs in with a key
    console = Console(home, auth, jobs=lambda: [(e.account, e.listed) for e in index.entries()])
    registry = metrics_registry(home, ids=lambda: [e.job_id for e in index.entries()])
    app = Starlette(routes=[*routes(service), *metrics_routes(registry),
                            *console_routes(console)])
    return AbsoluteForm(CsrfGuard(app, auth))


__all__ = ["AbsoluteForm", "Service", "api_routes", "build_app", "routes"]
