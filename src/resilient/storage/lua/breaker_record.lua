-- A call admitted in `epoch` ended: _state.BreakerCore.record. Counted only if the
-- breaker is still in that epoch.
-- KEYS: the breaker's hash and ring. ARGV[1]: "<settings> <epoch> <failed (1 or 0)>
-- <slow (1 or 0)> [<fixed time>]".
-- Returns "<state> <epoch> <calls> <failures> <slow calls>" (the window after the call).
local key = KEYS[1]
local argv = fields(ARGV[1])
local cfg = settings(argv)
local ticket = tonumber(argv[9])
local failed = tonumber(argv[10])
local slow = tonumber(argv[11])
local now = clock(argv[12])
local state = redis.call('HGET', key, 's') or 'closed'
local epoch = num(key, 'e')
if ticket == epoch then
  if state == 'closed' then
    add(KEYS, cfg, now, failed, slow)
    if failed == 1 or slow == 1 then
      local calls, failures, slows = totals(KEYS, cfg, now)
      if calls >= cfg.minimum_calls and
          (failures / calls >= cfg.failure_ratio or slows / calls >= cfg.slow_ratio) then
        epoch = open(key, now, cfg.break_duration)
        state = 'open'
      end
    end
  elseif state == 'half_open' then
    redis.call('HINCRBY', key, 'po', -1)
    if failed == 1 or slow == 1 then
      local doubled = math.min(num(key, 'b') * 2, cfg.max_break)
      epoch = open(key, now, doubled)
      state = 'open'
    elseif redis.call('HINCRBY', key, 'pk', 1) >= cfg.half_open then
      redis.call('HSET', key, 'b', fmt(cfg.break_duration))
      reset_window(KEYS)
      epoch = move(key, 'closed')
      state = 'closed'
    end
  end
  touch(KEYS)
end
local calls, failures, slows = totals(KEYS, cfg, now)
return string.format('%s %d %d %d %d', state, epoch, calls, failures, slows)
