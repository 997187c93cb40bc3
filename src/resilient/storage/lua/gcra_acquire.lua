-- Admit, delay or reject a request for `cost` permits: _gcra.decide, and the write when
-- the request is admitted.
-- KEYS[1]: the bucket. ARGV: emission interval (s), burst, cost, max_wait (s), nonce,
-- fixed time ('' for the server's).
-- Returns {allowed (1 or 0), wait if allowed else retry_after (s), remaining, tat}.
local key = KEYS[1]
local T = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local now = clock(ARGV[6])

local tat = tonumber(redis.call('HGET', key, 't'))
-- _gcra.admit
local new_tat = ((tat == nil or tat < now) and now or tat) + cost * T
local wait = new_tat - burst * T - now

if wait > max_wait + EPSILON then
  return {0, fmt(wait), remaining(tat, now, T, burst), fmt(tat == nil and now or tat)}
end
store(key, new_tat, now, ARGV[5])
if wait <= EPSILON then
  wait = 0
end
return {1, fmt(wait), remaining(new_tat, now, T, burst), fmt(new_tat)}
