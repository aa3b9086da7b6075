"""One benchmark worker: prepare, warm up, measure, clean up, on one event loop.

Each operation is timed with `perf_counter_ns` around the store call alone, and its
latency goes into the native histogram of its kind (`batchops._histogram`). Nothing is
retried (the stores are built with retries off): a failure is counted under its error
code and its latency is not mixed into the successes'. GET bodies are streamed and
dropped, their bytes counted, and the time to the first block is kept apart. Payloads
are slices of one random buffer: no operation allocates its own.

The Batch Operations workloads (copy, tagging, restore, checksum) run one task of the
job's own operation (`batchops.operations`) per operation measured, on a one-row chunk.
`copy` copies within the same store, to `copies/` under the worker's prefix (each task's
destination given on its row, as a JSON Lines manifest gives it), so the clean-up
removes the copies with the rest.

`mixed` reads (GET, HEAD) only the objects prepared for reading, which nothing deletes;
its DELETEs take objects from a pool of their own (a reserve prepared for them, then
the objects the run itself PUT), so no read ever races a delete.

A worker prints JSON lines on stdout: `{"tick": ...}` once a second while it measures,
then `{"result": ...}` (histograms as hex of `Histogram.to_bytes`).
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import obstore as obs
import orjson

from batchops._histogram import Histogram
from batchops.bench.spec import JOB_OPERATIONS, READS_OBJECTS, BenchSpec
from batchops.model.chunk import Chunk
from batchops.storage.locations import Resolver, is_s3, split_location
from batchops.storage.outcomes import classify

#: The parameters of the Batch Operations operations the job workloads run.
JOB_PARAMS: Mapping[str, dict[str, Any]] = MappingProxyType({
    "copy": {},  # no TargetResource: each task's row names its destination
    "tagging": {"TagSet": [{"Key": "bench", "Value": "1"}]},
    "restore": {"ExpirationInDays": 1, "GlacierJobTier": "BULK"},
    "checksum": {"ChecksumAlgorithm": "CRC32C"},
})


def is_stable(totals: Sequence[float], tolerance: float) -> bool:
    """Autoterm's test (as warp's): every one-second total within `tolerance` (a
    fraction) of their median, and some work done."""
    if not totals:
        return False
    median = statistics.median(totals)
    return median > 0 and all(abs(t - median) <= tolerance * median for t in totals)


class Kind:
    """What one kind of operation did: latencies, bytes, errors, per second."""

    def __init__(self) -> None:
        self.hist = Histogram()
        self.ttfb = Histogram()
        self.ops = 0
        self.bytes = 0
        self.errors: Counter[str] = Counter()
        self.retries = 0
        self.seconds: dict[int, list[Any]] = {}  # second → [ops, bytes, errors, Histogram]

    def second(self, s: int) -> list[Any]:
        seg = self.seconds.get(s)
        if seg is None:
            seg = self.seconds[s] = [0, 0, 0, Histogram()]
        return seg

    def to_json(self) -> dict[str, Any]:
        return {"hist": self.hist.to_bytes().hex(), "ttfb": self.ttfb.to_bytes().hex(),
                "ops": self.ops, "bytes": self.bytes, "errors": dict(self.errors),
                "retries": self.retries,
                "seconds": {str(s): [v[0], v[1], v[2], v[3].to_bytes().hex()]
                            for s, v in sorted(self.seconds.items())}}


class Worker:
    def __init__(self, spec: BenchSpec, index: int, emit: Callable[[dict[str, Any]], None]):
        self.spec = spec
        self.index = index
        self.emit = emit
        loc = split_location(spec.url)
        query = spec.url.split("?", 1)[1] if "?" in spec.url and loc.scheme in ("s3", "s3a") \
            else ""
        self.bucket = "bench"
        self.resolver = Resolver(((self.bucket, loc.root + (f"?{query}" if query else "")),),
                                 concurrency=spec.concurrency, aws=spec.aws)
        self.loc = self.resolver.location(self.bucket)
        self.store = self.resolver.store(self.loc, create=True)
        run = uuid.uuid4().hex[:8]
        base = loc.prefix + (spec.prefix.strip("/") + "/" if spec.prefix.strip("/") else "")
        self.root = f"{base}batchops-bench-{run}/w{index}/"
        self.payload = memoryview(os.urandom(spec.max_size()))
        self.rng = random.Random(index)
        self.pool: list[tuple[str, int]] = []  # objects there to read: (key, size)
        # mixed: the objects its deletes take (never read), apart from `pool`
        self.doomed: list[tuple[str, int]] = []
        self.prepared = 0
        self.seq = 0
        self.size_turn = 0
        self.kinds: dict[str, Kind] = {}
        self.job_op: Any = None
        self.start = 0
        self.stop_at = 0.0
        self.remaining = 0
        self.measuring = False

    # -- sizes, keys ----------------------------------------------------------------------

    def size(self) -> int:
        spec = self.spec
        if spec.size_range:
            return self.rng.randint(*spec.size_range)
        self.size_turn += 1  # (not `seq`: key() moves it too, and would skip sizes)
        return spec.sizes[(self.size_turn - 1) % len(spec.sizes)]

    def key(self, what: str) -> str:
        self.seq += 1
        return f"{self.root}{what}-{self.seq:09d}"

    # -- operations: each returns the bytes it moved -------------------------------------

    async def put(self, multipart: bool = False,
                  into: list[tuple[str, int]] | None = None) -> int:
        """PUT one object; it joins `into` (default: the pool of objects to read; mixed
        puts its own into the deletes' pool)."""
        size = self.size()
        key = self.key("obj")
        if multipart:
            await obs.put_async(self.store, key, self.payload[:size], use_multipart=True,
                                chunk_size=self.spec.part_size, max_concurrency=4)
        else:
            await obs.put_async(self.store, key, self.payload[:size], use_multipart=False)
        (self.pool if into is None else into).append((key, size))
        return size

    async def get(self, t0: int) -> int:
        key, _ = self.rng.choice(self.pool)
        result = await obs.get_async(self.store, key)
        n = 0
        first = True
        async for block in result.stream(min_chunk_size=1 << 20):
            if first:
                self.kind("get").ttfb.record(time.perf_counter_ns() - t0)
                first = False
            n += len(block)
        return n

    async def stat(self) -> int:
        key, _ = self.rng.choice(self.pool)
        await obs.head_async(self.store, key)
        return 0

    async def delete(self) -> int | None:
        pool = self.doomed if self.spec.workload == "mixed" else self.pool
        if not pool:
            return None  # nothing left to delete: this coroutine is done
        # Taken out of the pool before the call: no other coroutine picks it meanwhile.
        key, _ = pool.pop(self.rng.randrange(len(pool)))
        await obs.delete_async(self.store, key)
        return 0

    async def listing(self) -> int:
        async for _ in obs.list(self.store, prefix=self.root, chunk_size=1000):
            pass
        return 0

    async def job_task(self) -> int:
        """One task of a Batch Operations operation, through the job's own code (copy:
        to a new key under `copies/`, on the same store)."""
        key, size = self.rng.choice(self.pool)
        if self.spec.workload == "copy":
            chunk = Chunk(0, 0, [self.bucket], [key], [None], [key], [self.bucket],
                          [self.key("copies/copy")])
        else:
            chunk = Chunk(0, 0, [self.bucket], [key], [None], [key])
        await self.job_op.run(chunk, 0)
        return size

    def kind(self, name: str) -> Kind:
        k = self.kinds.get(name)
        if k is None:
            k = self.kinds[name] = Kind()
        return k

    def pick(self) -> str | None:
        """The next operation (None: nothing is left to do). In mixed, a delete is drawn
        only while its pool holds an object: the other operations are drawn meanwhile."""
        w = self.spec.workload
        if w != "mixed":
            return w
        mix = {n: v for n, v in self.spec.mix.items() if v > 0}
        if not self.doomed:
            mix.pop("delete", None)
        if not mix:
            return None  # a deletes-only mix whose pool is empty: done
        names = list(mix)
        return self.rng.choices(names, weights=[mix[n] for n in names])[0]

    async def one(self, name: str, t0: int) -> int | None:
        if name == "put":
            return await self.put(into=self.doomed if self.spec.workload == "mixed" else None)
        if name == "multipart":
            return await self.put(multipart=True)
        if name == "get":
            return await self.get(t0)
        if name == "stat":
            return await self.stat()
        if name == "delete":
            return await self.delete()
        if name == "list":
            return await self.listing()
        return await self.job_task()

    # -- phases ---------------------------------------------------------------------------

    async def prepare(self) -> float:
        """Create the objects the workload reads (not measured)."""
        t = time.monotonic()
        n = self.spec.objects if self.spec.workload in READS_OBJECTS else 0
        if self.spec.workload == "delete" and self.spec.count:
            n = max(n, -(-self.spec.count // self.spec.workers))
        if self.spec.workload == "restore":  # archived objects, through the S3 API
            client = await self.resolver.s3api(self.loc).client()

            async def archived() -> None:
                key = self.key("obj")
                size = self.size()
                await client.put_object(Bucket=self.loc.root.split("://", 1)[1], Key=key,
                                        Body=bytes(self.payload[:size]),
                                        StorageClass="GLACIER")
                self.pool.append((key, size))
            make: Callable[[], Any] = archived
        else:
            make = self.put
        left = n

        async def maker(make: Callable[[], Any]) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await self.steady(make)

        await asyncio.gather(*(maker(make) for _ in range(self.spec.concurrency)))
        if self.spec.workload == "mixed" and self.spec.mix.get("delete", 0) > 0:
            # The deletes' own reserve (as many again), so they can start at once.
            left = n
            await asyncio.gather(*(maker(lambda: self.put(into=self.doomed))
                                   for _ in range(self.spec.concurrency)))
        self.prepared = len(self.pool) + len(self.doomed)
        return time.monotonic() - t

    @staticmethod
    async def steady(make: Callable[[], Any], tries: int = 8) -> Any:
        """Run an unmeasured call (preparation, clean-up), trying transient failures
        again: they are not what the benchmark measures."""
        for attempt in range(tries):
            try:
                return await make()
            except Exception as exc:  # noqa: BLE001 - retryable ones are tried again
                if attempt == tries - 1 or not classify(exc).retryable:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        return None

    async def drive(self) -> None:
        """One coroutine of the measured (or warm-up) run."""
        clock = time.perf_counter_ns
        while True:
            if self.spec.count and self.measuring:
                if self.remaining <= 0:
                    return
                self.remaining -= 1
            elif time.monotonic() >= self.stop_at:
                return
            name = self.pick()
            if name is None:
                return
            t0 = clock()
            attempt = 0
            moved: int | None | BaseException
            while True:
                try:
                    moved = await self.one(name, t0)
                    break
                except Exception as exc:  # noqa: BLE001 - every error is counted by its code
                    outcome = classify(exc)
                    if outcome.retryable and attempt < self.spec.retries:
                        attempt += 1  # the operation's latency includes its retries
                        if self.measuring:
                            self.kind(name).retries += 1
                        continue
                    moved = exc
                    break
            if isinstance(moved, BaseException):
                if not self.measuring:
                    continue
                k = self.kind(name)
                k.errors[classify(moved).error_code or type(moved).__name__] += 1
                k.second(int((clock() - self.start) // 1_000_000_000))[2] += 1
                continue
            if moved is None:
                if self.spec.workload == "delete":
                    return
                if self.spec.count and self.measuring:
                    self.remaining += 1  # nothing was done: not one of the N
                continue
            if not self.measuring:
                continue
            t1 = clock()
            k = self.kind(name)
            k.hist.record(t1 - t0)
            k.ops += 1
            k.bytes += moved
            seg = k.second(int((t1 - self.start) // 1_000_000_000))
            seg[0] += 1
            seg[1] += moved
            seg[3].record(t1 - t0)

    async def ticker(self, done: asyncio.Event) -> None:
        last = 0
        while not done.is_set():
            await asyncio.sleep(0.25)
            second = int((time.perf_counter_ns() - self.start) // 1_000_000_000)
            if second <= last:
                continue
            last = second
            merged = Histogram()
            for k in self.kinds.values():
                merged.merge(k.hist)
            tick = {"second": second, "ops": {n: k.ops for n, k in self.kinds.items()},
                    "bytes": sum(k.bytes for k in self.kinds.values()),
                    "errors": sum(sum(k.errors.values()) for k in self.kinds.values()),
                    "p50_ms": merged.percentile(50) / 1e6,
                    "p99_ms": merged.percentile(99) / 1e6}
            self.emit({"tick": tick})
            if self.spec.autoterm and self._stable(second):
                self.stop_at = 0.0
                self.remaining = 0

    def _stable(self, now: int) -> bool:
        """Whether the last whole seconds (second 0 left out: it starts cold) are stable."""
        seconds = range(now - self.spec.autoterm_segments, now)
        if seconds.start < 1:
            return False
        totals = [sum(k.seconds.get(s, [0])[0] for k in self.kinds.values()) for s in seconds]
        return is_stable(totals, self.spec.autoterm_tolerance)

    async def measure(self) -> tuple[float, dict[str, float]]:
        spec = self.spec
        if spec.workload in JOB_OPERATIONS:
            from batchops.operations import get_operation

            op = get_operation(JOB_OPERATIONS[spec.workload])
            params: dict[str, Any] = JOB_PARAMS[spec.workload]
            self.job_op = op(op.validate(params, self.resolver), self.resolver)
        if spec.warmup and spec.workload != "delete":  # (a warm-up would use up the objects)
            self.emit({"phase": "warming up"})
            self.stop_at = time.monotonic() + spec.warmup
            self.remaining = 0
            await asyncio.gather(*(self.drive() for _ in range(spec.concurrency)))
        self.emit({"phase": "measuring"})
        self.measuring = True
        self.remaining = -(-spec.count // spec.workers) if spec.count else 0
        self.stop_at = time.monotonic() + spec.duration
        before = resource.getrusage(resource.RUSAGE_SELF)
        self.start = time.perf_counter_ns()
        done = asyncio.Event()
        ticker = asyncio.ensure_future(self.ticker(done))
        await asyncio.gather(*(self.drive() for _ in range(spec.concurrency)))
        elapsed = (time.perf_counter_ns() - self.start) / 1e9
        after = resource.getrusage(resource.RUSAGE_SELF)
        self.emit({"phase": "measured"})
        if self.job_op is not None:
            self.job_op.sync_chunk_done()  # (folders the job's code held open)
        done.set()
        await ticker
        return elapsed, {"user": after.ru_utime - before.ru_utime,
                         "sys": after.ru_stime - before.ru_stime}

    async def clean(self) -> int:
        """Remove everything this worker made (unless --keep)."""
        async def listed() -> list[str]:
            keys = []
            async for batch in obs.list(self.store, prefix=self.root, chunk_size=1000):
                keys += [m["path"] for m in batch]
            return keys

        keys: list[str] = await self.steady(listed)
        for start in range(0, len(keys), 1000):
            part = keys[start:start + 1000]

            async def remove(part: list[str] = part) -> None:
                await obs.delete_async(self.store, part)

            await self.steady(remove)
        return len(keys)

    async def run(self) -> dict[str, Any]:
        self.emit({"phase": "preparing"})
        prepared = await self.prepare()
        try:
            elapsed, cpu = await self.measure()
        finally:
            cleaned = 0 if self.spec.keep else await self.clean()
        await self.resolver.aclose()
        return {"worker": self.index, "prefix": self.root, "prepare_seconds": prepared,
                "prepared": self.prepared,
                "elapsed": elapsed, "cpu": cpu, "cleaned": cleaned,
                "kinds": {n: k.to_json() for n, k in self.kinds.items()},
                "s3": is_s3(self.loc)}


def main() -> None:
    """`python -m batchops.bench.run`: the spec and worker index as JSON on stdin."""
    import uvloop

    request = orjson.loads(sys.stdin.buffer.read())
    spec = BenchSpec.from_json(request["spec"])

    def emit(doc: dict[str, Any]) -> None:
        sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
        sys.stdout.buffer.flush()

    try:
        result = uvloop.run(Worker(spec, int(request["index"]), emit).run())
    except Exception as exc:  # noqa: BLE001 - one sentence for the parent to show
        emit({"error": classify(exc).message})
        raise SystemExit(3) from None
    emit({"result": result})


if __name__ == "__main__":
    main()
