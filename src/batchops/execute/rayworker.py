"""A worker as a Ray actor: the same worker as a local process (execute/worker.py),
with its messages carried by Ray calls instead of a socket pair.

The coordinator's `RayBackend` (schedule/raybackend.py) makes this class a Ray actor
(threaded, so that a call that waits for messages never holds up one that hands in a
chunk). Inside, `WorkerCore` runs exactly as in a worker process: the sync path on its
own thread, the event loop thread for remote stores, the finisher, the heartbeats and
the task watchdog. Chunks arrive as byte ranges (`ChunkRange`) of the job's copy of the
manifest, which the worker reads itself on its pipe thread, as a worker process does:
from a path every node sees, or with ranged GETs when the job store is on an object
store; the driver never sends rows. No call waits for another: `submit` only queues,
so however many chunks the coordinator keeps in flight, Ray's call threads (the
actor's `max_concurrency`) are never all held while `configure` waits for one. A
worker that must end (a stop, an unexpected error, a chunk it cannot read) ends its
process, as a local worker does; Ray reports the actor dead and the coordinator takes
its chunks back. The backend ends actors it no longer needs with `ray.kill`.

This module does not import Ray: the backend applies `ray.remote` to `ChunkWorker`.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported in the actor's process (see `ChunkWorker.__init__`)
    from batchops.execute.worker import WorkerCore
    from batchops.model.chunk import Chunk, ChunkRange
    from batchops.model.spec import WorkerConfig


class _Pipe:
    """The worker's end of a connection, made of two queues: Ray calls fill the inbox
    and drain the outbox."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.outbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def recv(self) -> tuple[Any, ...]:
        return self.inbox.get()

    def send(self, msg: tuple[Any, ...]) -> None:
        self.outbox.put(msg)


class ChunkWorker:
    """One worker: built in the actor's process (its stores and clients are made there,
    never pickled), it takes chunks and hands back the worker's messages."""

    def __init__(self, wid: int, cfg: WorkerConfig | None = None) -> None:
        """Without `cfg` the actor is started early (while the driver prepares the job)
        and `configure` gives it the job later."""
        # The worker's modules are imported here, in the actor's process, while the driver
        # prepares the job; the driver does not import them before it starts its actors.
        import batchops.execute.worker
        import batchops.manifest.reader  # noqa: F401
        self.wid = wid
        self.pipe = _Pipe()
        self._ready = threading.Event()
        where = {"pid": os.getpid(), "host": socket.gethostname(), "node": _node_id()}
        self.pipe.send(("started", where))
        if cfg is not None:
            self.configure(cfg)

    def configure(self, cfg: WorkerConfig) -> None:
        """Take the job: build the stores and start the worker."""
        from batchops.execute.worker import WorkerCore

        os.environ.update(cfg.env)  # the driver's AWS configuration variables (no keys)
        self.worker: WorkerCore = WorkerCore(cfg, self.pipe)
        threading.Thread(target=self._serve, name="batchops-worker", daemon=True).start()
        self._ready.set()

    def _serve(self) -> None:
        try:
            self.worker.serve()
        except BaseException as exc:  # noqa: BLE001 - the actor ends; its chunks run again
            print(f"batchops worker {self.wid}: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            os._exit(1)

    def submit(self, chunk: Chunk | ChunkRange) -> None:
        """Take a chunk, or its byte range (queued: it may come before `configure`)."""
        self.pipe.inbox.put(("chunk", chunk))

    def slow_down(self) -> None:
        """Another worker of the job was throttled: halve this one's concurrency."""
        self.pipe.inbox.put(("slowdown",))

    def stop_and_report(self) -> None:
        """A cancel: start no more tasks, let the running ones end, and write, for each
        chunk in flight, the tasks that ran; returns when done (the backend then ends
        this actor)."""
        self._ready.wait()  # a call may overtake `configure` (the actor is threaded)
        self.worker._report_what_ran()

    def events(self, timeout: float) -> list[tuple[Any, ...]]:
        """The worker's messages since the last call, waiting up to `timeout` for one."""
        out: list[tuple[Any, ...]] = []
        try:
            out.append(self.pipe.outbox.get(timeout=timeout))
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self.pipe.outbox.get_nowait())
            except queue.Empty:
                return out


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001 - only for the log
        return ""


__all__ = ["ChunkWorker"]
