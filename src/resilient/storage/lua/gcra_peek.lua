-- Whole permits a request on the key could take now: _gcra.remaining. Changes nothing.
-- KEYS[1]: the bucket. ARGV[1]: "<emission interval (s)> <burst> [<fixed time>]".
local argv = fields(ARGV[1])
local now = clock(argv[3])
local tat = tonumber(redis.call('HGET', KEYS[1], 't'))
return remaining(tat, now, tonumber(argv[1]), tonumber(argv[2]))
