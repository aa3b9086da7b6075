# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Scheduler core: task retry/backoff state for workers, chunk leases and counters
for the parent. See _scheduler.pxd for the rules the code relies on."""

from libc.math cimport pow
from libc.stdint cimport uint8_t, uint16_t, uint64_t, int64_t
from cpython.object cimport PyObject

import os


cdef inline int _check_index(Py_ssize_t i, Py_ssize_t size, str what) except -1:
    # The arrays below are read and written without bounds checks (boundscheck=False):
    # every index that comes from outside (a marker on disk, a worker's message, a
    # caller) passes through here first.
    if i < 0 or i >= size:
        raise IndexError(f"{what} {i} is out of range (0 to {size - 1})")
    return 0


cdef class RetryPolicy:
    """Exponential backoff with full jitter: delay(n) ~ U(0, min(max, base * 2**n))."""

    def __cinit__(self, int max_attempts=5, double base_delay=0.05, double max_delay=20.0,
                  seed=None):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._rng = <uint64_t>(seed if seed is not None else int.from_bytes(os.urandom(8), "little"))
        if self._rng == 0:
            self._rng = 0x9E3779B97F4A7C15

    cdef double _uniform(self):
        # xorshift64*: fast, good enough for jitter, never 0 state.
        self._rng ^= self._rng >> 12
        self._rng ^= self._rng << 25
        self._rng ^= self._rng >> 27
        cdef uint64_t x = self._rng * <uint64_t>0x2545F4914F6CDD1DULL
        return <double>(x >> 11) / 9007199254740992.0

    cpdef double delay(self, int attempt):
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        cdef double cap = self.base_delay * pow(2.0, attempt - 1)
        if cap > self.max_delay:
            cap = self.max_delay
        return cap * self._uniform()

    def __reduce__(self):
        return (RetryPolicy, (self.max_attempts, self.base_delay, self.max_delay))


cdef class ChunkRun:
    """The state of every task of one chunk inside a worker.

    Coroutines (or sync-path threads) call take() for the next task to start, then
    succeed(i) or fail(i, retryable). fail() returns the backoff delay in seconds
    when the task should be tried again, or -1.0 when it has failed for good.
    """

    def __cinit__(self, Py_ssize_t size, RetryPolicy policy not None):
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self._policy = policy
        self._state = bytearray(size)
        self._attempts = memoryview(bytearray(size * 2)).cast("H")
        self._next = 0
        self.succeeded = 0
        self.failed = 0
        self.retries = 0

    cpdef Py_ssize_t take(self):
        cdef Py_ssize_t i = self._next
        if i >= self.size or self.closed:
            return -1
        self._next = i + 1
        self._state[i] = RUNNING
        self._attempts[i] = 1
        return i

    cpdef void succeed(self, Py_ssize_t i) except *:
        _check_index(i, self.size, "task")
        if self._state[i] != RUNNING:
            raise ValueError(f"task {i} is not running")
        self._state[i] = SUCCEEDED
        self.succeeded += 1

    cpdef double fail(self, Py_ssize_t i, bint retryable) except? -2.0:
        _check_index(i, self.size, "task")
        if self._state[i] != RUNNING:
            raise ValueError(f"task {i} is not running")
        cdef int attempt = self._attempts[i]
        if retryable and attempt < self._policy.max_attempts:
            self._attempts[i] = attempt + 1
            self.retries += 1
            return self._policy.delay(attempt)
        self._state[i] = FAILED
        self.failed += 1
        return -1.0

    cpdef void succeed_all(self):
        """Mark every not-yet-started task succeeded (operations with no per-task work)."""
        cdef Py_ssize_t i
        for i in range(self._next, self.size):
            self._state[i] = SUCCEEDED
        self.succeeded += self.size - self._next
        self._next = self.size

    cpdef void close(self):
        """Start no more tasks (a cancelled job): take() returns -1 from now on, and the
        tasks already started finish as usual."""
        self.closed = True

    @property
    def started(self):
        """How many tasks take() has handed out."""
        return self._next

    @property
    def done(self):
        return self.succeeded + self.failed

    @property
    def finished(self):
        return self.succeeded + self.failed == self.size

    def attempts(self, Py_ssize_t i):
        _check_index(i, self.size, "task")
        return self._attempts[i]

    def state(self, Py_ssize_t i):
        """0 pending, 1 running, 2 succeeded, 3 failed."""
        _check_index(i, self.size, "task")
        return self._state[i]

    def failed_indices(self):
        cdef Py_ssize_t i
        return [i for i in range(self.size) if self._state[i] == FAILED]

    def done_indices(self):
        """Tasks that succeeded or failed for good, in order."""
        cdef Py_ssize_t i
        return [i for i in range(self.size) if self._state[i] >= SUCCEEDED]


cdef class Scheduler:
    """Chunk leases and job counters, kept by the parent process.

    Chunks are handed out in manifest order; a chunk taken back from a dead worker is
    handed out again before any new one. Finished chunks (from the checkpoint) are
    never handed out.
    """

    def __cinit__(self, Py_ssize_t n_chunks, int64_t total_tasks,
                  int64_t failure_min_tasks=1000, double failure_ratio=0.5):
        self.n_chunks = n_chunks
        self.total_tasks = total_tasks
        self._done = bytearray(n_chunks)
        self._cursor = 0
        self._requeue = []
        self._leases = {}
        self._partial = {}
        self.succeeded = 0
        self.failed = 0
        self.chunks_done = 0
        self.failure_min_tasks = failure_min_tasks
        self.failure_ratio = failure_ratio

    def mark_done(self, Py_ssize_t chunk, int64_t succeeded, int64_t failed):
        """Record a finished chunk once (from the checkpoint, or via complete())."""
        _check_index(chunk, self.n_chunks, "chunk")
        if self._done[chunk]:
            return
        self._done[chunk] = 1
        self.chunks_done += 1
        self.succeeded += succeeded
        self.failed += failed

    def is_done(self, Py_ssize_t chunk):
        _check_index(chunk, self.n_chunks, "chunk")
        return bool(self._done[chunk])

    cpdef Py_ssize_t next_chunk(self):
        """The next chunk to lease, or -1 when every chunk is done or leased."""
        cdef Py_ssize_t c
        while self._requeue:
            c = self._requeue.pop()
            if not self._done[c] and c not in self._leases:
                return c
        while self._cursor < self.n_chunks:
            c = self._cursor
            self._cursor += 1
            if not self._done[c] and c not in self._leases:
                return c
        return -1

    def lease(self, Py_ssize_t chunk, worker):
        _check_index(chunk, self.n_chunks, "chunk")
        self._leases[chunk] = worker

    def leased_to(self, worker):
        return sorted(c for c, w in self._leases.items() if w == worker)

    def progress(self, Py_ssize_t chunk, int64_t succeeded, int64_t failed):
        """A running chunk's partial counts (for progress and the failure threshold)."""
        if chunk in self._leases:
            self._partial[chunk] = (succeeded, failed)

    def complete(self, Py_ssize_t chunk, int64_t succeeded, int64_t failed):
        """A leased chunk finished (its marker is durable)."""
        self._leases.pop(chunk, None)
        self._partial.pop(chunk, None)
        self.mark_done(chunk, succeeded, failed)

    def release(self, worker):
        """Take back every chunk leased to `worker` (it died); they run again from their start."""
        cdef list back = sorted((c for c, w in self._leases.items() if w == worker), reverse=True)
        for c in back:
            del self._leases[c]
            self._partial.pop(c, None)
        self._requeue.extend(back)
        return sorted(back)

    def release_all(self):
        """Take back every lease (the run stopped); partial counts are dropped."""
        back = sorted(self._leases)
        self._leases.clear()
        self._partial.clear()
        self._requeue.extend(reversed(back))
        return back

    @property
    def in_flight(self):
        return len(self._leases)

    @property
    def finished(self):
        return self.chunks_done == self.n_chunks

    def counters(self):
        """(succeeded, failed) including the partial counts of running chunks."""
        cdef int64_t s = self.succeeded, f = self.failed
        for ps, pf in self._partial.values():
            s += ps
            f += pf
        return s, f

    def threshold_exceeded(self):
        """Amazon's rule: at least `failure_min_tasks` ran and more than `failure_ratio` failed."""
        s, f = self.counters()
        cdef int64_t ran = s + f
        return ran >= self.failure_min_tasks and ran > 0 and f > self.failure_ratio * ran


