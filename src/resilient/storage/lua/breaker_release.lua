-- A call ended without an outcome: _state.BreakerCore.release frees its probe slot if it
-- held one. The call is named by the epoch it was admitted in or, for a call cancelled
-- before it saw its admission, by the nonce it was sent with.
-- KEYS: the breaker's hash and ring. ARGV[1]: "<e or n> <epoch or nonce>".
-- Returns 1 when a slot was freed, 0 when nothing changed.
local key = KEYS[1]
local argv = fields(ARGV[1])
if redis.call('HGET', key, 's') ~= 'half_open' or num(key, 'po') <= 0 then
  return 0
end
if argv[1] == 'e' then
  if num(key, 'e') ~= tonumber(argv[2]) then
    return 0
  end
elseif redis.call('HGET', key, 'pn') ~= argv[2] then
  return 0
end
redis.call('HINCRBY', key, 'po', -1)
redis.call('HDEL', key, 'pn')
return 1
