"""Workers: where tasks run.

A worker is a fresh interpreter (started by `workerproc`; obstore is not fork-safe). It
receives whole chunks from the parent over a socket pair, as rows or (large jobs) as byte
ranges of the job's copy of the manifest that it reads itself, and sends back, per chunk,
progress counts and finally the chunk's marker once its report parts are durable.

Chunks whose tasks need no event loop (local folders, memory stores: cheap, CPU-bound
calls; or no per-task work at all) run on the worker's main thread through
`loop.TaskLoop`; obstore's synchronous API costs about 1.5 µs a call against 70–90 µs
through the async bridge. The first chunk that needs the loop (remote stores) starts a
uvloop event loop on a second thread, where `pool.Executor` runs every later chunk.
A job that only touches in-process stores therefore never imports asyncio or uvloop.

Threads: the main thread runs chunks; a reader thread receives messages (chunks are
large, so it reads in blocking mode, all the time, and the parent never blocks on a full
pipe); a progress thread reports counts every PROGRESS_INTERVAL, and how often the store
said SlowDown; the loop thread, once started. AIMD is shared: a worker throttled makes
the coordinator send ("slowdown",) to the others, which halve their concurrency too.
Sends are serialised by a lock. "stop" or a closed connection ends the process at once:
whatever ran of an unfinished chunk runs again from its start elsewhere. A
cancel sends ("stop", "report"): no task starts after it, the running ones end, and each
chunk in flight reports the tasks that ran (the job is over; nothing runs again).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from batchops.execute.loop import ChunkState, TaskLoop
from batchops.model.chunk import Chunk, ChunkRange
from batchops.model.errors import BatchopsError
from batchops.model.spec import WorkerConfig

PROGRESS_INTERVAL = 0.5
CANCEL_GRACE = 8.0  # seconds a cancel waits for running tasks before reporting without them


def child_main(argv: list[str]) -> None:
    """Entry point of a worker interpreter started by `workerproc.spawn_worker`:
    argv is [worker id, file descriptor of its end of the socket pair]."""
    from multiprocessing.connection import Connection

    worker_main(int(argv[0]), Connection(int(argv[1])))


def worker_main(worker_id: int, conn: Any) -> None:
    """Run a worker: its first message is ("config", WorkerConfig), so that it can start
    (and import) while the parent is still preparing the job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent coordinates Ctrl-C
    code = 0
    try:
        msg = conn.recv()
        if msg[0] == "config":
            WorkerCore(msg[1], conn).serve()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent went away: stop quietly, the checkpoint is on disk
    except BaseException as exc:  # noqa: BLE001 - reported, then the parent replaces us
        import sys

        print(f"batchops worker {worker_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        os._exit(code)


class WorkerCore:
    """One worker process's threads (see the module docstring)."""

    def __init__(self, cfg: WorkerConfig, conn: Any) -> None:
        self.cfg = cfg
        self.conn = conn
        self._send_lock = threading.Lock()
        self._chunks: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        self._current: ChunkState | None = None  # the chunk on the main thread
        self._loop: Any = None  # the event loop thread's loop and executor, once started
        self._executor: Any = None
        self._cancelled = False  # a cancel: start nothing more
        self._runner: TaskLoop | None = None  # once built: its AIMD takes shared cuts
        self._reader: Any = None  # a ChunkReader, for chunks sent as byte ranges
        # Chunks run on the main thread are finished (made durable, reported) here.
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="batchops-finish")
        self._finish_count_lock = threading.Lock()
        self._finishing = 0

    def send(self, msg: tuple[Any, ...]) -> None:
        try:
            with self._send_lock:
                self.conn.send(msg)
        except (BrokenPipeError, EOFError, OSError):
            os._exit(0)  # the parent is gone

    def serve(self) -> None:
        # The reader first: the parent may already be sending chunks larger than the
        # socket's buffer, and must not block while this worker builds its stores.
        threading.Thread(target=self._read, name="batchops-pipe", daemon=True).start()
        try:
            runner = self._runner = TaskLoop(self.cfg)
        except BatchopsError as exc:
            self.send(("fatal", str(exc)))
            return
        threading.Thread(target=self._report_progress, name="batchops-progress",
                         daemon=True).start()
        while (chunk := self._chunks.get()) is not None:
            if self._cancelled:
                continue
            if self._executor is None and runner.needs_loop(chunk):
                self._start_loop(runner)
            if self._executor is not None:
                self._loop.call_soon_threadsafe(self._submit, chunk)
            else:
                self._run_here(runner, chunk)

    def _submit(self, chunk: Chunk) -> None:
        """On the loop thread: hand a chunk to the Executor."""
        try:
            self._executor.submit(chunk)
        except BaseException as exc:  # noqa: BLE001 - the worker dies; the parent re-runs
            _die("submit", exc)

    def _run_here(self, runner: TaskLoop, chunk: Chunk) -> None:
        """Run a chunk on this thread, then hand it to the finisher thread: making its data
        durable (a syncfs waits on the disk) and writing its report parts and marker overlap
        with the next chunk's tasks."""
        st = self._current = runner.state(chunk)
        if self._cancelled:
            st.run.close()
        try:
            runner.run_sync(st)
        except Exception as exc:  # noqa: BLE001 - the job stops (see _stopped)
            self.send(("done", _stopped(exc)))
            self._current = None
            return
        with self._finish_count_lock:
            self._finishing += 1
        self._current = None
        self._finisher.submit(self._finish, runner, st)

    def _finish(self, runner: TaskLoop, st: ChunkState) -> None:
        """On the finisher thread: the chunk's durable data, report parts and marker."""
        try:
            marker = runner.finish(st)
        except Exception as exc:  # noqa: BLE001 - the job stops (see _stopped)
            marker = _stopped(exc)
        finally:
            with self._finish_count_lock:
                self._finishing -= 1
        if marker is not None:
            self.send(("done", marker))

    def _read(self) -> None:
        try:
            while True:
                msg = self.conn.recv()
                if msg[0] == "chunk":
                    self._chunks.put(self._rows(msg[1]))
                elif msg[0] == "slowdown":  # another worker of the job was throttled
                    if self._runner is not None:
                        self._runner.aimd.cut(time.monotonic())
                elif msg[0] == "stop":
                    if msg[1:] == ("report",):
                        self._report_what_ran()
                    break
        except (EOFError, OSError):
            pass
        os._exit(0)

    def _rows(self, chunk: Chunk | ChunkRange) -> Chunk:
        """A chunk's rows: as sent, or read here from its byte range of the job's copy
        of the manifest (on the reader thread, beside the main thread's tasks)."""
        if isinstance(chunk, Chunk):
            return chunk
        try:
            if self._reader is None:
                from batchops.manifest.reader import ChunkReader, ManifestInfo, relocated
                from batchops.results.stores import job_store

                if not self.cfg.manifest:
                    raise RuntimeError("a chunk range came, but no manifest was configured")
                info, fetch = relocated(ManifestInfo.from_json(self.cfg.manifest),
                                        job_store(self.cfg.job_id, self.cfg.home
                                                  ).manifest_source)
                self._reader = ChunkReader(info, self.cfg.chunk_size, fetch)
            return self._reader.read_range(chunk)
        except Exception as exc:  # noqa: BLE001 - the parent runs the chunk again elsewhere
            _die("reading a chunk", exc)
            raise

    def _report_what_ran(self, timeout: float = CANCEL_GRACE) -> None:
        """A cancel: start no more tasks, let the running ones end, and report, for each
        chunk in flight, the tasks that ran (the parent waits for us to exit)."""
        self._cancelled = True
        st = self._current
        if st is not None:
            st.run.close()
        if self._executor is not None:
            self._loop.call_soon_threadsafe(self._executor.close_runs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._current is None and not self._finishing and \
                    (self._executor is None or self._executor.idle):
                return
            time.sleep(0.01)

    def _report_progress(self) -> None:
        """Every PROGRESS_INTERVAL: the counts of the chunks in hand, and a heartbeat (the
        coordinator takes back the chunks of a worker it stops hearing from). Also the
        watchdog of the sync path: a call that outlives the task timeout (a hung handler
        cannot be interrupted on its own thread) ends this worker, and its chunk runs
        again elsewhere, or is reported failed once it has done so too often."""
        stop = threading.Event()
        timeout = self.cfg.task_timeout
        seen: tuple[int, int, int] | None = None  # (chunk, tasks done, retries) last time
        since = time.monotonic()
        throttled = 0  # SlowDowns seen so far (the coordinator tells the other workers)
        while not stop.wait(PROGRESS_INTERVAL):
            try:
                st = self._current
                counts = [(st.chunk.index, st.run.succeeded, st.run.failed)] if st else []
                if self._executor is not None:
                    counts += self._executor.progress()
            except Exception:  # noqa: BLE001 - counts are advisory; the markers are not
                continue
            now = time.monotonic()
            state = (st.chunk.index, st.run.done, st.run.retries) if st is not None else None
            if state != seen:
                seen, since = state, now
            elif state is not None and timeout and now - since > timeout:
                self.send(("timeout", state[0], timeout))
                _die("watchdog", TimeoutError(f"a task ran longer than the task timeout "
                                              f"({timeout:g} s)"))
            for index, ok, failed in counts:
                self.send(("progress", index, ok, failed))
            runner = self._runner
            if runner is not None and runner.aimd.throttled != throttled:
                throttled = runner.aimd.throttled
                self.send(("throttled", throttled))
            self.send(("alive",))

    def _start_loop(self, runner: TaskLoop) -> None:
        """Start the event loop thread and its Executor (sharing `runner`'s operation,
        stores and limits); return once it takes chunks."""
        ready = threading.Event()

        def run() -> None:
            import asyncio

            import uvloop

            from batchops.execute.pool import Executor

            def on_error(loop: Any, context: dict[str, Any]) -> None:
                # A task or callback of ours failed with nobody to await it (its chunk
                # would never finish): the worker dies and the parent re-runs its chunks.
                # Anything else (a library's warning) is only printed.
                exc = context.get("exception")
                if exc is not None and str(context.get("message", "")).startswith(
                        ("Task exception was never retrieved", "Exception in callback")):
                    _die("event loop", exc)
                loop.default_exception_handler(context)

            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._loop.set_exception_handler(on_error)
                self._executor = Executor(self.cfg, self._done, base=runner)
                self._executor.start()
                ready.set()
                await asyncio.Event().wait()  # until the process ends

            try:
                uvloop.run(main())
            except BaseException as exc:  # noqa: BLE001 - reported, then the parent replaces us
                _die("event loop", exc)

        threading.Thread(target=run, name="batchops-loop", daemon=True).start()
        ready.wait()

    def _done(self, marker: dict[str, Any]) -> None:
        self.send(("done", marker))


def _stopped(exc: BaseException) -> dict[str, Any]:
    """The marker that stops the job: a fatal error (resume continues once it is fixed),
    or a bug in batchops (the job stops loudly; nothing is lost)."""
    if isinstance(exc, BatchopsError):  # JobFatalError, JobStoreError, ...
        return {"fatal": str(exc)}
    return {"fatal": f"internal error in batchops: {type(exc).__name__}: {exc} (a bug; the "
                     "job is paused, nothing is lost)"}


def _die(where: str, exc: BaseException) -> None:
    """End this worker after an unexpected error: the parent sees it gone and runs its
    chunks again on a new one."""
    import sys

    print(f"batchops worker: {where}: {type(exc).__name__}: {exc}", file=sys.stderr,
          flush=True)
    os._exit(1)


__all__ = ["WorkerCore", "child_main", "worker_main"]
