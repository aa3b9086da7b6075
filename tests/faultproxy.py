"""A fault-injecting HTTP/1.1 reverse proxy for tests (stdlib only: asyncio streams).

`FaultProxy` listens on 127.0.0.1 (a free port) and forwards every request to one
plain-http loopback upstream (the moto server the fixtures start). Clients may keep
their connections alive (obstore pools them); each request gets a fresh upstream
connection, the full upstream response is read, then written back to the client.

Faults, drawn from a seeded `random.Random` for every request whose method is eligible:
- `slowdown`: 503 SlowDown with `Retry-After: 1` and S3's XML error body;
- `internal_error`: 500 InternalError with an XML body;
- `reset`: the client connection is reset (SO_LINGER 0) after the request head is read,
  with no response;
- `truncate`: the request is forwarded, then the response is cut: full Content-Length,
  half the body, connection closed;
- `latency`: seconds added before each eligible request is handled.

503/500/reset are injected *instead of* forwarding, so the request has no side effect.
Requests for paths in `deny` are always answered `403 AccessDenied`, for paths in
`throttle` always `503 SlowDown` (both never forwarded); `script[path]` lists faults
for the next requests for a path, one per request (`fault_when`, called with each
request, picks finer: one part of a multipart copy, say). Paths are `/bucket/key`,
percent-decoded, without the query string; a request is "for" a path when it is its URL
path or its `x-amz-copy-source` (server-side copies read the source). `counts` holds the
number of connections, requests and faults of each kind; `log` every request (method,
target, copy-source range); `requests_for(path)` the number
of requests seen for one path.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlsplit

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "expect",
               "te", "trailer", "upgrade"}
_UPSTREAM_TIMEOUT = 60.0

FAULT_KINDS = ("slowdown", "internal_error", "reset", "truncate")


def s3_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>").encode()


SLOWDOWN_BODY = s3_error("SlowDown", "Please reduce your request rate.")
INTERNAL_ERROR_BODY = s3_error("InternalError",
                               "We encountered an internal error. Please try again.")
ACCESS_DENIED_BODY = s3_error("AccessDenied", "Access Denied")


class _Request:
    __slots__ = ("method", "target", "version", "headers", "body")

    def __init__(self, method: str, target: str, version: str,
                 headers: list[tuple[str, str]], body: bytes) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def copy_source(self) -> str | None:
        """The `/bucket/key` a CopyObject/UploadPartCopy reads (decoded), if any."""
        source = self.header("x-amz-copy-source")
        if not source:
            return None
        path = unquote(source.split("?", 1)[0])
        return path if path.startswith("/") else "/" + path

    def touches(self, paths: set[str]) -> bool:
        return self.path in paths or self.copy_source in paths

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]],
                     until_eof: bool) -> bytes:
    if "chunked" in (_get(headers, "transfer-encoding") or "").lower():
        return await _read_chunked(reader)
    length = _get(headers, "content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read() if until_eof else b""


def _response_head(status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class FaultProxy:
    """A reverse proxy in front of `upstream` that injects faults; runs in its own thread."""

    def __init__(self, upstream: str, *, slowdown: float = 0.0, internal_error: float = 0.0,
                 reset: float = 0.0, truncate: float = 0.0, latency: float = 0.0,
                 methods: Iterable[str] | None = None, seed: int = 0,
                 deny: Iterable[str] = (), throttle: Iterable[str] = ()) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname not in _LOOPBACK or parts.port is None:
            raise ValueError(f"upstream must be http://<loopback>:<port>, not {upstream!r}")
        rates = {"slowdown": slowdown, "internal_error": internal_error, "reset": reset,
                 "truncate": truncate}
        for kind, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{kind} rate must be within 0..1, not {rate}")
        if sum(rates.values()) > 1.0:
            raise ValueError("fault rates add up to more than 1")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.rates = rates
        self.latency = latency
        self.methods = frozenset(m.upper() for m in methods) if methods is not None else None
        self.deny = set(deny)
        self.throttle = set(throttle)
        #: path → faults (FAULT_KINDS) for the next requests for it, one each, in order.
        self.script: dict[str, list[str]] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(
            ("connections", "requests", "forwarded", *FAULT_KINDS, "delayed", "denied", "throttled",
             "upstream_error"), 0)
        self.paths: Counter[tuple[str, str]] = Counter()  # (method, path) → requests
        self.sources: Counter[tuple[str, str]] = Counter()  # (method, copy source) → requests
        #: Every request as (method, target with its query, x-amz-copy-source-range).
        self.log: list[tuple[str, str, str | None]] = []
        #: Called with each request (method, target, headers); a fault kind it returns
        #: is injected (after `script`), None lets the request through.
        self.fault_when: Callable[[str, str, list[tuple[str, str]]], str | None] | None = None
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[asyncio.Task[None]] = set()

    # -- public ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def requests_for(self, path: str, method: str | None = None) -> int:
        """Requests seen for `/bucket/key` (decoded) as their path or their copy source
        (a server-side copy reads it), optionally of one method only."""
        with self._lock:
            return sum(n for counter in (self.paths, self.sources)
                       for (m, p), n in counter.items()
                       if p == path and (method is None or m == method.upper()))

    def start(self) -> FaultProxy:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(
                    self._on_client, "127.0.0.1", 0, backlog=1024, limit=1 << 20))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - re-raised in start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving --------------------------------------------------------------------------

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self._count("connections")
        try:
            while await self._serve_one(reader, writer):
                pass
            if not writer.transport.is_closing():
                writer.close()
            await writer.wait_closed()  # flushes what is still buffered
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, asyncio.CancelledError):
            writer.transport.abort()
        finally:
            self._conns.discard(task)

    async def _serve_one(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the client connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise
            return False  # the client closed an idle connection
        request_line, headers = _parse_head(head)
        method, target, version = request_line.split(" ", 2)
        req = _Request(method.upper(), target, version, headers, b"")
        with self._lock:
            self.counts["requests"] += 1
            self.paths[(req.method, req.path)] += 1
            self.log.append((req.method, req.target, req.header("x-amz-copy-source-range")))
            if req.copy_source is not None:
                self.sources[(req.method, req.copy_source)] += 1

        eligible = self.methods is None or req.method in self.methods
        if eligible and self.latency:
            self._count("delayed")
            await asyncio.sleep(self.latency)

        fault = self._scripted(req)
        if fault is None and self.fault_when is not None:
            fault = self.fault_when(req.method, req.target, req.headers)
        if fault is None and eligible:
            fault = self._draw()
        if fault == "reset":
            self._count("reset")
            self._reset(writer)
            return False

        if "100-continue" in (req.header("expect") or "").lower():
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        req.body = await _read_body(reader, headers, until_eof=False)

        if req.touches(self.deny):
            self._count("denied")
            return await self._error(writer, req, 403, "Forbidden", ACCESS_DENIED_BODY)
        if req.touches(self.throttle):
            self._count("throttled")
            return await self._error(writer, req, 503, "Slow Down", SLOWDOWN_BODY,
                                     [("Retry-After", "1")])
        if fault == "slowdown":
            self._count("slowdown")
            return await self._error(writer, req, 503, "Slow Down", SLOWDOWN_BODY,
                                     [("Retry-After", "1")])
        if fault == "internal_error":
            self._count("internal_error")
            return await self._error(writer, req, 500, "Internal Server Error",
                                     INTERNAL_ERROR_BODY)

        try:
            status, reason, resp_headers, body = await asyncio.wait_for(
                self._forward(req), _UPSTREAM_TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            self._count("upstream_error")
            return await self._error(writer, req, 502, "Bad Gateway",
                                     s3_error("BadGateway", "faultproxy: upstream failed"))
        self._count("forwarded")
        out = [(k, v) for k, v in resp_headers
               if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"]
        no_body = req.method == "HEAD" or status in (204, 304) or status < 200
        if req.method == "HEAD":
            length = _get(resp_headers, "content-length")
            if length is not None:
                out.append(("Content-Length", length))
        elif not no_body:
            out.append(("Content-Length", str(len(body))))
        if fault == "truncate" and not no_body and len(body) >= 2:
            self._count("truncate")
            writer.write(_response_head(status, reason, [*out, ("Connection", "close")]))
            writer.write(body[: len(body) // 2])
            writer.close()  # the response is cut: the client sees a short body
            return False
        keep = req.keep_alive
        if not keep:
            out.append(("Connection", "close"))
        writer.write(_response_head(status, reason, out) + (b"" if no_body else body))
        await writer.drain()
        return keep

    def _scripted(self, req: _Request) -> str | None:
        for path in (req.path, req.copy_source):
            faults = self.script.get(path) if path is not None else None
            if faults:
                kind = faults.pop(0)
                if kind not in FAULT_KINDS:
                    raise ValueError(f"unknown fault {kind!r}")
                return kind
        return None

    def _draw(self) -> str | None:
        u = self._rng.random()
        for kind in FAULT_KINDS:
            rate = self.rates[kind]
            if u < rate:
                return kind
            u -= rate
        return None

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _error(self, writer: asyncio.StreamWriter, req: _Request, status: int,
                     reason: str, body: bytes,
                     extra: list[tuple[str, str]] | None = None) -> bool:
        keep = req.keep_alive
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", "faultproxy"),
                   *(extra or []), ("Content-Length", str(len(body)))]
        if not keep:
            headers.append(("Connection", "close"))
        payload = b"" if req.method == "HEAD" else body
        writer.write(_response_head(status, reason, headers) + payload)
        await writer.drain()
        return keep

    async def _forward(self, req: _Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send `req` on a fresh upstream connection; return the whole response."""
        up_reader, up_writer = await asyncio.open_connection(
            self.upstream_host, self.upstream_port, limit=1 << 20)
        try:
            headers = [(k, v) for k, v in req.headers
                       if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"]
            if req.body or req.method in ("PUT", "POST", "PATCH"):
                headers.append(("Content-Length", str(len(req.body))))
            headers.append(("Connection", "close"))
            lines = [f"{req.method} {req.target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
            up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + req.body)
            await up_writer.drain()
            while True:
                head = await up_reader.readuntil(b"\r\n\r\n")
                status_line, resp_headers = _parse_head(head)
                _, status_text, *rest = status_line.split(" ", 2)
                status = int(status_text)
                if status >= 200 or status == 101:
                    break  # skip interim 1xx responses
            reason = rest[0] if rest else ""
            if req.method == "HEAD" or status in (204, 304):
                body = b""
            else:
                body = await _read_body(up_reader, resp_headers, until_eof=True)
            return status, reason, resp_headers, body
        finally:
            up_writer.transport.abort()
