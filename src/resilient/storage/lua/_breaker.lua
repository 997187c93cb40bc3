-- Shared by the breaker scripts of resilient.storage.RedisStore: the rules of
-- resilient/circuit_breaker/_state.py, mirrored so that a breaker shared on Redis decides
-- as one in-process breaker would.
--
-- KEYS[1] is the breaker's hash: `s` its state (closed, open, half_open), `e` its epoch
-- (bumped by every state change; an outcome counts only in the epoch it was admitted in),
-- `u` when an open break ends (server time), `b` the current break (seconds), `po` and
-- `pk` the half-open probes out and succeeded. A time window keeps ten buckets in it
-- (`t<i>` the bucket's number, `c<i>`, `f<i>`, `w<i>` its calls, failures and slow calls);
-- a count window keeps `n` (calls), `p` (the next place in the ring), `cf` and `cs`, and
-- its ring, one character per outcome, in KEYS[2] (same hash tag, same cluster slot).
--
-- ARGV[1] starts with the breaker's settings: "<failure ratio> <minimum calls> <slow call
-- ratio> <break> <max break> <half-open calls> <window (s)> <window calls, 0: a time
-- window>", then the script's own fields.

local BUCKETS = 10
-- An idle breaker's keys expire after a day: it then starts again closed and empty.
local IDLE_MS = 86400000

local function settings(argv)
  return {
    failure_ratio = tonumber(argv[1]),
    minimum_calls = tonumber(argv[2]),
    slow_ratio = tonumber(argv[3]),
    break_duration = tonumber(argv[4]),
    max_break = tonumber(argv[5]),
    half_open = tonumber(argv[6]),
    window = tonumber(argv[7]),
    size = tonumber(argv[8]),
  }
end

local function num(key, field)
  return tonumber(redis.call('HGET', key, field)) or 0
end

local function touch(keys)
  redis.call('PEXPIRE', keys[1], IDLE_MS)
  if redis.call('EXISTS', keys[2]) == 1 then
    redis.call('PEXPIRE', keys[2], IDLE_MS)
  end
end

-- (calls, failures, slow) in the window at `now`.
local function totals(keys, cfg, now)
  if cfg.size > 0 then
    return num(keys[1], 'n'), num(keys[1], 'cf'), num(keys[1], 'cs')
  end
  local width = cfg.window / BUCKETS
  local current = math.floor(now / width)
  local calls, failures, slow = 0, 0, 0
  for i = 0, BUCKETS - 1 do
    local row = redis.call('HMGET', keys[1], 't' .. i, 'c' .. i, 'f' .. i, 'w' .. i)
    local stamp = tonumber(row[1])
    if stamp ~= nil and stamp > current - BUCKETS then
      calls = calls + (tonumber(row[2]) or 0)
      failures = failures + (tonumber(row[3]) or 0)
      slow = slow + (tonumber(row[4]) or 0)
    end
  end
  return calls, failures, slow
end

local function add(keys, cfg, now, failed, slow)
  local key = keys[1]
  if cfg.size > 0 then
    local n, p = num(key, 'n'), num(key, 'p')
    local code = failed + 2 * slow
    if n >= cfg.size then
      -- Full: the new outcome takes the place of the oldest, whose counts are taken back.
      local old = tonumber(redis.call('GETRANGE', keys[2], p, p)) or 0
      if old % 2 == 1 then redis.call('HINCRBY', key, 'cf', -1) end
      if old >= 2 then redis.call('HINCRBY', key, 'cs', -1) end
    else
      redis.call('HSET', key, 'n', n + 1)
    end
    redis.call('SETRANGE', keys[2], p, tostring(code))
    redis.call('HSET', key, 'p', (p + 1) % cfg.size)
    if failed == 1 then redis.call('HINCRBY', key, 'cf', 1) end
    if slow == 1 then redis.call('HINCRBY', key, 'cs', 1) end
    return
  end
  local current = math.floor(now / (cfg.window / BUCKETS))
  local i = current % BUCKETS
  if tonumber(redis.call('HGET', key, 't' .. i)) ~= current then
    redis.call('HSET', key, 't' .. i, current, 'c' .. i, 0, 'f' .. i, 0, 'w' .. i, 0)
  end
  redis.call('HINCRBY', key, 'c' .. i, 1)
  if failed == 1 then redis.call('HINCRBY', key, 'f' .. i, 1) end
  if slow == 1 then redis.call('HINCRBY', key, 'w' .. i, 1) end
end

local function reset_window(keys)
  local fields = {'n', 'p', 'cf', 'cs'}
  for i = 0, BUCKETS - 1 do
    fields[#fields + 1] = 't' .. i
  end
  redis.call('HDEL', keys[1], unpack(fields))
  redis.call('DEL', keys[2])
end

-- A state change: a new epoch, no probe out.
local function move(key, state)
  redis.call('HSET', key, 's', state, 'po', 0, 'pk', 0)
  return redis.call('HINCRBY', key, 'e', 1)
end

local function open(key, now, duration)
  redis.call('HSET', key, 'b', fmt(duration), 'u', fmt(now + duration))
  return move(key, 'open')
end
