"""Where rate limiters keep their state: the `Store` protocol and its backends.

`MemoryStore` keeps a rate limiter's buckets in this process, bounded in memory; limiters
given the same store and the same `name` share their buckets. `RedisStore` keeps them on
Redis or Redis Cluster, so that every process using the same Redis shares one limit (on
asyncio). Every decision is one atomic step on the store's own clock. A store declares what
it can do through protocols: `Store` (the rate-limit buckets, as coroutines),
`SyncStore` (the same without awaiting, for state in this process) and `BreakerStore`
(circuit breaker state shared between processes, which `RedisStore` also keeps).

Examples:
    ```python
    from resilient import RateLimiter
    from resilient.storage import MemoryStore

    store = MemoryStore(max_keys=100_000)
    per_user = RateLimiter(5, per=1.0, store=store, name="per-user")
    ```
"""

from __future__ import annotations

from resilient.storage._base import BreakerSettings as BreakerSettings
from resilient.storage._base import BreakerStore as BreakerStore
from resilient.storage._base import BreakerView as BreakerView
from resilient.storage._base import Decision as Decision
from resilient.storage._base import Store as Store
from resilient.storage._base import SyncStore as SyncStore
from resilient.storage.memory import MemoryStore as MemoryStore
from resilient.storage.redis import RedisStore as RedisStore

__all__ = (
    "BreakerSettings",
    "BreakerStore",
    "BreakerView",
    "Decision",
    "MemoryStore",
    "RedisStore",
    "Store",
    "SyncStore",
)

# Public names report the public module, not the private one they live in.
for _name in __all__:
    globals()[_name].__module__ = "resilient.storage"
del _name
