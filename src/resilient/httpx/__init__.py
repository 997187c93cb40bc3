"""resilient.httpx: a resilient httpx client in one line.

`httpx.AsyncClient(transport=ResilientTransport())` retries what is safe to retry,
honours `Retry-After` and the `RateLimit` fields, and keeps a circuit breaker per host.

Examples:
    ```python
    import httpx
    from resilient.httpx import ResilientTransport

    async with httpx.AsyncClient(transport=ResilientTransport()) as client:
        response = await client.get("https://api.example.com/users/42")
    ```
"""

try:
    import httpx as _httpx  # noqa: F401 - only to fail early with the right message
except ImportError as _exc:  # pragma: no cover - the extra is installed in development
    raise ImportError(
        "resilient.httpx needs httpx: pip install 'resilient-patterns[httpx]'"
    ) from _exc

from resilient.httpx._classify import BREAKER_FAILURE_STATUS_CODES as BREAKER_FAILURE_STATUS_CODES
from resilient.httpx._classify import IDEMPOTENT_METHODS as IDEMPOTENT_METHODS
from resilient.httpx._classify import REFUSAL_STATUS_CODES as REFUSAL_STATUS_CODES
from resilient.httpx._classify import TRANSIENT_STATUS_CODES as TRANSIENT_STATUS_CODES
from resilient.httpx._classify import is_breaker_failure as is_breaker_failure
from resilient.httpx._classify import is_breaker_failure_response as is_breaker_failure_response
from resilient.httpx._classify import is_refusal_response as is_refusal_response
from resilient.httpx._classify import is_transient_error as is_transient_error
from resilient.httpx._classify import is_transient_response as is_transient_response
from resilient.httpx._classify import may_resend as may_resend
from resilient.httpx._transport import STREAM as STREAM
from resilient.httpx._transport import Host as Host
from resilient.httpx._transport import ResilientTransport as ResilientTransport

__all__ = (  # noqa: RUF022 - sorted() order, as tests/test_exported_members.py checks
    "BREAKER_FAILURE_STATUS_CODES",
    "Host",
    "IDEMPOTENT_METHODS",
    "REFUSAL_STATUS_CODES",
    "ResilientTransport",
    "STREAM",
    "TRANSIENT_STATUS_CODES",
    "is_breaker_failure",
    "is_breaker_failure_response",
    "is_refusal_response",
    "is_transient_error",
    "is_transient_response",
    "may_resend",
)

# Public names report the public module, not the private one they live in.
for _name in __all__:
    _obj = globals()[_name]
    if callable(_obj) and getattr(_obj, "__module__", "").startswith("resilient.httpx."):
        _obj.__module__ = "resilient.httpx"
del _name, _obj
