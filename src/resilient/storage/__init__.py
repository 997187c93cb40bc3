"""Where shared policies keep their state: the `Store` protocol and its backends.

`MemoryStore` keeps a rate limiter's buckets in this process, bounded in memory. A Redis
store that shares them between processes plugs in behind the same `Store` protocol: every
decision is one atomic round trip on the store's own clock.

Examples:
    ```python
    from resilient import RateLimiter
    from resilient.storage import MemoryStore

    store = MemoryStore(max_keys=100_000)
    per_user = RateLimiter(5, per=1.0, store=store, name="per-user")
    ```
"""

from __future__ import annotations

from resilient.storage._base import Decision as Decision
from resilient.storage._base import Store as Store
from resilient.storage.memory import MemoryStore as MemoryStore

__all__ = ("Decision", "MemoryStore", "Store")

# Public names report the public module, not the private one they live in.
for _name in __all__:
    globals()[_name].__module__ = "resilient.storage"
del _name
