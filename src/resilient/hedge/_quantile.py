"""A bounded quantile estimator of recent latencies: a log-bucketed histogram in two
generations. Pure: no clock, no awaits, constant memory.

Values fall into buckets whose edges grow geometrically (`low * growth**i`), so the
estimate of any quantile is the upper edge of the bucket that holds it: never below the
exact quantile of the samples, and less than `growth` times it (5 % with the default
growth), whatever the spread of the values, for values within `[low, high]`.

Recency comes from two generations of counts: samples go into the current one, and when
it holds `generation` samples it becomes the previous one and the older one is dropped.
An estimate reads both, so it always covers between `generation` and `2 * generation`
of the most recent samples, and a change of the latency distribution is followed within
two generations.

Reading the quantile walks the buckets, so it is done once every `refresh` samples and
cached: adding a sample and reading the estimate are O(1) on the hot path.
"""

from __future__ import annotations

import math
from array import array
from typing import Final

from resilient._validate import (
    check_non_negative,
    check_positive,
    check_positive_int,
    check_ratio,
    short_repr,
)

__all__ = ("QuantileEstimator",)

#: Before this many samples, there is no estimate (too few to speak of a tail).
MIN_SAMPLES: Final = 20


class QuantileEstimator:
    """The `quantile` of recent values, in bounded memory.

    Args:
        quantile: which quantile, in (0, 1) (0.95 for the 95th percentile).
        low: the smallest value told apart, > 0 (default 1e-5: 10 µs); smaller ones count
            as `low`.
        high: the largest value told apart (default 1000.0); larger ones count as `high`.
        growth: the ratio between two bucket edges, > 1 (default 1.05: estimates within
            5 % above the exact quantile).
        generation: samples per generation (default 1000).
        refresh: the estimate is recomputed every `refresh` samples (default 32).
        min_samples: no estimate before this many samples (default 20).
        spread: how many standard deviations of the sample quantile's rank to stay below
            it (>= 0; default 0: the exact rank). With 2, the estimate is a lower bound
            of the quantile at about 97.7 % confidence: a tail about as large as
            `1 - quantile` then does not put the estimate in the tail by chance.

    Examples:
        >>> estimator = QuantileEstimator(0.5, refresh=1)
        >>> for ms in range(1, 101):
        ...     estimator.add(ms / 1000)
        >>> 0.050 <= estimator.estimate() < 0.050 * 1.05
        True
    """

    __slots__ = (
        "_counts",
        "_edges",
        "_estimate",
        "_inv_log_growth",
        "_log_low",
        "_older",
        "_older_range",
        "_range",
        "_since_refresh",
        "generation",
        "high",
        "low",
        "min_samples",
        "quantile",
        "refresh",
        "size",
        "spread",
        "total",
    )

    def __init__(
        self,
        quantile: float,
        *,
        low: float = 1e-5,
        high: float = 1000.0,
        growth: float = 1.05,
        generation: int = 1000,
        refresh: int = 32,
        min_samples: int = MIN_SAMPLES,
        spread: float = 0.0,
    ) -> None:
        self.quantile = check_ratio("quantile", quantile, allow_zero=False)
        if self.quantile >= 1.0:
            raise ValueError(f"quantile must be a number in (0, 1), got {short_repr(quantile)}")
        self.low = check_positive("low", low)
        self.high = check_positive("high", high)
        if self.high <= self.low:
            raise ValueError(f"high must be above low ({low!r}), got {short_repr(high)}")
        growth = check_positive("growth", growth)
        if growth <= 1.0:
            raise ValueError(f"growth must be a number > 1, got {short_repr(growth)}")
        self.generation = check_positive_int("generation", generation)
        self.refresh = check_positive_int("refresh", refresh)
        self.min_samples = check_positive_int("min_samples", min_samples)
        self.spread = check_non_negative("spread", spread)
        # Bucket i holds values in (edges[i-1], edges[i]]; bucket 0 everything up to low.
        buckets = math.ceil(math.log(self.high / self.low) / math.log(growth)) + 1
        self._edges = [self.low * growth**i for i in range(buckets)]
        self._edges[-1] = max(self._edges[-1], self.high)
        self._log_low = math.log(self.low)
        self._inv_log_growth = 1.0 / math.log(growth)
        self._counts = array("q", bytes(8 * buckets))
        self._older = array("q", bytes(8 * buckets))
        # The lowest and highest bucket holding a sample, in each generation: a quantile
        # is looked for between them only.
        self._range = [buckets, -1]
        self._older_range = [buckets, -1]
        self.size = 0  # samples in the current generation
        self.total = 0  # samples in both generations
        self._estimate: float | None = None
        self._since_refresh = 0

    def _bucket(self, value: float) -> int:
        edges = self._edges
        if value <= edges[0]:
            return 0
        last = len(edges) - 1
        if value >= edges[last]:
            return last
        guess = math.ceil((math.log(value) - self._log_low) * self._inv_log_growth)
        # The logarithm may land one bucket off at an edge: settle on the exact one.
        if guess > last:
            guess = last
        if edges[guess] < value:
            guess += 1
        elif guess > 0 and edges[guess - 1] >= value:
            guess -= 1
        return guess

    def add(self, value: float) -> None:
        """Count one value (a latency, in seconds)."""
        # Zero, negative or NaN: the smallest bucket.
        index = self._bucket(value) if value > 0.0 else 0
        self._counts[index] += 1
        span = self._range
        if index < span[0]:
            span[0] = index
        if index > span[1]:
            span[1] = index
        self.size += 1
        self.total += 1
        if self.size >= self.generation:
            # The current generation becomes the previous one; the oldest is dropped.
            self.total = self.size
            self._older, self._counts = self._counts, self._older
            self._older_range, self._range = self._range, self._older_range
            counts, span = self._counts, self._range
            for i in range(span[0], span[1] + 1):
                counts[i] = 0
            span[0], span[1] = len(counts), -1
            self.size = 0
        self._since_refresh += 1
        if self._since_refresh >= self.refresh or self._estimate is None:
            self._since_refresh = 0
            self._estimate = self._compute()

    def estimate(self) -> float | None:
        """The quantile of the recent values, or None before `min_samples` were added."""
        if self.total < self.min_samples:
            return None
        return self._estimate

    def exact(self) -> float | None:
        """The estimate recomputed now (not the cached one)."""
        if self.total < self.min_samples:
            return None
        return self._compute()

    def _compute(self) -> float | None:
        total = self.total
        if total < self.min_samples:
            return None
        q = self.quantile
        rank = max(1, math.ceil(q * total - self.spread * math.sqrt(total * q * (1.0 - q))))
        counts, older = self._counts, self._older
        low = min(self._range[0], self._older_range[0])
        high = max(self._range[1], self._older_range[1])
        if rank * 2 <= total:
            seen = 0
            for index in range(low, high + 1):
                seen += counts[index] + older[index]
                if seen >= rank:
                    return self._edges[index]
        else:
            # A high quantile: count down from the top, the shorter way.
            above = total - rank  # samples strictly above the one of rank `rank`
            seen = 0
            for index in range(high, low - 1, -1):
                seen += counts[index] + older[index]
                if seen > above:
                    return self._edges[index]
        return self._edges[-1]  # pragma: no cover - the ranks add up to total

    def reset(self) -> None:
        """Forget every value."""
        for counts in (self._counts, self._older):
            for i in range(len(counts)):
                counts[i] = 0
        for span in (self._range, self._older_range):
            span[0], span[1] = len(self._edges), -1
        self.size = self.total = 0
        self._estimate = None
        self._since_refresh = 0
