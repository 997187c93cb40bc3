-- Whole permits a request on the key could take now: _gcra.remaining. Changes nothing.
-- KEYS[1]: the bucket. ARGV: emission interval (s), burst, fixed time ('' for the server's).
local now = clock(ARGV[3])
local tat = tonumber(redis.call('HGET', KEYS[1], 't'))
return remaining(tat, now, tonumber(ARGV[1]), tonumber(ARGV[2]))
