# The scheduler core: per-task state in workers, per-chunk leases in the parent.
#
# Rules this module relies on:
# - Every method runs with the GIL held, so ChunkRun.take()/succeed()/fail() are
#   atomic with respect to the worker's coroutines *and* its sync-path threads.
#   Do not add `nogil` sections that touch the state arrays.
# - Task indices are chunk-relative (0 <= i < size). Chunk indices are job-relative.
#   The arrays are unchecked (boundscheck=False): every method taking an index checks
#   it first (_check_index), since indices come from disk (markers) and from workers.
# - A task's state only moves forward: PENDING -> RUNNING -> (SUCCEEDED | FAILED),
#   with RUNNING -> RUNNING again on a retry.

from libc.stdint cimport uint8_t, uint16_t, uint64_t, int64_t

cdef enum TaskState:
    PENDING = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3

cdef class RetryPolicy:
    cdef readonly int max_attempts
    cdef readonly double base_delay
    cdef readonly double max_delay
    cdef uint64_t _rng
    cdef double _uniform(self)
    cpdef double delay(self, int attempt)

cdef class ChunkRun:
    cdef readonly Py_ssize_t size
    cdef readonly Py_ssize_t succeeded
    cdef readonly Py_ssize_t failed
    cdef readonly Py_ssize_t retries
    cdef readonly bint closed
    cdef Py_ssize_t _next
    cdef uint8_t[::1] _state
    cdef uint16_t[::1] _attempts
    cdef RetryPolicy _policy
    cpdef Py_ssize_t take(self)
    cpdef void succeed(self, Py_ssize_t i) except *
    cpdef double fail(self, Py_ssize_t i, bint retryable) except? -2.0
    cpdef void succeed_all(self)
    cpdef void close(self)

cdef class Scheduler:
    cdef readonly Py_ssize_t n_chunks
    cdef readonly int64_t total_tasks
    cdef readonly int64_t succeeded
    cdef readonly int64_t failed
    cdef readonly Py_ssize_t chunks_done
    cdef readonly int64_t failure_min_tasks
    cdef readonly double failure_ratio
    cdef uint8_t[::1] _done
    cdef Py_ssize_t _cursor
    cdef list _requeue
    cdef dict _leases
    cdef dict _partial
    cpdef Py_ssize_t next_chunk(self)

cdef class RateLimiter:
    cdef readonly double rate
    cdef readonly double burst
    cdef double _tokens
    cdef double _last
    cpdef double reserve(self, double n, double now)

cdef class Aimd:
    cdef readonly double limit
    cdef readonly int floor
    cdef readonly int ceiling
    cdef readonly long long throttled
    cdef double _last_cut
    cdef double _cooldown
    cpdef void on_success(self)
    cpdef void on_throttle(self, double now)
    cpdef void cut(self, double now)