cdef class RateLimiter:
    """Token bucket with reservations: reserve(n, now) debits n tokens and returns how
    many seconds the caller must wait first (0.0 when tokens were there). Debts are
    allowed, so concurrent callers queue up in order and the long-run rate is exact."""

    def __cinit__(self, double rate, double burst=0.0):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst > 0 else max(1.0, rate / 10.0)
        self._tokens = self.burst
        self._last = -1.0

    cpdef double reserve(self, double n, double now):
        if self._last < 0:
            self._last = now
        self._tokens += (now - self._last) * self.rate
        self._last = now
        if self._tokens > self.burst:
            self._tokens = self.burst
        self._tokens -= n
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate


cdef class Aimd:
    """Adaptive concurrency: additive increase (about +1 per `limit` successes),
    multiplicative decrease (halve) on throttling, at most once per cooldown."""

    def __cinit__(self, int ceiling, int floor=1, double cooldown=0.5):
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(floor, self.ceiling))
        self.limit = self.ceiling
        self.throttled = 0
        self._last_cut = -1e18
        self._cooldown = cooldown

    cpdef void on_success(self):
        if self.limit < self.ceiling:
            self.limit += 1.0 / self.limit
            if self.limit > self.ceiling:
                self.limit = self.ceiling

    cpdef void on_throttle(self, double now):
        self.throttled += 1
        self.cut(now)

    cpdef void cut(self, double now):
        """Halve the limit (at most once per cooldown) without counting a throttle of
        ours: another worker of the job was throttled (the store's limit is shared)."""
        if now - self._last_cut >= self._cooldown:
            self._last_cut = now
            self.limit = self.limit / 2.0
            if self.limit < self.floor:
                self.limit = self.floor

    @property
    def allowed(self):
        return <int>self.limit
