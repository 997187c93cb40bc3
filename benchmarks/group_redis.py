"""Group 11, rate limits on Redis: decisions per second of `RedisStore` through
`RateLimiter.acquire()`, one after another and 64 at a time, against a raw `EVALSHA` of a
minimal GCRA script (one round trip per decision, nothing else: the physical limit) and the
peers' Redis limiters, all against the same Redis in one run; and, with Redis down in
`"allow"` mode, what a decision adds next to the in-process limiter.

Redis: `REDIS_URL` when set; otherwise a `redis-server` from PATH started on a free loopback
port for the run (and stopped after it); otherwise one answering on 127.0.0.1:6379. With
none of them the group reports that it measured nothing, or, when `CI` is set, fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from _harness import (
    BARE,
    Case,
    Goal,
    GoalResult,
    Group,
    GroupResult,
    Settings,
    Stats,
    bare,
    calls,
    format_ratio,
    measure,
    measure_group,
    summarise,
)

#: Keys taken in turn, each limited to RATE per second: a permit is always there, and no
#: peer's window (a list or sorted set of timestamps) grows long.
KEYS = [f"client-{i}" for i in range(1_000)]
RATE = 1_000
CONCURRENCY = 64

RAW = "raw `EVALSHA` of a minimal GCRA script (redis-py)"
OURS = "**RedisStore** via `RateLimiter.acquire()`"
LIMITS_FIXED = "limits.aio fixed window `hit()` (redis-py)"
LIMITS_MOVING = "limits.aio moving window `hit()` (redis-py)"
PYRATE = "pyrate-limiter `RedisBucket` `try_acquire(blocking=False)`"
THROTTLED = "throttled-py token bucket on `RedisStore`, `limit()`"
PEERS = (LIMITS_FIXED, LIMITS_MOVING, PYRATE, THROTTLED)

#: The least the physical limit allows: one Redis round trip per decision, nothing else.
MINIMAL_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
if new_tat - burst * interval > now then return 0 end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) * 1000))
return 1
"""

Decide = Callable[[str], Awaitable[object]]


# -- Redis for the run ------------------------------------------------------------------------


