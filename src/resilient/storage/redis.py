"""RedisStore: rate limiter state shared by every process that talks to one Redis."""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import os
from collections.abc import Awaitable, Callable
from importlib import resources
from time import perf_counter
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from resilient._backend import DeadlineQueue, asyncio_loop, deadline_queue_for, run_to_the_end
from resilient._gcra import Decision
from resilient._validate import check_positive, short_repr
from resilient.exceptions import StorageUnavailableError
from resilient.storage._availability import (
    ATTR_MODE,
    ATTR_OPERATION,
    ATTR_ROUND_TRIP,
    FALLBACK,
    MODES,
    ROUND_TRIP,
    Availability,
    Mode,
)
from resilient.storage._base import BreakerSettings, BreakerView
from resilient.storage._multiplex import Multiplexer
from resilient.storage.memory import MemoryStore
from resilient.telemetry._core import PolicyTelemetry

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = ("RedisStore",)

_INSTALL: Final = "pip install 'resilient-patterns[redis]'"
#: The schemes redis-py's `from_url` accepts.
_SCHEMES: Final = ("redis", "rediss", "unix")
#: Most "allow" decisions kept for reuse (one per burst and cost in use).
_MAX_ALLOWED: Final = 256
#: Most hashed keys (and argument heads) kept for reuse; a full cache starts again empty.
_MAX_CACHED: Final = 4096
#: Longest user key whose hashed form is kept: a huge key is hashed every time instead.
_MAX_CACHED_KEY: Final = 256
#: Characters a prefix may not hold: they would move a key's cluster hash tag.
_BRACES: Final = frozenset("{}")


def _redis() -> ModuleType:
    """redis-py, imported on first use; a missing one names the extra to install."""
    try:
        import redis
        import redis.asyncio
        import redis.exceptions
    except ImportError as exc:
        raise ImportError(
            f"resilient.storage.RedisStore needs redis-py; install it with: {_INSTALL}"
        ) from exc
    return redis


class _Script(NamedTuple):
    """One Lua script: its text and the SHA1 that EVALSHA names it by."""

    text: str
    sha: str


@functools.cache
def _scripts() -> dict[str, _Script]:
    """The scripts, read once from the package's `lua/` data: each is the shared prelude
    (and, for a breaker's, the breaker's rules) followed by its own body."""
    folder = resources.files("resilient.storage").joinpath("lua")
    prelude = folder.joinpath("_prelude.lua").read_text(encoding="utf-8")
    rules = folder.joinpath("_breaker.lua").read_text(encoding="utf-8")
    found = {}
    for name in ("acquire", "refund", "peek"):
        body = folder.joinpath(f"gcra_{name}.lua").read_text(encoding="utf-8")
        text = f"{prelude}\n{body}"
        found[name] = _Script(text, hashlib.sha1(text.encode("utf-8")).hexdigest())
    for name in ("admit", "record", "release"):
        body = folder.joinpath(f"breaker_{name}.lua").read_text(encoding="utf-8")
        text = f"{prelude}\n{rules}\n{body}"
        found[f"breaker_{name}"] = _Script(text, hashlib.sha1(text.encode("utf-8")).hexdigest())
    return found


