"""Rate limiting: `RateLimiter`, a GCRA token bucket per key, in memory or in a shared store.

The arithmetic lives once, in the private pure module `resilient._gcra` (it takes `now`),
below both this package and the stores; where the state is kept is `resilient.storage`'s
business.
"""

from __future__ import annotations

from resilient.rate_limit._limiter import RateLimiter as RateLimiter

__all__ = ("RateLimiter",)
