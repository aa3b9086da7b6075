"""Worker processes as the parent sees them: their configuration, how they start, and
how the parent waits for them.

A worker is a fresh interpreter (obstore is not fork-safe, so never a fork), started
with `subprocess` and joined to the parent by one socket pair that carries pickled
messages (`multiprocessing.connection.Connection` framing). Not `multiprocessing`'s
spawn: that also starts a resource-tracker interpreter and makes the parent import the
worker's whole module (asyncio, the operations) only to name its entry point; together
about 60 ms of CPU at the start of every run, measured on the 20k-file local copy
(bench/RESULTS.md). This module imports nothing heavy, so the parent can start workers
before it imports Polars and prepares the manifest; what starting one needs (socket,
subprocess, multiprocessing's framing: ~5 ms) is imported by the first start, so a job
with nothing to run never imports it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchops.model.spec import WorkerConfig

if TYPE_CHECKING:
    import subprocess
    from multiprocessing.connection import Connection

_CHILD = "import sys; from batchops.execute.worker import child_main; child_main(sys.argv[1:])"


class WorkerProcess:
    """A started worker interpreter: `sentinel` (a pidfd, where the OS has them) becomes
    ready when it exits, so the parent can wait on it beside the worker's connection."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.sentinel: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.sentinel = os.pidfd_open(popen.pid)
            except OSError:
                pass

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.kill()
            except ProcessLookupError:
                pass

    def join(self, timeout: float | None = None) -> None:
        import subprocess

        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


@dataclass
class Worker:
    """A worker process and the chunks it holds."""

    wid: int
    proc: WorkerProcess
    conn: Connection
    leased: list[int] = field(default_factory=list)
    #: time.monotonic() of the last message (a heartbeat comes every half second while
    #: it holds chunks), or of its first lease.
    heard: float = 0.0
    #: What the worker said before it went (a task timeout), for the report.
    cause: str = ""

    def death(self) -> str:
        """Why the process ended, in words (after it has ended)."""
        import signal

        code = self.proc.exitcode
        if self.cause:
            return self.cause
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"its worker process was killed by {name}"
        return f"its worker process exited with code {code}"

    def discard(self) -> None:
        """Kill a worker that is no longer wanted and release what the parent holds."""
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def spawn_worker(wid: int, cfg: WorkerConfig | None = None) -> Worker:
    """Start one worker; without `cfg` it waits for ("config", cfg) as its first message."""
    import socket
    import subprocess
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    child_fd = theirs.detach()
    try:
        popen = subprocess.Popen(
            # -P: the user's current folder must not shadow a module the worker imports
            # (a `copy.py` there would run in every worker).
            [sys.executable, "-P", "-c", _CHILD, str(wid), str(child_fd)],
            pass_fds=(child_fd,), stdin=subprocess.DEVNULL)
    finally:
        os.close(child_fd)
    conn = Connection(ours.detach())
    if cfg is not None:
        conn.send(("config", cfg))
    return Worker(wid, WorkerProcess(popen), conn)


def prestart_workers(n: int) -> list[Worker]:
    """Start `n` workers now, to be configured when the job is ready."""
    return [spawn_worker(wid) for wid in range(n)]


__all__ = ["WorkerConfig", "WorkerProcess", "Worker", "spawn_worker", "prestart_workers"]
