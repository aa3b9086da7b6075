"""`--engine ray`: the job's workers are Ray actors, across a cluster.

Ray does placement (each actor asks for `num_cpus`), transport (actor calls) and
failure detection (a call on an actor that died raises); batchops adds no protocol of
its own. Each actor runs the same worker as a local process (execute/rayworker.py) and
the coordinator leases chunks to actors exactly as to processes: through the events of
schedule/backends.py. An actor's death (its process killed, its node lost) is a "died"
event and its chunks are leased again.

Chunks cross the wire as byte ranges of the job's copy of the manifest, never as rows:
the job store (and with it that copy, the markers and the report parts) must be on a
path every node sees. Each actor keeps one call waiting for its messages (`events`),
and `wait` takes whichever calls have returned.

Credentials reach actors as Ray users expect: each node's own AWS configuration (the
standard chain), or a Ray runtime environment; they are never put in the job store.
The job's AWS settings (profile names, region, endpoint: no secrets) travel in the
worker configuration, with the AWS_* variables that name configuration rather than
keys (each actor sets them in its process), so that a laptop run behaves as a local
one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Any

from batchops.model.chunk import Chunk, ChunkRange
from batchops.model.errors import BatchopsError
from batchops.model.spec import WorkerConfig
from batchops.schedule.backends import CANCEL_GRACE, Event, message_event, timeout_cause

#: Seconds an actor's `events` call waits for a message before it returns empty.
POLL_SECONDS = 0.5
#: Environment variables passed to actors: where configuration is, never keys.
PASSED_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
                    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL",
                    "AWS_ENDPOINT_URL_S3", "AWS_EC2_METADATA_DISABLED", "BATCHOPS_HOME",
                    "BATCHOPS_TEST_HOLD_COMMIT")


class RayError(BatchopsError):
    """Ray could not be reached or started (one sentence for the user)."""


def connect(address: str | None) -> Any:
    """Join the Ray cluster at `address` (`auto`, `ray://head:10001`, `host:6379`), or
    start a local Ray instance when there is none; returns the `ray` module."""
    try:
        import ray
    except ImportError:
        raise RayError("--engine ray needs Ray: pip install 'batchops[ray]'") from None
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    probe(address)
    # ray.init puts a SIGTERM handler of its own in place of the caller's (it exits at
    # once, leaving the job Active); the caller's is put back, so that a SIGTERM stops a
    # job as it does on the local engine: Paused, and `resume` continues it.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        # No runtime environment of ours: a job with one cannot use the worker processes
        # Ray keeps started (measured: ~0.8 s more per actor start, bench/RESULTS.md);
        # the configuration variables travel in the WorkerConfig instead.
        ray.init(address=address or None, logging_level=logging.ERROR, log_to_driver=False,
                 include_dashboard=False, configure_logging=True)
    except Exception as exc:  # noqa: BLE001 - any failure to join is one sentence
        where = f"--ray-address {address}" if address else "a local Ray instance"
        raise RayError(f"cannot start or join {where}: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return ray


def probe(address: str | None, timeout: float = 5.0) -> None:
    """Refuse an address nothing answers at, in one sentence, within `timeout` (Ray's
    own client tries again for minutes)."""
    if not address or address == "auto" or address.startswith("local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise RayError(f"--ray-address {address}: expected auto, host:port or "
                       "ray://host:port")
    import socket

    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayError(f"cannot join --ray-address {address}: nothing answers there "
                       f"({exc.strerror or exc}); is the cluster up (`ray status`)?") from None


class RayBackend:
    """Workers as Ray actors (see the module docstring)."""

    by_range = True
    by_range_from = 0

    def __init__(self, address: str | None = None, num_cpus: float = 1.0) -> None:
        self.ray = connect(address)
        from batchops.execute.rayworker import ChunkWorker

        # SPREAD: actors go to as many nodes as the cluster has (a node lost takes as few
        # of them as it can); no restarts: a dead actor's chunks are leased again instead.
        self._actor_class = self.ray.remote(num_cpus=num_cpus, max_concurrency=4,
                                            max_restarts=0,
                                            scheduling_strategy="SPREAD")(ChunkWorker)
        self.actors: dict[int, Any] = {}
        self._polls: dict[Any, int] = {}  # an actor's pending `events` call -> its id
        self._cfg: WorkerConfig | None = None
        self._next_wid = 0
        self._causes: dict[int, str] = {}  # why an actor we stopped went, for the log
        self._nodes: dict[int, str] = {}  # the node each actor runs on
        self._spare: list[tuple[int, Any]] = []  # started early, given no job yet

    def prestart(self, n: int) -> None:
        """Start `n` actors now, without a job: Ray starts a worker process for each and
        it imports batchops while this process creates and prepares the job (the local
        engine starts its worker processes early in the same way)."""
        for _ in range(n):
            wid = self._next_wid
            self._next_wid += 1
            self._spare.append((wid, self._actor_class.remote(wid)))

    def start(self, cfg: WorkerConfig, n: int) -> list[int]:
        env = tuple((k, os.environ[k]) for k in PASSED_VARIABLES if k in os.environ)
        self._cfg = dataclasses.replace(cfg, env=env)
        spare, self._spare = self._spare, []
        for wid, actor in spare[:n]:
            actor.configure.remote(self._cfg)
            self.actors[wid] = actor
            self._polls[actor.events.remote(POLL_SECONDS)] = wid
        for _, actor in spare[n:]:
            self.ray.kill(actor, no_restart=True)
        while len(self.actors) < n:
            self.add()
        return sorted(self.actors)

    def discard_unused(self) -> None:
        """End actors started early that no job used."""
        for _, actor in self._spare:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._spare = []

    def add(self) -> int:
        assert self._cfg is not None, "start() first"
        wid = self._next_wid
        self._next_wid += 1
        actor = self._actor_class.remote(wid, self._cfg)
        self.actors[wid] = actor
        self._polls[actor.events.remote(POLL_SECONDS)] = wid
        return wid

    def send(self, wid: int, chunk: Chunk | ChunkRange) -> None:
        actor = self.actors.get(wid)
        if actor is not None:
            actor.submit.remote(chunk)  # an actor that died: its poll says so

    def wait(self, timeout: float) -> list[Event]:
        if not self._polls:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self._polls), num_returns=1, timeout=timeout)
        if ready:  # and whatever else has returned meanwhile
            ready, _ = self.ray.wait(list(self._polls), num_returns=len(self._polls),
                                     timeout=0)
        events: list[Event] = []
        for ref in ready:
            wid = self._polls.pop(ref)
            try:
                messages = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - RayActorError, ActorDiedError, ...
                self.actors.pop(wid, None)
                events.append(("died", wid, self._causes.pop(wid, None) or
                               self._death(wid, exc)))
                continue
            for msg in messages:
                if msg[0] == "started":
                    self._nodes[wid] = msg[1].get("node", "")
                    events.append(("started", wid, msg[1]))
                    continue
                event = message_event(wid, msg)
                events.append(event)
                if event[0] == "timeout":
                    self._causes[wid] = timeout_cause(event[2])
            events.append(("alive", wid, None))
            actor = self.actors.get(wid)
            if actor is not None:
                self._polls[actor.events.remote(POLL_SECONDS)] = wid
        return events

    def _death(self, wid: int, exc: BaseException) -> str:
        """Why an actor is gone, in words: its node's state (from Ray's node table), else
        the error's type."""
        node = self._nodes.pop(wid, "")
        try:
            alive = {n["NodeID"]: n["Alive"] for n in self.ray.nodes()}
        except Exception:  # noqa: BLE001 - only for the log
            alive = {}
        if node and alive.get(node) is False:
            return f"its Ray node {node[:12]} was lost"
        name = type(exc).__name__
        if name in ("ActorDiedError", "RayActorError"):
            return "its Ray actor died (its process was killed or exited)"
        if name == "ActorUnavailableError":
            return "its Ray actor became unreachable"
        return f"its Ray actor failed ({name})"

    def slow_down(self, wid: int) -> None:
        actor = self.actors.get(wid)
        if actor is not None:
            actor.slow_down.remote()

    def kill(self, wid: int) -> None:
        actor = self.actors.get(wid)
        if actor is not None:
            self._causes.setdefault(wid, "its worker stopped answering")
            self.ray.kill(actor, no_restart=True)

    def stop(self, report: bool) -> None:
        if report:  # each actor first writes what ran of its chunks in flight
            calls = [a.stop_and_report.remote() for a in self.actors.values()]
            self.ray.wait(calls, num_returns=len(calls), timeout=CANCEL_GRACE + 4)
        for actor in self.actors.values():
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors.clear()
        self._polls.clear()
        self.discard_unused()


__all__ = ["RayBackend", "RayError", "connect", "probe"]
