"""`batchops serve`: the settings, checked once, and the server's life.

    batchops serve [--listen 127.0.0.1:8750] [--runners N] [--auth sigv4|none]
                   [--keys FILE] [--job-store URL]

Start: the job store's index is built (serve/index.py), the runner pool starts (and
picks up every job a stopped server left running), then the socket serves. Stop
(SIGINT, SIGTERM): the server stops answering, the running jobs pause at once with
their checkpoints (Paused), and the next server resumes them.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from batchops.model.errors import SpecError
from batchops.model.spec import AwsSettings
from batchops.serve.auth import Key, load_keys

DEFAULT_LISTEN = "127.0.0.1:8750"


@dataclass(frozen=True)
class ServeConfig:
    """The server's settings, checked: where it listens, how many runners, who may
    call (keys: None for --auth none), the job store, the jobs' AWS settings."""

    host: str
    port: int
    runners: int = 2
    keys: Mapping[str, Key] | None = field(default=None, repr=False)
    home: str | None = None
    aws: AwsSettings = AwsSettings()
    #: JobOptions settings of every job it creates (workers, concurrency, chunk size...).
    job_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def auth(self) -> str:
        return "none" if self.keys is None else "sigv4"


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT ([v6]:PORT) of --listen."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SpecError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8750")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_from_args(args: Any) -> ServeConfig:
    """Check the flags; one sentence on error."""
    host, port = parse_listen(args.listen)
    if args.runners < 1:
        raise SpecError(f"--runners {args.runners}: at least 1")
    auth = args.auth or ("sigv4" if args.keys or not is_loopback(host) else "none")
    if auth == "none":
        if not is_loopback(host):
            raise SpecError(f"--auth none is refused on {host}, which is not a loopback "
                            "address: anyone who reaches it could run jobs; give --keys FILE "
                            "(SigV4), or listen on 127.0.0.1")
        if args.keys:
            raise SpecError("--keys is for --auth sigv4; drop --auth none")
        keys = None
    else:
        if not args.keys:
            raise SpecError("--auth sigv4 needs the operators' keys: --keys FILE (in "
                            "~/.aws/credentials' shape, with aws_account_id per key)")
        keys = load_keys(args.keys)
    for flag in ("workers", "chunk_size", "max_ops_per_second"):
        if getattr(args, flag) < 0:
            raise SpecError(f"--{flag.replace('_', '-')} must not be negative")
    if args.concurrency < 1:
        raise SpecError("--concurrency must be at least 1")
    from batchops.results.jobstore import batchops_home

    settings = MappingProxyType({
        "workers": args.workers, "concurrency": args.concurrency,
        "chunk_size": args.chunk_size, "max_ops_per_second": args.max_ops_per_second})
    return ServeConfig(host, port, args.runners, keys, batchops_home(),
                       AwsSettings(args.profile or None, args.region or None,
                                   args.endpoint_url or None), settings)


def _bind(config: ServeConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise SpecError(f"--listen {config.host}:{config.port}: cannot listen there "
                        f"({exc.strerror or exc})") from None
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


def serve(config: ServeConfig, stop: threading.Event, notifier: Any = None) -> int:
    """Run the server until a signal; returns the exit code. `notifier` (--notify, a
    schedule/notify.py Notifier) hears every status change of the jobs it runs or
    changes."""
    import uvicorn

    from batchops.serve.api import Jobs
    from batchops.serve.app import Service, build_app
    from batchops.serve.index import JobIndex
    from batchops.serve.restxml import load_operations
    from batchops.serve.runners import RunnerPool

    sock = _bind(config)  # first: a port in use is refused before any job is touched
    index = JobIndex(config.home)
    index.rebuild()
    pool = RunnerPool(index, config.runners, stop, config.home,
                      on_store=notifier.watch if notifier is not None else None)
    operations = load_operations()
    create = next(op for op in operations if op.name == "CreateJob")
    service = Service(operations, Jobs(index, pool, config.home, config.aws,
                                       config.job_settings, create.model.input_shape),
                      config.keys)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    pool.start()
    print(f"batchops serve: listening on http://{shown}:{port} (auth {config.auth}, "
          f"{config.runners} runner{'s' if config.runners > 1 else ''}, {len(index)} jobs "
          f"in {config.home})", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(
        build_app(service), log_level="warning", access_log=False, lifespan="off",
        timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()  # the running jobs pause with their checkpoints
        pool.join()
    return 0


__all__ = ["DEFAULT_LISTEN", "ServeConfig", "config_from_args", "is_loopback",
           "parse_listen", "serve"]
