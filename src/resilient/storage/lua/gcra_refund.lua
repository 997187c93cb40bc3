-- Give back the key's latest reservation of `cost` permits: _gcra.refund. The reservation
-- is named by its receipt (the `tat` its decision returned) or, for a request cancelled
-- before it saw its decision, by the nonce it was sent with.
-- KEYS[1]: the bucket. ARGV[1]: "<t or n> <receipt or nonce> <emission interval (s)> <cost>
-- [<fixed time>]".
-- Returns 1 when the permits were given back, 0 when nothing changed.
local key = KEYS[1]
local argv = fields(ARGV[1])
local T = tonumber(argv[3])
local cost = tonumber(argv[4])

local state = redis.call('HMGET', key, 't', 'n')
local stored = tonumber(state[1])
if stored == nil then
  return 0
end
if argv[1] == 't' then
  if stored ~= tonumber(argv[2]) then
    return 0
  end
elseif state[2] ~= argv[2] then
  return 0
end
local now = clock(argv[5])
local restored = stored - cost * T
if restored > now + EPSILON then
  -- No nonce: the reservation that is now the latest was not made by this request.
  store(key, restored, now, '')
else
  redis.call('DEL', key)
end
return 1
