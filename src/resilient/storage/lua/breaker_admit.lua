-- Admit a call: _state.BreakerCore.admit. An open breaker whose break is over turns
-- half-open, and a half-open one hands out at most `half-open calls` probe slots.
-- KEYS: the breaker's hash and ring. ARGV[1]: "<settings> <nonce> [<fixed time>]" (the
-- nonce names the caller that took a probe slot, which gives it back if it is cancelled
-- before it sees its answer).
-- Returns "<admitted (1 or 0)> <state> <epoch> <retry after (s), -1: not known>".
local key = KEYS[1]
local argv = fields(ARGV[1])
local cfg = settings(argv)
local state = redis.call('HGET', key, 's') or 'closed'
local epoch = num(key, 'e')
if state == 'closed' then
  return string.format('1 closed %d -1', epoch)
end
local now = clock(argv[10])
if state == 'open' then
  local ends = num(key, 'u')
  if now < ends then
    return string.format('0 open %d %.17g', epoch, ends - now)
  end
  epoch = move(key, 'half_open')
  state = 'half_open'
end
touch(KEYS)
if num(key, 'po') + num(key, 'pk') >= cfg.half_open and num(key, 'po') > 0
    and now - num(key, 'pt') >= cfg.max_break then
  -- Every slot taken, and no probe taken for a whole max break: a process died (or
  -- hangs) holding a slot. Start the half-open state over, so the fleet is not stuck;
  -- the new epoch ignores whatever the old probes report.
  epoch = move(key, 'half_open')
end
if num(key, 'po') + num(key, 'pk') < cfg.half_open then
  redis.call('HINCRBY', key, 'po', 1)
  redis.call('HSET', key, 'pn', argv[9], 'pt', fmt(now))
  return string.format('1 half_open %d -1', epoch)
end
return string.format('0 half_open %d -1', epoch)
