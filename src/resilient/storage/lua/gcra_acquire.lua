-- Admit, delay or reject a request for `cost` permits: _gcra.decide, and the write when
-- the request is admitted.
-- KEYS[1]: the bucket. ARGV[1]: "<emission interval (s)> <burst> <cost> <max_wait (s)>
-- <nonce> [<fixed time>]".
-- Returns one string, "<allowed (1 or 0)> <wait if allowed else retry_after (s)> <remaining>
-- <tat>": a single bulk reply reads several times faster in a client than an array.
local key = KEYS[1]
-- One match rather than `fields`: this script runs on every decision.
local f1, f2, f3, f4, nonce, fixed = string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+) (%S+) ?(%S*)$')
local T = tonumber(f1)
local burst = tonumber(f2)
local cost = tonumber(f3)
local max_wait = tonumber(f4)
local now = clock(fixed ~= '' and fixed or nil)

local tat = tonumber(redis.call('HGET', key, 't'))
-- _gcra.admit
local new_tat = ((tat == nil or tat < now) and now or tat) + cost * T
local wait = new_tat - burst * T - now

if wait > max_wait + EPSILON then
  return reply(0, wait, remaining(tat, now, T, burst), tat == nil and now or tat)
end
store(key, new_tat, now, nonce)
if wait <= EPSILON then
  wait = 0
end
return reply(1, wait, remaining(new_tat, now, T, burst), new_tat)
