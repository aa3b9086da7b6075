"""Worker backends: where the coordinator's chunks run, behind one interface.

The coordinator (schedule/coordinator.py) leases chunks, listens and decides; a backend
starts workers, carries whole chunks to them and brings back what they say, as events:

    ("done", wid, marker)            a chunk's report parts and marker are durable
    ("progress", wid, (chunk, succeeded, failed))
    ("fatal", wid, sentence)         the job must stop; `resume` continues once fixed
    ("timeout", wid, seconds)        a task outlived --task-timeout: the worker is going
    ("alive", wid, None)             a heartbeat (every event is one)
    ("died", wid, cause)             the worker is gone: its chunks must be taken back
    ("started", wid, where)          where a worker runs (node, host, pid), for the log
    ("throttled", wid, count)        SlowDowns it has seen so far (AIMD is shared)

- `ProcessBackend`: fresh interpreters on this machine, one socket pair each
  (schedule/processes.py; obstore is not fork-safe, so never a fork).
- `InProcessBackend`: one `Executor` on a uvloop event loop on a thread of this
  process (memory stores handed in by a library caller; tests; `run --in-process`).
- `RayBackend` (schedule/raybackend.py, imported only for `--engine ray`): Ray actors
  across a cluster, each running the same worker; they read their chunks from byte
  ranges of the job's copy of the manifest (`by_range`), as process workers do in jobs
  of a million rows or more.

Markers on disk are the truth: a backend that stops, however it stops, loses nothing
the checkpoint holds, and the coordinator reloads the checkpoint after `stop`.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Protocol

from batchops.model.chunk import Chunk, ChunkRange
from batchops.model.spec import WorkerConfig
from batchops.schedule.processes import Worker, spawn_worker

Event = tuple[str, int, Any]

#: Seconds a cancel lets running tasks end before their chunks report what ran.
CANCEL_GRACE = 8.0


def message_event(wid: int, msg: tuple[Any, ...]) -> Event:
    """The event a worker's message (execute/worker.py) stands for."""
    kind = msg[0]
    if kind == "done":
        marker = msg[1]
        if "fatal" in marker:
            return ("fatal", wid, marker["fatal"])
        return ("done", wid, marker)
    if kind == "progress":
        return ("progress", wid, msg[1:4])
    if kind == "fatal":
        return ("fatal", wid, msg[1])
    if kind == "timeout":
        return ("timeout", wid, msg[2])
    if kind == "throttled":
        return ("throttled", wid, msg[1])
    return ("alive", wid, None)


def timeout_cause(seconds: float) -> str:
    return f"a task ran longer than the task timeout ({seconds:g} s)"


class WorkerBackend(Protocol):
    """What the coordinator needs of the workers, wherever they run."""

    #: True when workers read their chunks themselves: send() gets ChunkRanges (for jobs
    #: of at least `by_range_from` tasks; smaller ones send rows).
    by_range: bool
    by_range_from: int

    def start(self, cfg: WorkerConfig, n: int) -> list[int]:
        """Start `n` workers (or adopt ones started early); return their ids."""

    def add(self) -> int:
        """Start one more worker (to replace one that died); return its id."""

    def send(self, wid: int, chunk: Chunk | ChunkRange) -> None:
        """Hand a chunk to a worker: its rows, or its byte range where `by_range` (a dead
        worker's send is dropped: its death is an event)."""

    def wait(self, timeout: float) -> list[Event]:
        """The events since the last call, waiting up to `timeout` for the first."""

    def slow_down(self, wid: int) -> None:
        """Tell a worker that another one was throttled: it halves its concurrency."""

    def kill(self, wid: int) -> None:
        """End a worker at once (a silent one); its death comes as an event."""

    def stop(self, report: bool) -> None:
        """Stop every worker. `report` (the job ends: cancel, failure threshold): no task
        starts any more, running ones end (up to CANCEL_GRACE), and each chunk in flight
        writes the tasks that ran as its marker first."""


