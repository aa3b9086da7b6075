"""moto's S3 server with HTTP/1.1 keep-alive, for benchmarks.

    python bench/keepalive_s3.py --port 5000            # one port
    python bench/keepalive_s3.py --ports 20             # 20 free ports, one shared backend;
                                                        # prints them as one JSON line

moto_server (werkzeug's development server) answers every request with
`Connection: close`, so each request a client sends pays a TCP handshake and teardown on
both ends, and on loopback the client is charged much of that kernel work: the clients'
CPU figures then measure the kernel, not the clients. This serves the same WSGI app
(`DomainDispatcherApplication(create_backend_app)`, moto's in-memory backends) through
werkzeug with moto's own request handler, changed in three ways:

- `protocol_version = "HTTP/1.1"`, and werkzeug's forced `Connection: close` is not sent
  (unless the client asked to close, or spoke HTTP/1.0 without keep-alive), so the
  connection serves the next request;
- every response carries a correct `Content-Length`: a response without one is buffered
  and measured (moto's are small XML documents, or objects whose length it sets), and a
  HEAD, 1xx, 204 or 304 answer carries no body, so the next response on the connection
  starts where the client expects it;
- whatever of a request's body the app did not read (a chunked one included) is read
  and dropped before the next request line is parsed: werkzeug closes connections
  precisely because http.server does not do this.

Each listening socket counts the connections it accepted and the requests it served;
`GET /_keepalive/stats` answers them as JSON (`{"port": [connections, requests]}`), so
a benchmark can show that its clients reused their connections. The tests keep plain
moto_server.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

STATS_PATH = "/_keepalive/stats"
_NO_BODY = (204, 304)


class _Counted(io.RawIOBase):
    """A request body stream that never reads past the body (`limit` bytes; None for a
    chunked body, whose decoder stops at its end) and remembers how much was read."""

    def __init__(self, raw: Any, limit: int | None) -> None:
        super().__init__()
        self.raw = raw
        self.limit = limit
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def _allowed(self, size: int) -> int:
        if self.limit is None:
            return size
        left = self.limit - self.consumed
        return left if size < 0 else min(size, left)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        size = self._allowed(-1 if size is None else size)
        if size == 0:
            return b""
        data = self.raw.read(size) if size > 0 else self.raw.read()
        self.consumed += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        size = self._allowed(-1 if size is None else size)
        if size == 0:
            return b""
        data = self.raw.readline(size)
        self.consumed += len(data)
        return data


class _Nothing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        return 0


_NOTHING = _Nothing()


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler speaking HTTP/1.1 with persistent connections."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.count(0)  # type: ignore[attr-defined]

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        self._chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        try:
            self._length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            self._length, self.close_connection = 0, True
        body = _Counted(environ["wsgi.input"], None if self._chunked else self._length)
        environ["wsgi.input"] = body
        self._body = body
        # After each response werkzeug reads whatever arrives within 10 ms and drops it
        # (it closes every connection, so that was only ever the rest of the body): on a
        # kept connection that is the next request. It reads self.rfile; the app reads
        # the body through the environ. Until run_wsgi returns, self.rfile reads nothing.
        self._rfile, self.rfile = self.rfile, _NOTHING
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        # werkzeug always adds `Connection: close`; keep the connection unless the client
        # asked for that (parse_request has then set close_connection already).
        if keyword.lower() == "connection" and value.lower() == "close" \
                and not self.close_connection:
            return
        super().send_header(keyword, value)

    def run_wsgi(self) -> None:
        self.server.count(1)  # type: ignore[attr-defined]
        self._body, self._rfile = None, None
        try:
            super().run_wsgi()
        finally:
            if self._rfile is not None:
                self.rfile = self._rfile
        body = self._body
        if body is None or self.close_connection:
            return
        try:  # what the app left unread, so the next request line is where it belongs
            if self._chunked:
                while body.read(65536):
                    pass
            else:
                left = self._length - body.consumed
                while left > 0:
                    data = body.read(min(left, 1 << 20))
                    if not data:
                        self.close_connection = True
                        break
                    left -= len(data)
        except (OSError, ValueError):
            self.close_connection = True

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def with_content_length(app: Callable[..., Any], stats: Callable[[], dict[str, Any]]) \
        -> Callable[..., Iterable[bytes]]:
    """A WSGI app whose every response has a Content-Length (buffered when the app gave
    none) and no body where HTTP allows none; `GET /_keepalive/stats` answers `stats()`."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == STATS_PATH:
            body = json.dumps(stats()).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        got: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]],
                    exc_info: Any = None) -> Callable[[bytes], None]:
            got["status"], got["headers"] = status, headers
            return lambda data: got.setdefault("early", []).append(data)

        result = app(environ, capture)
        code = int(got["status"].split(None, 1)[0])
        headers = list(got["headers"])
        named = {k.lower() for k, _ in headers}
        if environ["REQUEST_METHOD"] == "HEAD" or code in _NO_BODY or 100 <= code < 200:
            _close(result)
            if code in _NO_BODY:
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            start_response(got["status"], headers)
            return []
        if "content-length" in named and not got.get("early"):
            start_response(got["status"], headers)
            return _passing(result)
        try:
            body = b"".join([*got.get("early", []), *result])
        finally:
            _close(result)
        headers = [(k, v) for k, v in headers
                   if k.lower() not in ("content-length", "transfer-encoding")]
        start_response(got["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]
    return wrapped


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _passing(result: Iterable[bytes]) -> Iterable[bytes]:
    try:
        yield from result
    finally:
        _close(result)


class _Server:
    """Several werkzeug servers (one per port) over one moto app, with their counts."""

    def __init__(self, host: str, ports: list[int]) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, list[int]] = {}
        app = with_content_length(DomainDispatcherApplication(create_backend_app),
                                  self.stats)
        self.servers: list[BaseWSGIServer] = []
        for port in ports:
            server = make_server(host, port, app, threaded=True,
                                 request_handler=KeepAliveHandler)
            counts = self._counts.setdefault(server.server_port, [0, 0])
            server.count = self._counter(counts)  # type: ignore[attr-defined]
            self.servers.append(server)

    def _counter(self, counts: list[int]) -> Callable[[int], None]:
        def count(which: int) -> None:
            with self._lock:
                counts[which] += 1
        return count

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {str(port): list(c) for port, c in self._counts.items()}

    def serve(self) -> None:
        for server in self.servers[1:]:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers[0].serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="serve on this port")
    parser.add_argument("--ports", type=int, default=None,
                        help="serve on this many free ports; print them as a JSON list")
    args = parser.parse_args(argv)
    ports = [0] * args.ports if args.ports else [args.port if args.port is not None else 5000]
    server = _Server(args.host, ports)
    print(json.dumps([s.server_port for s in server.servers]), flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