def _redacted(url: str) -> str:
    """`url` without its password, for messages a user (or a log) reads."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<a URL that does not parse>"


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"prefix must be a non-empty string, got {short_repr(prefix)}")
    if _BRACES & set(prefix):
        raise ValueError(
            "prefix must not contain '{' or '}' (they would decide which cluster slot keys "
            f"live in), got {short_repr(prefix)}"
        )
    return prefix


def _check_mode(mode: Any) -> Mode:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"on_unavailable must be one of 'allow', 'deny' or 'local', got {short_repr(mode)}"
        )
    return mode


_new: Final = tuple.__new__

#: A round trip under way: its deadline queue and entry, and its start (0.0: not timed).
_Trip = tuple[DeadlineQueue, list[Any], float, Availability]


class _Unavailable(Exception):
    """A round trip did not reach Redis (internal: the store applies its policy)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class RedisStore:
    """Rate limiter state on Redis or Redis Cluster, shared by every process that uses it.

    Args:
        client_or_url: a `redis://`, `rediss://` or `unix://` URL, from which the store
            builds a `redis.asyncio.Redis` of its own (socket timeouts of `timeout`
            seconds; a connection error is retried once at once, on a fresh connection,
            and nothing else: the store decides what a failure means), or a
            `redis.asyncio.Redis` or `redis.asyncio.RedisCluster` client you built
            (its own settings apply; the store bounds each round trip by `timeout`).
        prefix: the start of every key the store writes (a non-empty string without
            `{` or `}`; default `"resilient"`). Stores with different prefixes on one
            Redis never see each other's state.
        on_unavailable: what a decision does when Redis cannot be reached (default
            `"allow"`): `"allow"` lets the call through, `"deny"` raises
            `resilient.StorageUnavailableError`, and `"local"` decides with a
            `MemoryStore` in this process instead (the same limits, counted per process).
        timeout: the longest, in seconds, that a decision waits for Redis (a number > 0,
            default 0.25). Past it, the decision goes to `on_unavailable`.

    Each decision is one round trip: an atomic Lua script called by `EVALSHA` (a server
    that answers `NOSCRIPT`, the first time or after a restart or a `SCRIPT FLUSH`, is
    sent the script once with `EVAL`, which caches it again), running the same GCRA
    arithmetic as `MemoryStore` on the Redis
    server's clock (`TIME`), so processes whose clocks disagree still share one limit.
    There is no lock and no read-then-write from the client. A bucket's key expires when
    its bucket is full again. User keys are hashed (any bytes, any length) into
    `<prefix>:rl:{<hash>}`, the hash being the cluster hash tag.

    After three failed round trips in a row the store counts Redis as down: decisions go
    straight to `on_unavailable` without waiting, and every few seconds (0.5 s, doubling
    up to 4 s) one decision probes Redis again; the first that succeeds brings the store
    back. `available` says which it is. On a cluster, each master has its own count: a
    failed master sends only its own keys' decisions to `on_unavailable`.

    On a single Redis, the store's round trips share one pipelined connection of its own
    (opened with the client's settings); a cluster client is used through its own pools.

    A decision whose caller is cancelled while its round trip is in flight gives its
    permits back, unless another request took permits on the key after it (the same rule
    as `RateLimiter` applies to a cancelled waiter).

    The store also keeps circuit breaker state (it is a `BreakerStore`):
    `CircuitBreaker(store=...)` shares one state per breaker `name` with every process
    using the same Redis and prefix, in one hash per breaker under
    `<prefix>:cb:{<hash of the name>}`, one round trip per admission and one per outcome.

    The store runs on asyncio only (redis-py's client is asyncio's). A store built from a
    URL owns its client: close it with `await store.aclose()` or `async with store:`.

    Examples:
        ```python
        from resilient import RateLimiter
        from resilient.storage import RedisStore

        store = RedisStore("redis://localhost:6379/0", prefix="billing")
        per_tenant = RateLimiter(100, per=1.0, store=store, name="api")
        await per_tenant.acquire(key="tenant-42")
        await store.aclose()
        ```
    """

    __slots__ = (
        "_acquire_sha",
        "_allowed",
        "_arg_heads",
        "_breaker_args",
        "_client",
        "_execute",
        "_fallback_attrs",
        "_guard",
        "_guards",
        "_head",
        "_keys",
        "_local",
        "_multiplexer",
        "_nonce_head",
        "_nonces",
        "_noscript",
        "_now",
        "_owned",
        "_queue",
        "_scripts",
        "_slots",
        "_telemetry",
        "_unavailable_errors",
        "on_unavailable",
        "prefix",
        "timeout",
    )

    def __init__(
        self,
        client_or_url: str | Redis | RedisCluster,
        *,
        prefix: str = "resilient",
        on_unavailable: Mode = "allow",
        timeout: float = 0.25,
    ) -> None:
        self.timeout = check_positive("timeout", timeout)
        self.prefix = _check_prefix(prefix)
        self.on_unavailable: Mode = _check_mode(on_unavailable)
        redis = _redis()
        if isinstance(client_or_url, str):
            self._client = self._client_from_url(redis, client_or_url)
            self._owned = True
        elif isinstance(client_or_url, redis.asyncio.Redis | redis.asyncio.RedisCluster):
            self._client = client_or_url
            self._owned = False
        else:
            hint = (
                " (a synchronous client would block the event loop: use redis.asyncio)"
                if isinstance(client_or_url, redis.Redis | redis.RedisCluster)
                else ""
            )
            raise ValueError(
                "client_or_url must be a Redis URL or a redis.asyncio.Redis or "
                f"redis.asyncio.RedisCluster client{hint}, got {short_repr(client_or_url)}"
            )
        # Bound once: a decision is one call. On a plain Redis, every round trip shares one
        # pipelined connection (see _multiplex); a cluster routes each key to its node.
        connect = Multiplexer.supports(self._client)
        self._multiplexer = None if connect is None else Multiplexer(connect)
        self._execute: Callable[..., Awaitable[Any]] = (
            self._client.execute_command if self._multiplexer is None else self._multiplexer.execute
        )
        errors = redis.exceptions
        # What "Redis cannot be reached" looks like; any other error is a bug or a
        # misconfiguration (a key of ours holding another type), raised as it is.
        self._unavailable_errors: tuple[type[BaseException], ...] = (
            errors.ConnectionError,
            errors.TimeoutError,
            errors.ClusterError,
            errors.RedisClusterException,
            errors.TryAgainError,
            errors.ReadOnlyError,
            errors.OutOfMemoryError,
            OSError,
        )
        self._noscript: type[BaseException] = errors.NoScriptError
        self._scripts = _scripts()
        self._acquire_sha = self._scripts["acquire"].sha
        self._head = f"{self.prefix}:rl:"
        # A shared breaker's settings as script fields, formatted once per breaker.
        self._breaker_args: dict[BreakerSettings, str] = {}
        self._telemetry = PolicyTelemetry("storage", self.prefix)
        self._guard = Availability(self._telemetry)
        # A cluster: one guard per master (by node name), so that a failed shard sends only
        # its own keys' decisions to `on_unavailable`; `_guard` stands for a node not known
        # yet. Each key's slot is cached with its hashed key.
        self._guards: dict[str, Availability] | None = {} if self._is_cluster() else None
        self._slots: dict[str, int] = {}
        self._fallback_attrs = {ATTR_MODE: self.on_unavailable}
        self._local = MemoryStore() if self.on_unavailable == "local" else None
        # "allow" decisions, made once per (burst, cost): every call while Redis is down.
        self._allowed: dict[tuple[int, int], Decision] = {}
        # Nonces name a request that is cancelled before it sees its decision: unique
        # per store (a random start) and per request (a counter).
        self._nonce_head = f"{os.urandom(6).hex()}-"
        self._nonces = itertools.count()
        # Hashed keys by user key, and each setting's first script arguments (up to the
        # nonce): the same few of each come back on every decision.
        self._keys: dict[str | bytes, str] = {}
        self._arg_heads: dict[tuple[float, int, int, float], str] = {}
        self._queue: DeadlineQueue | None = None
        # Tests fix the time the scripts decide on; in service it is always the server's.
        self._now: Callable[[], float] | None = None

    def _client_from_url(self, redis: ModuleType, url: str) -> Redis:
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in _SCHEMES:
            raise ValueError(
                "client_or_url must be a redis://, rediss:// or unix:// URL, or a client, "
                f"got {short_repr(_redacted(url))}"
            )
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        try:
            client: Redis = redis.asyncio.Redis.from_url(
                url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # One immediate retry on a connection error, on a fresh connection: after
                # Redis restarts, every pooled connection is dead and fails once. Not on a
                # timeout: the store's own deadline and availability guard handle those.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        except ValueError as exc:
            raise ValueError(
                f"client_or_url is not a valid Redis URL ({exc}), got {short_repr(_redacted(url))}"
            ) from None
        return client

    def __repr__(self) -> str:
        return (
            f"RedisStore(prefix={self.prefix!r}, on_unavailable={self.on_unavailable!r}, "
            f"timeout={self.timeout:g})"
        )

    @property
    def client(self) -> Redis | RedisCluster:
        """The redis-py client the store talks through."""
        return self._client

    @property
    def available(self) -> bool:
        """`False` while the store counts Redis as down (decisions go to `on_unavailable`
        without a round trip), or on a cluster any of its masters; `True` otherwise."""
        if self._guard.retry_at is not None:
            return False
        guards = self._guards
        return guards is None or all(guard.retry_at is None for guard in guards.values())

    async def aclose(self) -> None:
        """Close the client, if the store built it from a URL (a client you passed in
        stays yours to close), and the store's own connection."""
        if self._multiplexer is not None:
            await self._multiplexer.aclose()
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- one round trip -------------------------------------------------------------------

    def _key(self, key: str | bytes) -> str:
        hashed = self._keys.get(key)
        if hashed is None:
            data = key if isinstance(key, bytes) else key.encode("utf-8", "surrogatepass")
            hashed = f"{self._head}{{{hashlib.blake2b(data, digest_size=16).hexdigest()}}}"
            if len(key) <= _MAX_CACHED_KEY:
                if len(self._keys) >= _MAX_CACHED:
                    self._keys.clear()
                self._keys[key] = hashed
        return hashed

    def _is_cluster(self) -> bool:
        import redis.asyncio

        return isinstance(self._client, redis.asyncio.RedisCluster)

    def _guard_of(self, store_key: str) -> Availability:
        """The availability guard of the server that holds `store_key`: the store's one
        guard on a single Redis, the guard of the key's master on a cluster."""
        guards = self._guards
        if guards is None:
            return self._guard
        cluster: Any = self._client
        slot = self._slots.get(store_key)
        if slot is None:
            if len(self._slots) >= _MAX_CACHED:
                self._slots.clear()
            slot = self._slots[store_key] = cluster.keyslot(store_key)
        try:
            node = cluster.nodes_manager.get_node_from_slot(slot).name
        except Exception:  # no topology yet (before the first call), or the slot is lost
            return self._guard
        guard = guards.get(node)
        if guard is None:
            guard = guards[node] = Availability(self._telemetry, server=node)
        return guard

    def _arg_head(self, emission_interval: float, burst: int, cost: int, max_wait: float) -> str:
        """The acquire script's arguments before the nonce's counter, for these settings."""
        setting = (emission_interval, burst, cost, max_wait)
        head = self._arg_heads.get(setting)
        if head is None:
            if len(self._arg_heads) >= _MAX_CACHED:
                self._arg_heads.clear()
            head = self._arg_heads[setting] = (
                f"{emission_interval!r} {burst} {cost} {max_wait!r} {self._nonce_head}"
            )
        return head

    def _fixed_now(self) -> str:
        """The last field of a script's arguments: empty (the server's time) in service."""
        now = self._now
        return "" if now is None else f" {now()!r}"

    def _depart(self, guard: Availability) -> _Trip:
        """Start a round trip to the server `guard` watches: its deadline, `timeout` from
        now, and its start time when telemetry records it."""
        loop = asyncio_loop()
        if loop is None:
            raise RuntimeError(
                "RedisStore runs on asyncio only (redis-py's client is asyncio's); "
                "this call is not running in an asyncio task"
            )
        queue = self._queue
        if queue is None or queue.loop_ref() is not loop:
            queue = self._queue = deadline_queue_for(loop, self.timeout)
        started = 0.0 if self._telemetry.quiet() else perf_counter()
        return queue, queue.push(loop), started, guard

    def _arrived(self, trip: _Trip, operation: str) -> None:
        """A round trip got its answer."""
        queue, entry, started, guard = trip
        queue.leave(entry, None)
        if guard.failures or guard.probing or guard.retry_at is not None:
            guard.succeeded()
        if started:
            self._telemetry.emit(
                ROUND_TRIP, {ATTR_OPERATION: operation, ATTR_ROUND_TRIP: perf_counter() - started}
            )

    async def _recover(
        self,
        error: BaseException,
        operation: str,
        key: str,
        args: str,
        trip: _Trip,
        probe: bool,
        ring: str | None = None,
    ) -> Any:
        """A round trip raised `error`. After `NOSCRIPT` (Redis restarted, or its scripts
        were flushed), send the script itself with EVAL, which also caches it again, and
        return its answer. Otherwise raise `_Unavailable` when Redis cannot be reached, or
        `error` itself (a cancellation, a bug)."""
        queue, entry, _, guard = trip
        if isinstance(error, self._noscript):
            try:
                text = self._scripts[operation].text
                if ring is None:
                    return await self._execute("EVAL", text, 1, key, args)
                return await self._execute("EVAL", text, 2, key, ring, args)
            except BaseException as again:
                error = again
        if queue.leave(entry, error):
            cause: BaseException = TimeoutError(f"Redis did not answer within {self.timeout:g}s")
            cause.__cause__ = error
            if self._multiplexer is not None:
                self._multiplexer.reset(self.timeout)
        elif isinstance(error, self._unavailable_errors):
            cause = error
        else:
            guard.abandoned(probe=probe)
            raise error
        guard.failed(cause, probe=probe)
        raise _Unavailable(cause) from None

    async def _call(
        self, operation: str, key: str, args: str, probe: bool, ring: str | None = None
    ) -> Any:
        """Run one script on `key` (and a breaker's `ring`) with its arguments (one string of
        fields), bounded by `timeout`; raise `_Unavailable` when Redis cannot be reached."""
        trip = self._depart(self._guard_of(key))
        sha = self._scripts[operation].sha
        try:
            if ring is None:
                reply = await self._execute("EVALSHA", sha, 1, key, args)
            else:
                reply = await self._execute("EVALSHA", sha, 2, key, ring, args)
        except BaseException as exc:
            reply = await self._recover(exc, operation, key, args, trip, probe, ring)
        self._arrived(trip, operation)
        return reply

    def _try_redis(self, store_key: str) -> tuple[bool, bool]:
        """(whether to make the round trip for `store_key`, whether it is the probe of a
        down server)."""
        guard = self._guard_of(store_key)
        if guard.retry_at is None:
            return True, False
        probe = guard.may_probe()
        return probe, probe

    def _denied(self, cause: BaseException | None) -> StorageUnavailableError:
        reason = "is down" if cause is None else f"cannot be reached ({cause})"
        error = StorageUnavailableError(
            f"the Redis store {self.prefix!r} {reason}, and its on_unavailable is 'deny'"
        )
        error.__cause__ = cause
        return error

    # -- the Store protocol -----------------------------------------------------------------

    async def acquire(
        self,
        key: str,
        *,
        emission_interval: float,
        burst: int,
        cost: int,
        max_wait: float,
    ) -> Decision:
        """Admit, delay or reject a request for `cost` permits (see `Store.acquire`), in
        one round trip; when Redis cannot be reached, as `on_unavailable` says."""
        store_key = self._key(key)
        guard = self._guard if self._guards is None else self._guard_of(store_key)
        probe = False
        if guard.retry_at is not None:
            probe = guard.may_probe()
            if not probe:
                # Down: decide here, without a round trip (and, for "allow" and "deny",
                # without another coroutine: this is every call while Redis is down).
                decision = self._fallback(burst, cost, None)
                if decision is None:
                    decision = await self._local_acquire(
                        key, emission_interval, burst, cost, max_wait
                    )
                return decision
        count = next(self._nonces)
        args = f"{self._arg_head(emission_interval, burst, cost, max_wait)}{count:x}"
        if self._now is not None:
            args += self._fixed_now()
        # `_call`, written out: one coroutine frame fewer on every decision.
        trip = self._depart(guard)
        try:
            try:
                reply = await self._execute("EVALSHA", self._acquire_sha, 1, store_key, args)
            except BaseException as exc:
                reply = await self._recover(exc, "acquire", store_key, args, trip, probe)
        except _Unavailable as unavailable:
            decision = self._fallback(burst, cost, unavailable.cause)
            if decision is None:
                decision = await self._local_acquire(key, emission_interval, burst, cost, max_wait)
            return decision
        except BaseException:
            # Cancelled in flight: the script may have run and taken permits nobody will
            # use. Give them back unless someone took permits after us.
            nonce = f"{self._nonce_head}{count:x}"
            args = f"n {nonce} {emission_interval!r} {cost}{self._fixed_now()}"
            await self._undo("refund", store_key, args)
            raise
        self._arrived(trip, "acquire")
        allowed, seconds, left, tat = reply.split()
        # tuple.__new__: a NamedTuple's own __new__ is a Python function, twice the cost.
        if allowed == b"1" or allowed == "1":  # bytes, or str from a decoding client
            return _new(Decision, (True, float(seconds), 0.0, int(left), float(tat)))
        return _new(Decision, (False, 0.0, float(seconds), int(left), float(tat)))

    async def _undo(self, operation: str, key: str, args: str, ring: str | None = None) -> None:
        """Give back what a cancelled round trip may have taken (a refund of permits, a
        probe slot): runs to its end through the cancellation being delivered, bounded by
        `timeout`; nothing while Redis is down or when it fails (unrefunded permits expire,
        a slot is freed by the breaker's next state change)."""
        if self._guard_of(key).retry_at is not None:
            return
        await run_to_the_end(self._undo_step(operation, key, args, ring))

    async def _undo_step(self, operation: str, key: str, args: str, ring: str | None) -> None:
        try:
            await self._call(operation, key, args, False, ring)
        except Exception:
            pass

    def _decide_nowait(self, key: str, increment: float, capacity: float) -> float:
        """`RateLimiter`'s synchronous question, "take `increment` seconds of permits from
        a bucket of `capacity` seconds now?", answered without awaiting while Redis is
        down: `0.0` (taken, or allowed), or NaN: ask `acquire` (Redis is up, a probe is
        due, the mode is `"deny"`, whose error belongs in the call's own record, or the
        local bucket is empty, where the call may wait: one decision, one fallback
        reported)."""
        guard = self._guard if self._guards is None else self._guard_of(self._key(key))
        if guard.retry_at is None or self.on_unavailable == "deny" or guard.probe_due():
            return math.nan
        local = self._local
        if local is not None and local.acquire_nowait(key, increment, capacity):
            # Not there now (nothing was taken): `acquire` decides, waits or refuses, on
            # the local store, and reports the fallback once.
            return math.nan
        telemetry = self._telemetry
        if not telemetry.quiet():
            telemetry.emit(FALLBACK, self._fallback_attrs)
        return 0.0

    def _fallback(self, burst: int, cost: int, cause: BaseException | None) -> Decision | None:
        """The `on_unavailable` decision for a request Redis could not take: allowed (as if
        the bucket were full; NaN as the receipt, since there is nothing to refund), or
        `StorageUnavailableError`, or None: ask the local store."""
        telemetry = self._telemetry
        if not telemetry.quiet():
            telemetry.emit(FALLBACK, self._fallback_attrs)
        mode = self.on_unavailable
        if mode == "allow":
            allowed = self._allowed.get((burst, cost))
            if allowed is None:
                if len(self._allowed) >= _MAX_ALLOWED:
                    self._allowed.clear()
                allowed = self._allowed[burst, cost] = Decision(
                    True, 0.0, 0.0, burst - cost, math.nan
                )
            return allowed
        if mode == "deny":
            raise self._denied(cause)
        return None

    async def _local_acquire(
        self, key: str, emission_interval: float, burst: int, cost: int, max_wait: float
    ) -> Decision:
        assert self._local is not None
        return await self._local.acquire(
            key, emission_interval=emission_interval, burst=burst, cost=cost, max_wait=max_wait
        )

    async def refund(self, key: str, *, tat: float, emission_interval: float, cost: int) -> bool:
        """Give back the key's latest reservation (see `Store.refund`). While Redis cannot
        be reached nothing is given back (a reservation made in the local fallback is
        given back there), and no error is raised: an unrefunded permit just expires."""
        local = self._local
        if local is not None and local.refund_nowait(key, tat, emission_interval, cost):
            return True
        if math.isnan(tat):
            return False
        store_key = self._key(key)
        go, probe = self._try_redis(store_key)
        if not go:
            return False
        args = f"t {tat!r} {emission_interval!r} {cost}{self._fixed_now()}"
        try:
            refunded = await self._call("refund", store_key, args, probe)
        except _Unavailable:
            return False
        return bool(refunded)

    async def peek(self, key: str, *, emission_interval: float, burst: int) -> int:
        """Whole permits available on `key` now (see `Store.peek`). While Redis cannot be
        reached: `burst` with `"allow"`, `StorageUnavailableError` with `"deny"`, the
        local fallback's count with `"local"`."""
        store_key = self._key(key)
        go, probe = self._try_redis(store_key)
        cause: BaseException | None = None
        if go:
            args = f"{emission_interval!r} {burst}{self._fixed_now()}"
            try:
                left: int = await self._call("peek", store_key, args, probe)
            except _Unavailable as unavailable:
                cause = unavailable.cause
            else:
                return left
        local = self._local
        if local is not None:
            return await local.peek(key, emission_interval=emission_interval, burst=burst)
        if self.on_unavailable == "deny":
            raise self._denied(cause)
        return burst

    # -- the BreakerStore protocol ----------------------------------------------------------

    def _breaker_keys(self, name: str) -> tuple[str, str]:
        """The breaker's hash and its count window's ring, in one cluster slot."""
        data = name.encode("utf-8", "surrogatepass")
        key = f"{self.prefix}:cb:{{{hashlib.blake2b(data, digest_size=16).hexdigest()}}}"
        return key, f"{key}:ring"

    def _settings(self, settings: BreakerSettings) -> str:
        args = self._breaker_args.get(settings)
        if args is None:
            if len(self._breaker_args) >= _MAX_ALLOWED:
                self._breaker_args.clear()
            args = self._breaker_args[settings] = " ".join(
                repr(float(v)) if isinstance(v, float) else str(int(v)) for v in settings
            )
        return args

    def _breaker_fallback(self, cause: BaseException | None, *, deny: bool) -> None:
        """A breaker step Redis could not take: None (the breaker decides in this process),
        or `StorageUnavailableError` for an admission with `"deny"`."""
        telemetry = self._telemetry
        if not telemetry.quiet():
            telemetry.emit(FALLBACK, self._fallback_attrs)
        if deny and self.on_unavailable == "deny":
            raise self._denied(cause)

    async def breaker_admit(self, name: str, settings: BreakerSettings) -> BreakerView | None:
        """Whether a call through the shared breaker `name` may run (see
        `BreakerStore.breaker_admit`), in one round trip. When Redis cannot be reached:
        None with `"allow"` and `"local"` (the breaker decides in this process),
        `StorageUnavailableError` with `"deny"`."""
        key, ring = self._breaker_keys(name)
        go, probe = self._try_redis(key)
        cause: BaseException | None = None
        if go:
            nonce = next(self._nonces)
            args = f"{self._settings(settings)} {nonce}{self._fixed_now()}"
            try:
                reply = await self._call("breaker_admit", key, args, probe, ring)
            except _Unavailable as unavailable:
                cause = unavailable.cause
            except BaseException:
                # Cancelled in flight: the script may have taken a probe slot for a call
                # that will never run. Give it back if it is still ours.
                await self._undo("breaker_release", key, f"n {nonce}", ring)
                raise
            else:
                admitted, state, epoch, retry_after = _text(reply).split()
                seconds = float(retry_after)
                return BreakerView(
                    admitted == "1", state, int(epoch), None if seconds < 0 else seconds, None
                )
        self._breaker_fallback(cause, deny=True)
        return None

    async def breaker_record(
        self, name: str, settings: BreakerSettings, *, epoch: int, failed: bool, slow: bool
    ) -> BreakerView | None:
        """Count an outcome in the shared breaker `name` and apply its transitions (see
        `BreakerStore.breaker_record`), in one round trip; None when Redis cannot be reached
        (the outcome is not counted on Redis), whatever `on_unavailable` says."""
        key, ring = self._breaker_keys(name)
        go, probe = self._try_redis(key)
        cause: BaseException | None = None
        if go:
            args = (
                f"{self._settings(settings)} {epoch} {int(failed)} {int(slow)}{self._fixed_now()}"
            )
            try:
                reply = await self._call("breaker_record", key, args, probe, ring)
            except _Unavailable as unavailable:
                cause = unavailable.cause
            else:
                state, now_epoch, calls, failures, slow_calls = _text(reply).split()
                counts = (int(calls), int(failures), int(slow_calls))
                return BreakerView(False, state, int(now_epoch), None, counts)
        self._breaker_fallback(cause, deny=False)
        return None

    async def breaker_release(self, name: str, *, epoch: int) -> None:
        """Free the probe slot of a call admitted in `epoch` that ended without an outcome
        (see `BreakerStore.breaker_release`); nothing when Redis cannot be reached."""
        key, ring = self._breaker_keys(name)
        await self._undo("breaker_release", key, f"e {epoch}", ring)


def _text(reply: bytes | str) -> str:
    """A script's reply as text, from a client that decodes replies or one that does not."""
    return reply.decode("ascii") if isinstance(reply, bytes) else reply
