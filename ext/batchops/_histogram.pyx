"""A latency histogram with bounded relative error (HDR style), for `batchops bench`.

Values (nanoseconds, or any non-negative integers) below 128 are counted exactly. Above,
each power of two is cut into 128 equal buckets, so a bucket is at most 1/128 of its
lower bound wide, and a percentile reported at the middle of its bucket is within
1/256 (0.39 %) of the true value. min, max, count and sum are exact. 7,424 counters cover
every 64-bit value; recording is a few integer instructions without the GIL, and two
histograms merge by adding their counters (across coroutines, workers and machines:
`to_bytes` / `from_bytes`).
"""

from libc.math cimport ceil
from libc.stdint cimport uint64_t
from libc.string cimport memset

cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil

cdef enum:
    SUB_BITS = 7
    SUB = 128
    BUCKETS = 7424  # (63 - SUB_BITS + 2) * SUB: every 64-bit value

#: The largest relative error of a reported percentile.
RELATIVE_ERROR = 1.0 / 256


cdef inline int _index(uint64_t v) noexcept nogil:
    cdef int e
    if v < SUB:
        return <int>v
    e = 63 - __builtin_clzll(v)
    return ((e - SUB_BITS + 1) << SUB_BITS) + <int>((v >> (e - SUB_BITS)) & (SUB - 1))


cdef inline double _middle(int i) noexcept nogil:
    """The middle of bucket i (its only value when the bucket is one wide)."""
    cdef int k
    cdef uint64_t low, width
    if i < SUB:
        return <double>i
    k = i >> SUB_BITS
    low = (<uint64_t>(SUB + (i & (SUB - 1)))) << (k - 1)
    width = (<uint64_t>1) << (k - 1)
    return <double>low + (<double>width - 1.0) / 2.0


cdef class Histogram:
    cdef uint64_t counts[BUCKETS]
    cdef readonly uint64_t count
    cdef readonly uint64_t total
    cdef readonly uint64_t min
    cdef readonly uint64_t max

    def __cinit__(self):
        memset(self.counts, 0, sizeof(self.counts))
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    cpdef void record(self, uint64_t value):
        """Count one value (a latency in nanoseconds)."""
        self.counts[_index(value)] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    cpdef void merge(self, Histogram other):
        """Add `other`'s values to this one."""
        cdef int i
        if other.count == 0:
            return
        for i in range(BUCKETS):
            self.counts[i] += other.counts[i]
        if self.count == 0 or other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max
        self.count += other.count
        self.total += other.total

    def mean(self):
        return self.total / self.count if self.count else 0.0

    cpdef double percentile(self, double q) except -1.0:
        """The value at percentile `q` (0 to 100), within RELATIVE_ERROR; the exact min
        and max at 0 and 100; 0 when nothing was recorded."""
        cdef uint64_t rank, seen = 0
        cdef int i
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"a percentile is from 0 to 100, not {q}")
        if self.count == 0:
            return 0.0
        if q <= 0.0:
            return <double>self.min
        if q >= 100.0:
            return <double>self.max
        rank = <uint64_t>ceil(q / 100.0 * self.count)  # the nearest rank
        if rank < 1:
            rank = 1
        for i in range(BUCKETS):
            seen += self.counts[i]
            if seen >= rank:
                return min(max(_middle(i), <double>self.min), <double>self.max)
        return <double>self.max

    def to_bytes(self):
        """The non-empty buckets and the exact figures, for merging elsewhere."""
        import struct

        cdef int i
        parts = [struct.pack("<4Q", self.count, self.total, self.min, self.max)]
        for i in range(BUCKETS):
            if self.counts[i]:
                parts.append(struct.pack("<HQ", i, self.counts[i]))
        return b"".join(parts)

    @staticmethod
    def from_bytes(data):
        import struct

        cdef Histogram h = Histogram()
        cdef Py_ssize_t off
        cdef int i
        if len(data) < 32 or (len(data) - 32) % 10:
            raise ValueError("not a histogram's bytes")
        h.count, h.total, h.min, h.max = struct.unpack_from("<4Q", data, 0)
        for off in range(32, len(data), 10):
            i, n = struct.unpack_from("<HQ", data, off)
            if i >= BUCKETS:
                raise ValueError(f"histogram bucket {i} is out of range")
            h.counts[i] = n
        return h