class ProcessBackend:
    """Worker processes on this machine. From a million rows they read their chunks from
    byte ranges of the job's copy of the manifest: the parent then neither parses nor
    pickles rows (~0.6 µs a row on its one core: a 10M-row noop's tasks phase took 1.7x
    as long, at 1.2x the CPU, when it did). Below that, rows are sent: a worker reading
    a large manifest imports Polars (~0.13 s of CPU each), more than a 200k-row job saves."""

    by_range = True
    by_range_from = 1_000_000

    def __init__(self, prestarted: list[Worker] | None = None) -> None:
        self.workers: dict[int, Worker] = {}
        self._prestarted = list(prestarted or [])
        self._cfg: WorkerConfig | None = None
        self._next_wid = 0

    def start(self, cfg: WorkerConfig, n: int) -> list[int]:
        self._cfg = cfg
        for w in self._prestarted[:n]:  # started while the job was being prepared
            try:
                w.conn.send(("config", cfg))
                self.workers[w.wid] = w
            except (BrokenPipeError, OSError):
                w.discard()
        for w in self._prestarted[n:]:
            w.discard()
        self._prestarted = []
        self._next_wid = max([n - 1, *self.workers]) + 1
        for wid in range(n):
            if wid not in self.workers:
                self.workers[wid] = spawn_worker(wid, cfg)
        return sorted(self.workers)

    def discard_unused(self) -> None:
        """Kill workers started early that no job used."""
        for w in self._prestarted:
            w.discard()
        self._prestarted = []

    def add(self) -> int:
        assert self._cfg is not None, "start() first"
        wid = self._next_wid
        self._next_wid += 1
        self.workers[wid] = spawn_worker(wid, self._cfg)
        return wid

    def send(self, wid: int, chunk: Chunk | ChunkRange) -> None:
        try:
            self.workers[wid].conn.send(("chunk", chunk))
        except (BrokenPipeError, OSError):
            pass  # its death is an event

    def wait(self, timeout: float) -> list[Event]:
        waitables: list[Any] = [w.conn for w in self.workers.values()]
        waitables += [w.proc.sentinel for w in self.workers.values()
                      if w.proc.sentinel is not None]
        import multiprocessing.connection  # here: a job with nothing to run starts no worker

        ready = multiprocessing.connection.wait(waitables, timeout=timeout)
        events: list[Event] = []
        for wid, w in list(self.workers.items()):
            if w.conn in ready:
                self._drain(w, events)
            if not w.proc.is_alive():
                self._drain(w, events)
                w.proc.join()
                w.conn.close()
                del self.workers[wid]
                events.append(("died", wid, w.death()))
        return events

    @staticmethod
    def _drain(w: Worker, events: list[Event]) -> None:
        try:
            while w.conn.poll():
                event = message_event(w.wid, w.conn.recv())
                if event[0] == "timeout":
                    w.cause = timeout_cause(event[2])
                events.append(event)
        except (EOFError, OSError):
            pass

    def slow_down(self, wid: int) -> None:
        w = self.workers.get(wid)
        if w is not None:
            try:
                w.conn.send(("slowdown",))
            except (BrokenPipeError, OSError):
                pass  # its death is an event

    def kill(self, wid: int) -> None:
        w = self.workers.get(wid)
        if w is not None:
            w.cause = w.cause or "its worker stopped answering"
            w.proc.kill()

    def stop(self, report: bool) -> None:
        workers = list(self.workers.values())
        for w in workers:
            try:
                w.conn.send(("stop", "report") if report else ("stop",))
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + (CANCEL_GRACE + 4 if report else 5)
        for w in workers:
            try:
                w.proc.join(max(0.0, deadline - time.monotonic()))
            finally:
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join()
                w.conn.close()
        self.workers.clear()
        self.discard_unused()


class InProcessBackend:
    """One worker in this process: an Executor on a uvloop event loop on its own thread.
    It never dies on its own and is never killed (a hung task times out instead)."""

    WID = 0
    by_range = False
    by_range_from = 0

    def __init__(self, preset_stores: dict[str, Any] | None = None) -> None:
        self._preset = preset_stores
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._loop: Any = None
        self._executor: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, cfg: WorkerConfig, n: int) -> list[int]:
        def on_done(marker: dict[str, Any]) -> None:
            if "fatal" in marker:
                self._events.put(("fatal", self.WID, marker["fatal"]))
            else:
                self._events.put(("done", self.WID, marker))

        def run() -> None:
            import asyncio

            import uvloop

            from batchops.execute.pool import Executor

            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._executor = Executor(cfg, on_done, self._preset)
                self._executor.start()
                self._stopped = asyncio.Event()
                self._ready.set()
                await self._stopped.wait()
                await self._executor.close()

            try:
                uvloop.run(main())
            except BaseException as exc:  # noqa: BLE001 - handed to the coordinator
                self._error = exc
                self._events.put(("fatal", self.WID, f"{type(exc).__name__}: {exc}"))
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=run, name="batchops-inprocess", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return [self.WID]

    def add(self) -> int:
        raise RuntimeError("the in-process worker is never replaced")

    def send(self, wid: int, chunk: Chunk | ChunkRange) -> None:
        self._loop.call_soon_threadsafe(self._executor.submit, chunk)

    def wait(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        try:
            events.append(self._events.get(timeout=timeout))
        except queue.Empty:
            # Nothing finished meanwhile: the counts of the chunks in hand.
            events += [("progress", self.WID, counts) for counts in self._executor.progress()]
            events.append(("alive", self.WID, None))
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def slow_down(self, wid: int) -> None:
        """Never needed: the one worker is the one throttled."""

    def kill(self, wid: int) -> None:
        """Never needed: a task in this process times out on its own."""

    def stop(self, report: bool) -> None:
        if self._thread is None or self._loop is None:
            return
        executor = self._executor
        if report:
            self._loop.call_soon_threadsafe(executor.close_runs)
            deadline = time.monotonic() + CANCEL_GRACE
            while not executor.idle and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            self._loop.call_soon_threadsafe(executor.abandon)
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(CANCEL_GRACE + 2)


__all__ = ["CANCEL_GRACE", "Event", "InProcessBackend", "ProcessBackend", "WorkerBackend",
           "message_event", "timeout_cause"]
