"""`LimitsStore`: a `RateLimiter` store that runs a `limits` strategy on a `limits` storage.

For services that already keep rate limits with the `limits` library (directly, or through
slowapi or Flask-Limiter): `RateLimiter(rate, per=..., store=LimitsStore(storage,
strategy=...))` counts its permits with limits' fixed window, moving window or sliding
window counter, in any of limits' async storages (in memory, or on any of the servers limits
supports), next to the limits those services already have.

A limiter is a token bucket (GCRA): `burst` permits at once, then one every `per / rate`
seconds. The store counts it as `burst` permits per window of `burst * per / rate` seconds
(the time the whole bucket takes to come back), which keeps both the steady rate and the
largest burst from rest. limits counts in whole seconds, so that window must be a whole
number of seconds. How each strategy admits bursts differs from the bucket; the
*Interop* page of the documentation draws the mapping and the differences.

Needs the `limits` extra (`pip install 'resilient-patterns[limits]'`), and asyncio: limits'
async storages are built on asyncio.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Mapping
from typing import Any, Final

try:
    from limits import RateLimitItem, RateLimitItemPerSecond
    from limits.aio.storage import Storage as AsyncStorage
    from limits.aio.strategies import (
        FixedWindowRateLimiter,
        MovingWindowRateLimiter,
        SlidingWindowCounterRateLimiter,
    )
    from limits.aio.strategies import RateLimiter as LimitsStrategy
    from limits.errors import ConfigurationError
    from limits.storage import Storage as SyncStorage
    from limits.storage import storage_from_string
except ImportError as exc:  # pragma: no cover - exercised with limits hidden, in a test
    raise ImportError(
        "resilient.interop.limits needs the limits package (4.1 or newer): "
        "pip install 'resilient-patterns[limits]'"
    ) from exc

from resilient._clock import Clock
from resilient._gcra import EPSILON, Decision
from resilient._validate import check_clock, short_repr

__all__ = ("LimitsStore",)

#: The strategies by the names limits gives them.
_STRATEGIES: Final[Mapping[str, type[LimitsStrategy]]] = {
    "fixed-window": FixedWindowRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}

#: Keys kept as they are in the storage: short, and made of characters that every limits
#: storage takes literally (memcached refuses spaces and control characters, limits joins a
#: key's parts with "/", and its Redis storage wraps keys in braces as cluster hash tags).
#: Any other key is stored as "#" and its SHA-256, so no two keys can meet.
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")

#: A prefix: plain, and short enough that a whole key stays under memcached's 250 bytes.
_PREFIX: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")

#: When limits says a window is open again but a hit was just refused (another caller took
#: the permit first, or the reset time was rounded to whole seconds, as Redis' TTL is),
#: seconds until the store looks again.
_LOOK_AGAIN: Final = 0.05

#: Seconds added to a wait for the window, so that the store wakes just after it opens, not
#: on its edge (limits' moving window still counts an entry exactly one window old).
_MARGIN: Final = 0.001

#: Rate-limit items kept per store; a limiter needs one, and direct callers rarely more.
_MAX_ITEMS: Final = 256


def _storage_key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key):
        return key
    return "#" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "LimitsStore runs on asyncio only (limits' async storages are built on it); "
            "this call is not running in an asyncio event loop"
        ) from None


def _window_item(emission_interval: Any, burst: Any, namespace: str) -> RateLimitItem:
    """`burst` permits per window of `burst * emission_interval` whole seconds."""
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
        raise ValueError(f"burst must be a whole number >= 1, got {short_repr(burst)}")
    if (
        not isinstance(emission_interval, int | float)
        or isinstance(emission_interval, bool)
        or not 0 < emission_interval < math.inf
    ):
        raise ValueError(
            f"emission_interval must be a finite number > 0, got {short_repr(emission_interval)}"
        )
    window = burst * emission_interval
    seconds = round(window) if math.isfinite(window) else 0
    if seconds < 1 or not math.isclose(window, seconds, rel_tol=1e-9):
        raise ValueError(
            "LimitsStore counts permits in windows of whole seconds (the unit of limits), and "
            "a limiter's window is the time its whole burst takes to come back, burst * per "
            f"/ rate: here {window:g}s (burst={burst}, per / rate={emission_interval:g}s). "
            "Choose them so that it is a whole number of seconds >= 1 (with the default "
            "burst, which is rate, the window is `per` seconds)"
        )
    return RateLimitItemPerSecond(burst, seconds, namespace=namespace)


def _check_storage(storage: Any, options: Any) -> AsyncStorage:
    if isinstance(storage, str):
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"options must be a mapping or None, got {short_repr(options)}")
        try:
            built = storage_from_string(storage, **(options or {}))
        except ConfigurationError as exc:
            hint = ""
            if "coredis" in str(exc):
                hint = " (to use redis-py instead, pass options={'implementation': 'redispy'})"
            raise ValueError(
                f"storage {short_repr(storage)} could not be set up by limits: {exc}{hint}"
            ) from exc
        except TypeError as exc:
            raise ValueError(
                f"options {short_repr(options)} do not fit storage {short_repr(storage)}: {exc}"
            ) from exc
        if not isinstance(built, AsyncStorage):
            raise ValueError(
                f"storage must be an async limits storage, got {short_repr(storage)}, a "
                f"synchronous one that would block the event loop; use 'async+{storage}'"
            )
        return built
    if options is not None:
        raise ValueError(
            "options are for a storage given by its URI; set them up on the storage object "
            f"itself, got options={short_repr(options)}"
        )
    if isinstance(storage, AsyncStorage):
        return storage
    if isinstance(storage, SyncStorage):
        raise ValueError(
            f"storage must be an async limits storage (limits.aio.storage), got the "
            f"synchronous {type(storage).__name__}, which would block the event loop"
        )
    raise ValueError(
        "storage must be an async limits storage or its URI (such as 'async+memory://'), "
        f"got {short_repr(storage)}"
    )


def _check_strategy(strategy: Any) -> tuple[str, type[LimitsStrategy]]:
    if isinstance(strategy, str) and strategy in _STRATEGIES:
        return strategy, _STRATEGIES[strategy]
    if isinstance(strategy, type) and issubclass(strategy, LimitsStrategy):
        for name, known in _STRATEGIES.items():
            if strategy is known:
                return name, strategy
        return strategy.__name__, strategy
    names = ", ".join(repr(name) for name in _STRATEGIES)
    raise ValueError(
        f"strategy must be one of {names} or a limits.aio.strategies.RateLimiter subclass, "
        f"got {short_repr(strategy)}"
    )


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"prefix must be 1 to 64 letters, digits or any of '_.:-', got {short_repr(prefix)}"
        )
    return prefix


class LimitsStore:
    """A `RateLimiter` store that counts permits with a `limits` strategy and storage.

    Args:
        storage: a limits async storage (`limits.aio.storage.MemoryStorage()`,
            `limits.aio.storage.RedisStorage(...)`, ...), or its URI (`"async+memory://"`,
            ...), which limits' `storage_from_string` builds.
        strategy: how limits counts: `"fixed-window"`, `"moving-window"` or
            `"sliding-window-counter"`, or a `limits.aio.strategies.RateLimiter` subclass.
            No default: the strategies admit bursts differently (see below), so the choice
            is yours.
        prefix: the namespace of this store's keys in the storage (1 to 64 letters,
            digits or `_.:-`, default `"resilient"`). The strategy's name follows it, so
            that stores of different strategies never share a key, and some limits
            storages add their own in front (`RedisStorage` adds `LIMITS:`).
        options: keyword arguments for the storage, when `storage` is a URI (for example
            `{"implementation": "redispy"}`, which `RedisStorage` takes to run on the
            client it names rather than on coredis). `None` (default) for none.
        clock: the clock the store waits on while a limiter's `max_wait` lets a caller wait
            for the window to open (default: the monotonic clock). limits itself reads the
            wall clock (`time.time`) for its decisions.

    Raises `ValueError`, naming the field and the value, for a storage, strategy, prefix or
    options it cannot use, and for a strategy the storage does not support (memcached has
    no moving window). Without limits installed, importing this module raises `ImportError`
    naming `pip install 'resilient-patterns[limits]'`.

    **The mapping.** A limiter of `rate` permits per `per` seconds with bucket `burst` is
    counted as `burst` permits per window of `burst * per / rate` seconds (limits'
    `RateLimitItemPerSecond(burst, burst * per / rate)`). That window must be a whole
    number of seconds >= 1, because limits counts in whole seconds: the first call of a
    limiter whose window is not raises `ValueError`. With the default `burst` (= `rate`)
    the window is `per` seconds, so `RateLimiter(10, per=1.0)` is limits' `10/second` and
    `RateLimiter(100, per=60.0)` its `100/minute`.

    **Decisions.** Each decision is limits' `hit`, then `get_window_stats` for what is left
    and when the window opens: two calls into limits (three for a fixed-window request of
    several permits, which is tested first, since limits' fixed window counts a refused
    hit), each one or two round trips to a server. They are atomic each, not together:
    under contention `remaining` and `retry_after` are read just after the decision.
    `retry_after` is the reset time limits reports less the wall clock now: for the fixed
    window, when the window resets (exact in memory; a server that keeps expiry in whole
    seconds rounds it); for the moving window, when its oldest permit leaves (early for a
    request of several permits); for the sliding window counter, limits' estimate of when
    its count next falls. When limits reports a time already past, the store looks again
    after 50 ms.

    **Waiting.** A window cannot reserve a permit ahead of time the way the bucket does, so
    when the limiter lets a caller wait (`max_wait`), the store itself sleeps until the
    window should open and tries again, for as long as the wait allows; the call then
    counts as allowed, not delayed, in the limiter's telemetry. Waiters are not served first
    come, first served: when the window opens they race for it. A caller cancelled while it
    waits holds nothing, so nothing is given back, and `refund` always returns `False`.

    **Errors.** An error of the storage (its server down) propagates to the caller as
    limits raised it: the limiter neither admits nor rejects.

    Asyncio only.

    Examples:
        ```python
        from resilient import RateLimiter
        from resilient.interop.limits import LimitsStore

        store = LimitsStore("async+memory://", strategy="moving-window")
        limiter = RateLimiter(10, per=1.0, store=store, name="partner-api")
        await limiter.acquire()
        ```
    """

    __slots__ = (
        "_clock",
        "_items",
        "_namespace",
        "_storage",
        "_strategy",
        "_strategy_name",
        "_test_first",
        "prefix",
    )

    def __init__(
        self,
        storage: str | AsyncStorage,
        *,
        strategy: str | type[LimitsStrategy],
        prefix: str = "resilient",
        options: Mapping[str, float | str | bool] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._strategy_name, strategy_type = _check_strategy(strategy)
        self.prefix = _check_prefix(prefix)
        # Strategies keep different data under the same key (a counter, a list): each has
        # a namespace of its own.
        self._namespace = f"{self.prefix}/{self._strategy_name}"
        self._clock = check_clock(clock)
        self._storage = _check_storage(storage, options)
        try:
            self._strategy = strategy_type(self._storage)
        except NotImplementedError:
            raise ValueError(
                f"strategy {self._strategy_name!r} does not run on limits' "
                f"{type(self._storage).__name__}; choose another strategy or storage"
            ) from None
        # limits' fixed window counts a refused hit: a request for several permits is
        # tested first, so that a refusal takes nothing, as it does in the bucket.
        self._test_first = issubclass(strategy_type, FixedWindowRateLimiter)
        self._items: dict[tuple[float, int], RateLimitItem] = {}

    def __repr__(self) -> str:
        return (
            f"LimitsStore({type(self._storage).__name__}, strategy={self._strategy_name!r}, "
            f"prefix={self.prefix!r})"
        )

    @property
    def storage(self) -> AsyncStorage:
        """The limits storage the permits are counted in."""
        return self._storage

    @property
    def strategy(self) -> LimitsStrategy:
        """The limits strategy that counts them, running on `storage`."""
        return self._strategy

    @property
    def strategy_name(self) -> str:
        """The strategy's name: limits' own (`"moving-window"`), or its class's name."""
        return self._strategy_name

    def _item(self, emission_interval: float, burst: int) -> RateLimitItem:
        items = self._items
        item = items.get((emission_interval, burst))
        if item is None:
            item = _window_item(emission_interval, burst, self._namespace)
            if len(items) >= _MAX_ITEMS:
                items.clear()
            items[(emission_interval, burst)] = item
        return item

    async def acquire(
        self,
        key: str,
        *,
        emission_interval: float,
        burst: int,
        cost: int,
        max_wait: float,
    ) -> Decision:
        """Admit or reject a request for `cost` permits on `key` (see `Store.acquire`).

        The permits are taken at once or not at all: an admitted decision never asks the
        caller to wait (`wait` is 0.0). When `max_wait` allows, the store waits for the
        window itself before deciding. `Decision.tat` is the window's reset time, on the
        wall clock.

        Raises:
            ValueError: the window, `burst * emission_interval`, is not a whole number of
                seconds >= 1, or `cost` is not a whole number from 1 to `burst`.
            RuntimeError: not running on asyncio.
        """
        _require_asyncio()
        item = self._item(emission_interval, burst)
        if not isinstance(cost, int) or isinstance(cost, bool) or not 1 <= cost <= burst:
            raise ValueError(
                f"cost must be a whole number from 1 to {burst}, got {short_repr(cost)}"
            )
        if not max_wait >= 0:
            raise ValueError(f"max_wait must be a number >= 0, got {short_repr(max_wait)}")
        name = _storage_key(key)
        strategy = self._strategy
        started: float | None = None
        while True:
            admitted = False
            if cost == 1 or not self._test_first or await strategy.test(item, name, cost=cost):
                admitted = await strategy.hit(item, name, cost=cost)
            if admitted:
                stats = await strategy.get_window_stats(item, name)
                left = max(0, min(burst, stats.remaining))
                return Decision(True, 0.0, 0.0, left, stats.reset_time)
            stats = await strategy.get_window_stats(item, name)
            # limits gives reset times on the wall clock (its own, or its server's expiry
            # added to it): only the wall clock turns them into seconds from now.
            retry_after = stats.reset_time - time.time()
            if retry_after <= EPSILON:
                retry_after = _LOOK_AGAIN
            now = self._clock.now()
            if started is None:
                started = now
            budget = max_wait - (now - started)
            if retry_after > budget + EPSILON:
                left = max(0, min(burst, stats.remaining))
                return Decision(False, 0.0, retry_after, left, stats.reset_time)
            await self._clock.sleep(min(retry_after + _MARGIN, budget))

    async def refund(self, key: str, *, tat: float, emission_interval: float, cost: int) -> bool:
        """Always `False`: nothing to give back (see `Store.refund`).

        This store never reserves permits ahead of time (it waits for the window before
        taking them), so a cancelled waiter holds none; and limits has no way to take back
        a hit that was counted.
        """
        return False

    async def peek(self, key: str, *, emission_interval: float, burst: int) -> int:
        """Whole permits `key` could take now, by limits' `get_window_stats`; changes nothing.

        Raises:
            ValueError: the window, `burst * emission_interval`, is not a whole number of
                seconds >= 1.
            RuntimeError: not running on asyncio.
        """
        _require_asyncio()
        item = self._item(emission_interval, burst)
        stats = await self._strategy.get_window_stats(item, _storage_key(key))
        return max(0, min(burst, stats.remaining))
