"""CircuitBreaker: stop calling a dependency that keeps failing, and probe it until it recovers.

The pure state machine lives in `_state`, the outcome windows in `_windows`, and the async
driver (the policy itself) in `_breaker`.
"""

from resilient.circuit_breaker._breaker import CircuitBreaker as CircuitBreaker
from resilient.circuit_breaker._breaker import CircuitBreakerMetrics as CircuitBreakerMetrics
from resilient.circuit_breaker._state import CircuitState as CircuitState

__all__ = ("CircuitBreaker", "CircuitBreakerMetrics", "CircuitState")
