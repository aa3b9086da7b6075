"""Progress display: a live line on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _eta(done: int, total: int, rate: float) -> str:
    if rate <= 0 or done >= total:
        return "-"
    seconds = int((total - done) / rate)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Display:
    """Shows done, failed, rate and ETA. Use as a context manager."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True,
                 plain_interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.plain_interval = plain_interval
        self._start = time.monotonic()
        self._last_plain = 0.0
        self._base: int | None = None
        self._final_shown = False
        self._progress: Any = None
        self._task = None
        self._where = ""  # "4 actors on 2 nodes" (--engine ray)

    def __enter__(self) -> Display:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("failed {task.fields[failed]:,}"),
                TextColumn("{task.fields[rate]:,.0f} tasks/s"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("tasks", total=None, failed=0, rate=0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def workers(self, actors: int, nodes: int) -> None:
        """Where the job runs (Ray actors and the nodes they are on)."""
        self._where = (f"{actors} actor{'s' * (actors != 1)} on {nodes} "
                       f"node{'s' * (nodes != 1)}")
        if self._progress is not None:
            self._progress.update(self._task, description=f"tasks ({self._where})")

    def update(self, succeeded: int, failed: int, total: int) -> None:
        if not self.enabled:
            return
        done = succeeded + failed
        if self._base is None:
            self._base = done  # tasks finished before this run (resume)
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (done - self._base) / elapsed
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total, failed=failed,
                                  rate=rate)
            return
        now = time.monotonic()
        final = done >= total
        if (now - self._last_plain >= self.plain_interval and not final) or \
                (final and not self._final_shown):
            self._final_shown = final
            self._last_plain = now
            where = f"  {self._where}" if self._where else ""
            print(f"done {done:,}/{total:,}  failed {failed:,}  {rate:,.0f} tasks/s  "
                  f"eta {_eta(done, total, rate)}{where}", file=self.stream, flush=True)
