-- ledger_settle_full.lua (after ledger_settle.lua and ledger_lib_extra.lua): the settlement of every call that
-- is not an everyday one (contract, arguments and the everyday path: ledger_settle.lua): a consumed record,
-- rings that move on, app caps, a reservation of an earlier epoch, a failure or slow call, a breaker that is
-- not closed. Uses the arguments, the record and the budget's fields ledger_settle.lua read.

if record_state ~= RESERVED then   -- consumed before: what that settle or release did, and the breaker now
  local code, deadline = 0, 0
  if st and #st >= STATE_SIZE then code, deadline = select(2, sunpack('<ddd', st)) end
  return { 'already_settled', record_state == SETTLED and 'settled' or 'released', earlier_charged, earlier_delta,
    breaker_state_name(breaker_effective_state(code, deadline, now)) }
end
local failure_rate, minimum_calls, consecutive_limit, quorum, open_ms, open_multiplier, open_max_ms, close_after =
  sunpack('<dddddddd', v[1], 129)   -- `cfg`'s doubles 17-24
local span = ring_span(win, n, hop)
local seq, breaker_code, breaker_until, window, day = state_unpack(st, win, n, dwin, dn, span, ring_span(dwin, dn, hop))
local same_epoch = epoch == reservation_epoch

-- Gives back into the bucket where the reservation was held; adds any extra charge to the head bucket.
local function settle_ring(ring, held_bucket, d1, d2)
  ring_advance(ring, floor(now / ring.granularity))
  if same_epoch then ring_give_back(ring, held_bucket, math.max(-d1, 0), math.max(-d2, 0)) end
  ring_add(ring, math.max(d1, 0), math.max(d2, 0))
end

settle_ring(window, bucket, request_delta, delta)
settle_ring(day, day_bucket, delta, 0)
local fields = {}
ring_writes(window, fields)
ring_writes(day, fields)
if caps > 0 then
  local app_field = 'a:' .. app
  local cap = redis.call('HMGET', LEDGER_KEY, 'cap:' .. app, app_field)
  if cap[1] then
    local capped = app_ring(app, cap[2], win, n, span)
    settle_ring(capped, bucket, request_delta, delta)
    ring_writes(capped, fields, app_field)
  end
end
-- Breaker: count the outcome in its rolling window, then apply the transitions.
local state = breaker_effective_state(breaker_code, breaker_until, now)
if outcome ~= 'none' then
  local openings, consecutive, probe_successes, closed_at, outcomes = breaker_unpack(bst, outcome_ms, outcome_n)
  ring_advance(outcomes, floor(now / outcomes.granularity))
  ring_add(outcomes, 1, failed and 1 or 0)
  consecutive = failed and consecutive + 1 or 0

  -- Opens the breaker for the `count`-th time in a row. Defined only on a failure, the only outcome that can
  -- open it (each function a script defines costs on every call).
  local open_breaker
  if failed then
    open_breaker = function(count)
      openings, probe_successes, state, breaker_code = count, 0, OPEN, OPEN
      breaker_until = floor(now + math.min(open_ms * open_multiplier ^ (count - 1), open_max_ms))
      redis.call('DEL', KEYS[4])
    end
  end

  if state == HALF_OPEN and probe == 1 then
    if failed then
      open_breaker(openings + 1)
    elseif probe_successes + 1 >= close_after then
      state, breaker_code, breaker_until, probe_successes, closed_at = CLOSED, CLOSED, 0, 0, now
      outcomes = ring_new('b', outcome_n, outcome_ms / outcome_n)   -- the failures that opened it are history
      redis.call('DEL', KEYS[4], KEYS[5])
    else
      probe_successes = probe_successes + 1
    end
  elseif state == CLOSED and failed then
    local trips = (consecutive_limit > 0 and consecutive >= consecutive_limit)
      or (outcomes.total1 >= minimum_calls and outcomes.total2 >= failure_rate * outcomes.total1)
    if quorum > 1 then   -- failures must come from enough distinct instances
      local failers_key = KEYS[5]
      redis.call('ZADD', failers_key, now, ARGV[7])
      redis.call('ZREMRANGEBYSCORE', failers_key, '-inf', now - outcome_ms)
      redis.call('PEXPIRE', failers_key, outcome_ms)
      trips = trips and redis.call('ZCARD', failers_key) >= quorum
    end
    if trips then
      local recently_closed = closed_at > 0 and now - closed_at < outcome_ms
      open_breaker(recently_closed and openings + 1 or 1)
    end
  end
  push(fields, 'bst', breaker_pack(openings, consecutive, probe_successes, closed_at, outcomes))
  ring_writes(outcomes, fields)
end

push(fields, 'st', state_pack(seq, breaker_code, breaker_until, window, day))
redis.call('HSET', LEDGER_KEY, unpack(fields))
return { mode == 'settle' and 'settled' or 'released', charged, delta, breaker_state_name(state) }
