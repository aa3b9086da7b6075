"""The latency histogram of the native core (groundwork for `batchops bench`, issue 12):
known values come back within the stated relative error at every percentile."""

from __future__ import annotations

import math
import random

import pytest

from batchops._histogram import RELATIVE_ERROR, Histogram


def _exact(values: list[int], q: float) -> int:
    """The nearest-rank percentile."""
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


DISTRIBUTIONS = {
    "uniform ns to 1 s": lambda r: r.randint(0, 10**9),
    "lognormal around 2 ms": lambda r: int(r.lognormvariate(math.log(2e6), 1.2)),
    "small integers": lambda r: r.randint(0, 127),
    "bimodal (cache hits and misses)": lambda r: r.choice((r.randint(50_000, 60_000),
                                                           r.randint(20_000_000, 90_000_000))),
    "hours (the sum stays exact below 2**64 ns, 584 years)": lambda r: r.randint(2**40, 2**44),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_percentiles_are_within_the_stated_relative_error(name: str) -> None:
    r = random.Random(name)
    values = [DISTRIBUTIONS[name](r) for _ in range(50_000)]
    h = Histogram()
    for v in values:
        h.record(v)
    values.sort()
    assert (h.count, h.min, h.max, h.total) == (len(values), values[0], values[-1], sum(values))
    assert h.mean() == pytest.approx(sum(values) / len(values))
    for q in (0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99):
        exact = _exact(values, q)
        got = h.percentile(q)
        assert abs(got - exact) <= RELATIVE_ERROR * exact, (q, got, exact)
    assert h.percentile(0) == values[0] and h.percentile(100) == values[-1]


def test_values_below_128_are_exact() -> None:
    h = Histogram()
    for v in range(128):
        h.record(v)
    assert [h.percentile((v + 1) / 128 * 100) for v in range(128)] == list(range(128))


def test_merging_is_the_same_as_recording_everything_in_one() -> None:
    r = random.Random(7)
    parts = [Histogram() for _ in range(4)]
    whole = Histogram()
    for _ in range(20_000):
        v = r.randint(0, 10**8)
        r.choice(parts).record(v)
        whole.record(v)
    merged = Histogram()
    for p in parts:
        merged.merge(Histogram.from_bytes(p.to_bytes()))  # as from another process
    assert merged.to_bytes() == whole.to_bytes()
    assert merged.percentile(99) == whole.percentile(99)


def test_empty_and_bad_input() -> None:
    h = Histogram()
    assert (h.count, h.percentile(50), h.mean()) == (0, 0.0, 0.0)
    with pytest.raises(ValueError):
        h.percentile(101)
    with pytest.raises(ValueError):
        Histogram.from_bytes(b"short")
    with pytest.raises(ValueError):
        Histogram.from_bytes(bytes(32) + (60000).to_bytes(2, "little") + bytes(8))
