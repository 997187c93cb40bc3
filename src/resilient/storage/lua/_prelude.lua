-- Shared by every GCRA script of resilient.storage.RedisStore: the clock and the arithmetic
-- of resilient/_gcra.py, mirrored line for line so that a decision on Redis is the decision
-- the in-process store makes.
--
-- A key's state is a hash: `t`, its theoretical arrival time (seconds since EPOCH on the
-- server's clock, written with 17 significant digits so that it reads back as the very
-- same double), and `n`, the nonce of the request that wrote it (a request cancelled in
-- flight gives its permits back by nonce, since it never saw its receipt).

-- Scripts that read TIME must replicate their effects, not their text: the default from
-- Redis 7 (which is also when REDIS_VERSION_NUM appeared); Redis 5 and 6 need the call.
if not redis.REDIS_VERSION_NUM then
  redis.replicate_commands()
end

-- Times count from 2024-01-01 UTC rather than 1970: a smaller number keeps more of a
-- double's 53 bits for the fraction (about 10 ns of resolution today, not 240 ns).
local EPOCH = 1704067200
-- Slack for float rounding, as in _gcra.EPSILON.
local EPSILON = 1e-9
-- The longest expiry set, in milliseconds (about 2,000 years): PEXPIRE rejects a time past
-- what a 64-bit millisecond clock holds.
local MAX_TTL_MS = 70368744177664

-- A script's arguments arrive as one ARGV string of fields separated by spaces: each
-- argument costs a client more to send than a few characters do.
local function fields(text)
  local found = {}
  for field in string.gmatch(text, '%S+') do
    found[#found + 1] = field
  end
  return found
end

-- The server's time, or the fixed time a test gives in `override` (never set in service).
local function clock(override)
  if override ~= nil then
    return tonumber(override)
  end
  local t = redis.call('TIME')
  return (tonumber(t[1]) - EPOCH) + tonumber(t[2]) / 1000000
end

local function fmt(x)
  return string.format('%.17g', x)
end

-- A decision as one string: `allowed seconds remaining tat`.
local function reply(allowed, seconds, left, tat)
  return string.format('%d %.17g %.17g %.17g', allowed, seconds, left, tat)
end

-- _gcra.remaining: whole permits a request could take at `now` without waiting.
local function remaining(tat, now, T, burst)
  if tat == nil or tat <= now then
    return burst
  end
  local left = burst - (tat - now) / T
  return math.max(0, math.floor(left + EPSILON / T))
end

-- Write `tat` and let the key expire when its bucket is full again: from then on it decides
-- exactly like a key never seen.
local function store(key, tat, now, nonce)
  redis.call('HSET', key, 't', fmt(tat), 'n', nonce)
  redis.call('PEXPIRE', key, math.min(math.ceil((tat - now) * 1000), MAX_TTL_MS))
end
