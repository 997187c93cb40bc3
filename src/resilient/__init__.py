"""resilient: async resilience patterns for Python services.

Timeouts, retries with jittered backoff and a retry budget, circuit breakers, bulkheads,
rate limits, load shedding and fallbacks, composable in a `Pipeline`, usable as decorators, through
`.call()`, or as `async with` blocks, on asyncio and trio, with OpenTelemetry built in.

Examples:
    ```python
    from resilient import Pipeline, Retry, Timeout

    policy = Pipeline(Timeout(10), Retry(attempts=3), Timeout(2))

    @policy
    async def get_user(user_id: int) -> dict: ...
    ```
"""

from resilient._clock import Clock as Clock
from resilient._clock import MonotonicClock as MonotonicClock
from resilient._deadline import time_left as time_left
from resilient._version import __version__ as __version__
from resilient.bulkhead import Bulkhead as Bulkhead
from resilient.chaos import Chaos as Chaos
from resilient.circuit_breaker import CircuitBreaker as CircuitBreaker
from resilient.circuit_breaker import CircuitBreakerMetrics as CircuitBreakerMetrics
from resilient.circuit_breaker import CircuitState as CircuitState
from resilient.exceptions import BulkheadFullError as BulkheadFullError
from resilient.exceptions import CircuitOpenError as CircuitOpenError
from resilient.exceptions import LoadShedError as LoadShedError
from resilient.exceptions import RateLimitedError as RateLimitedError
from resilient.exceptions import RejectedError as RejectedError
from resilient.exceptions import ResilienceError as ResilienceError
from resilient.exceptions import StorageUnavailableError as StorageUnavailableError
from resilient.exceptions import ThrottledError as ThrottledError
from resilient.exceptions import TimeoutExceeded as TimeoutExceeded
from resilient.fallback import Fallback as Fallback
from resilient.hedge import Hedge as Hedge
from resilient.load_shedding import AIMD as AIMD
from resilient.load_shedding import Gradient2 as Gradient2
from resilient.load_shedding import LoadShedder as LoadShedder
from resilient.pipeline import Pipeline as Pipeline
from resilient.rate_limit import RateLimiter as RateLimiter
from resilient.retry import Attempt as Attempt
from resilient.retry import Backoff as Backoff
from resilient.retry import Retry as Retry
from resilient.retry import RetryBudget as RetryBudget
from resilient.retry import RetryStatistics as RetryStatistics
from resilient.throttle import AdaptiveThrottle as AdaptiveThrottle
from resilient.timeout import Timeout as Timeout

__all__ = (
    "AIMD",
    "AdaptiveThrottle",
    "Attempt",
    "Backoff",
    "Bulkhead",
    "BulkheadFullError",
    "Chaos",
    "CircuitBreaker",
    "CircuitBreakerMetrics",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "Fallback",
    "Gradient2",
    "Hedge",
    "LoadShedError",
    "LoadShedder",
    "MonotonicClock",
    "Pipeline",
    "RateLimitedError",
    "RateLimiter",
    "RejectedError",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryStatistics",
    "StorageUnavailableError",
    "ThrottledError",
    "Timeout",
    "TimeoutExceeded",
    "__version__",
    "time_left",
)

# Public names report the public module, not the private one they live in.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("resilient."):
        _obj.__module__ = "resilient"
del _name, _obj
