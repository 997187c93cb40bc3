"""Adapters that let resilient work with libraries a service may already use.

- `resilient.interop.limits`: `LimitsStore`, a `RateLimiter` store that runs a `limits`
  strategy (fixed window, moving window, sliding window counter) on a `limits` async
  storage. Needs the `limits` extra: `pip install 'resilient-patterns[limits]'`.

- `resilient.interop.tenacity`: `TenacityBackoff`, a `Backoff` that waits and stops with
  tenacity's `wait_*` and `stop_*` strategies inside a `Retry`. Needs the `tenacity` extra:
  `pip install 'resilient-patterns[tenacity]'`.

- `resilient.interop.pybreaker`: `PyBreakerPolicy`, a policy that runs an existing
  `pybreaker.CircuitBreaker` correctly around async calls (as a decorator, with `.call()`,
  `async with`, or as a `Pipeline` stage). Needs the `pybreaker` extra:
  `pip install 'resilient-patterns[pybreaker]'`.

Each adapter is its own module, imported
only when used, so importing `resilient.interop` needs none of these libraries.
"""

from __future__ import annotations

__all__ = ()
