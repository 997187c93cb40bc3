"""Retry: run failed calls again, with jittered backoff, a retry budget and deadlines.

- `Backoff` (pure) computes the delay before each retry;
- `RetryBudget` (a pure ledger) keeps retries a bounded fraction of calls;
- `Retry` is the policy: decorator, `.call()` and the block form `attempts()`.
"""

from __future__ import annotations

from resilient.retry._backoff import Backoff as Backoff
from resilient.retry._backoff import Jitter as Jitter
from resilient.retry._budget import RetryBudget as RetryBudget
from resilient.retry._retry import Attempt as Attempt
from resilient.retry._retry import AttemptIterator as AttemptIterator
from resilient.retry._retry import Retry as Retry
from resilient.retry._retry import RetryStatistics as RetryStatistics

__all__ = (
    "Attempt",
    "AttemptIterator",
    "Backoff",
    "Jitter",
    "Retry",
    "RetryBudget",
    "RetryStatistics",
)