def _answers(url: str) -> bool:
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _redis_server() -> Iterator[tuple[str, str] | None]:
    """(URL, where it came from) of the Redis to measure against, or None if there is none."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given, "REDIS_URL"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        local = "redis://127.0.0.1:6379/0"
        yield ((local, "the local server on 127.0.0.1:6379") if _answers(local) else None)
        return
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix=f"resilient-bench-redis-{port}-"))
    args = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(folder),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "no",
        "--loglevel", "warning",
        "--logfile", str(folder / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 20
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {port} did not start: {log}")
            time.sleep(0.02)
        yield url, "a redis-server started for the run on a free port"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


# -- the cases: each builds `decide(key)`, one permit from `key` ------------------------------


async def _raw(url: str, closers: list[Callable[[], Awaitable[object]]]) -> Decide:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    closers.append(client.aclose)
    sha = await client.script_load(MINIMAL_GCRA)
    evalsha = client.evalsha
    interval = repr(1 / RATE)

    async def decide(key: str) -> object:
        if not await evalsha(sha, 1, f"bench:raw:{{{key}}}", interval, RATE):
            raise RuntimeError("the raw script refused a permit")
        return None

    return decide


async def _ours(url: str, closers: list[Callable[[], Awaitable[object]]]) -> Decide:
    from resilient import RateLimiter
    from resilient.storage import RedisStore

    store = RedisStore(url, prefix="bench-ours")
    closers.append(store.aclose)
    return RateLimiter(RATE, store=store).acquire


async def _limits(url: str, closers: list[Callable[[], Awaitable[object]]], moving: bool) -> Decide:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    prefix = "bench-limits-moving" if moving else "bench-limits-fixed"
    storage = RedisStorage(f"async+{url}", implementation="redispy", key_prefix=prefix)
    kind = MovingWindowRateLimiter if moving else FixedWindowRateLimiter
    hit = kind(storage).hit
    item = RateLimitItemPerSecond(RATE)

    async def decide(key: str) -> object:
        if not await hit(item, key):
            raise RuntimeError("limits refused a permit")
        return None

    return decide


async def _pyrate(url: str, closers: list[Callable[[], Awaitable[object]]]) -> Decide:
    import redis.asyncio
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

    client = redis.asyncio.Redis.from_url(url)
    closers.append(client.aclose)
    # One bucket (a sorted set of every permit in the window) for every key: pyrate-limiter's
    # Redis bucket names its key once; the item name is the caller's key.
    await client.delete("bench-pyrate")
    bucket = await RedisBucket.init(
        [Rate(RATE * len(KEYS), Duration.SECOND)], client, "bench-pyrate"
    )
    try_acquire = Limiter(bucket).try_acquire

    async def decide(key: str) -> object:
        if not await try_acquire(key, blocking=False):  # type: ignore[misc]
            raise RuntimeError("pyrate-limiter refused a permit")
        return None

    return decide


async def _throttled(url: str, closers: list[Callable[[], Awaitable[object]]]) -> Decide:
    from throttled.asyncio import RedisStore, Throttled, per_sec

    throttle = Throttled(
        using="token_bucket", quota=per_sec(RATE, burst=RATE), store=RedisStore(server=url)
    )
    limit = throttle.limit

    async def decide(key: str) -> object:
        if (await limit(f"bench-throttled:{key}")).limited:
            raise RuntimeError("throttled-py refused a permit")
        return None

    return decide


BUILDERS: dict[str, Callable[[str, list[Callable[[], Awaitable[object]]]], Awaitable[Decide]]] = {
    RAW: _raw,
    OURS: _ours,
    LIMITS_FIXED: lambda url, closers: _limits(url, closers, moving=False),
    LIMITS_MOVING: lambda url, closers: _limits(url, closers, moving=True),
    PYRATE: _pyrate,
    THROTTLED: _throttled,
}


def _sequential(decide: Decide) -> Callable[[int], Awaitable[None]]:
    keys = itertools.cycle(KEYS)

    async def run(n: int) -> None:
        for _ in range(n):
            await decide(next(keys))

    return run


def _concurrent(decide: Decide) -> Callable[[int], Awaitable[None]]:
    keys = itertools.cycle(KEYS)

    async def task(n: int) -> None:
        for _ in range(n):
            await decide(next(keys))

    async def run(n: int) -> None:
        share, extra = divmod(n, CONCURRENCY)
        await asyncio.gather(*(task(share + (i < extra)) for i in range(CONCURRENCY)))

    return run


SEQUENTIAL = "sequential"
CONCURRENT = f"{CONCURRENCY} concurrent"


async def _measure_throughput(
    url: str, settings: Settings, skipped: list[str], failures: dict[str, str]
) -> dict[str, Stats]:
    closers: list[Callable[[], Awaitable[object]]] = []
    runners = {}
    try:
        for name, build in BUILDERS.items():
            try:
                decide = await build(url, closers)
                await decide(KEYS[0])  # fails here rather than in the middle of a round
            except ImportError as exc:
                skipped.append(f"{name}: skipped, import failed ({exc})")
                continue
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
                continue
            runners[f"{name}|{SEQUENTIAL}"] = _sequential(decide)
            runners[f"{name}|{CONCURRENT}"] = _concurrent(decide)
        return await measure(runners, settings, failures)
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                await close()


def _per_second(stats: Stats | None) -> str:
    if stats is None:
        return "n/a"
    rate = 1e9 / stats.median_ns
    spread = rate * stats.spread_ns / stats.median_ns
    return f"{rate:,.0f} ± {spread:,.0f}"


def _goals(stats: dict[str, Stats]) -> list[GoalResult]:
    def ns(name: str, mode: str) -> float | None:
        found = stats.get(f"{name}|{mode}")
        return None if found is None else found.median_ns

    goals = []
    for mode in (SEQUENTIAL, CONCURRENT):
        ours, raw = ns(OURS, mode), ns(RAW, mode)
        # Decisions per second at least 0.9x raw's: time per decision at most 1/0.9 of raw's.
        ratio = None if ours is None or raw is None else ours / raw
        detail = "" if ratio is None else f"{1 / ratio:.2f}x raw's decisions/s"
        goals.append(
            GoalResult(
                "Redis",
                f"{mode}: RedisStore decisions/s >= 0.9x raw EVALSHA (time per decision <= 1.11x)",
                ratio,
                1 / 0.9,
                detail,
            )
        )
        peers = [(peer, ns(peer, mode)) for peer in PEERS]
        measured = [(value, peer) for peer, value in peers if value is not None]
        ratio, detail = None, ""
        if ours is not None and measured:
            fastest, peer = min(measured)
            ratio = ours / fastest
            detail = f"fastest peer: {peer}"
        goals.append(
            GoalResult(
                "Redis",
                f"{mode}: RedisStore decisions/s >= 1.0x every peer's",
                ratio,
                1.0,
                detail,
            )
        )
    return goals


def _throughput_result(
    where: str, stats: dict[str, Stats], skipped: list[str], failures: dict[str, str]
) -> GroupResult:
    rows = []
    for name in BUILDERS:
        if not any(f"{name}|{mode}" in stats for mode in (SEQUENTIAL, CONCURRENT)):
            continue
        row = [name]
        for mode in (SEQUENTIAL, CONCURRENT):
            mine, raw = stats.get(f"{name}|{mode}"), stats.get(f"{RAW}|{mode}")
            ratio = None if mine is None or raw is None else raw.median_ns / mine.median_ns
            row += [_per_second(mine), format_ratio(ratio)]
        rows.append(row)
    notes = [f"{name}: failed: {error}" for name, error in failures.items()]
    return GroupResult(
        key="redis",
        title="Rate limits on Redis: decisions per second",
        intro=f"Against {where}, every case with a client of its own. Each decision takes one "
        f"permit from one of {len(KEYS):,} keys in turn, each limited to {RATE:,} per second, "
        f"so a permit is always there; *{CONCURRENCY} concurrent* runs the decisions in "
        f"{CONCURRENCY} tasks at once. The raw case is one `EVALSHA` of a ten-line GCRA script "
        "(`TIME`, `GET`, `SET PX`) through redis-py and nothing else: what one round trip per "
        "decision allows. pyrate-limiter's Redis bucket keeps one sorted set (every permit "
        "of the window) for all keys. limits' fixed window does less on Redis than any GCRA "
        "(an `INCRBY`, and an `EXPIRE` on a window's first hit; no `TIME`, no timestamp "
        "written), so it can pass the raw case. Ratios are decisions per second over raw's.",
        headers=[
            "case",
            "decisions/s, sequential",
            "vs raw",
            f"decisions/s, {CONCURRENCY} concurrent",
            "vs raw",
        ],
        rows=rows,
        goals=_goals(stats),
        skipped=skipped,
        notes=notes,
    )


# -- Redis down, "allow" mode ------------------------------------------------------------------

DOWN_OURS = 'RedisStore down, `on_unavailable="allow"`: `await limiter.acquire()`'
LOCAL = "in-process `RateLimiter`: `await limiter.acquire()`"
DOWN_RATE = 1_000_000_000


def _local() -> Callable[[int], Awaitable[None]]:
    from resilient import RateLimiter

    acquire = RateLimiter(DOWN_RATE).acquire

    async def run(n: int) -> None:
        for _ in range(n):
            await acquire()
            await bare()

    return run


async def _down() -> Callable[[int], Awaitable[None]]:
    from resilient import RateLimiter
    from resilient.storage import RedisStore

    # Nobody listens on the port: every round trip is refused at once, and after three
    # the store counts Redis as down.
    store = RedisStore(f"redis://127.0.0.1:{_free_port()}/0", on_unavailable="allow")
    acquire = RateLimiter(DOWN_RATE, store=store).acquire
    for _ in range(10):
        if not store.available:
            break
        await acquire()
    if store.available:
        raise RuntimeError("the store did not count a dead Redis as down")

    async def run(n: int) -> None:
        for _ in range(n):
            await acquire()
            await bare()

    return run


DOWN_GROUP = Group(
    key="redis",
    title="Rate limits on Redis: a decision while Redis is down",
    intro="A `RedisStore` pointed at a port nobody listens on, with "
    '`on_unavailable="allow"`, after its guard has counted Redis as down (decisions go '
    "straight to the policy, and one every few seconds probes Redis again), next to the "
    f"in-process limiter; both at {DOWN_RATE:,} permits per second on one key.",
    cases=[
        Case(BARE, lambda: calls(bare)),
        Case(LOCAL, _local),
        Case(DOWN_OURS, _down, ours=True),
    ],
    reference=(LOCAL,),
    reference_label="in-process",
    goals=[
        Goal(
            DOWN_OURS,
            (LOCAL,),
            2.0,
            "Redis down, allow mode: a decision adds <= 2x what the in-process limiter adds",
        )
    ],
)


def run(settings: Settings) -> list[GroupResult]:
    down = summarise(DOWN_GROUP, [measure_group(DOWN_GROUP, settings)])
    for goal in down.goals:
        goal.group = "Redis"
    with _redis_server() as server:
        if server is None:
            message = (
                "no Redis to measure against: set REDIS_URL, put redis-server on PATH (for "
                "example `apt-get install redis-server`) or run one on 127.0.0.1:6379"
            )
            if os.environ.get("CI"):
                raise RuntimeError(f"{message}. CI is set, so the redis group must run.")
            empty = GroupResult(
                key="redis",
                title="Rate limits on Redis: decisions per second",
                headers=["case"],
                rows=[],
                notes=[f"not measured: {message}"],
            )
            return [empty, down]
        url, where = server
        skipped: list[str] = []
        failures: dict[str, str] = {}
        stats = asyncio.run(_measure_throughput(url, settings, skipped, failures))
    return [_throughput_result(where, stats, skipped, failures), down]
