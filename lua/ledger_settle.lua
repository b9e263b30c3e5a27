-- ledger_settle.lua (after ledger_lib.lua): settles or releases one reservation and reports the call's
-- outcome to the budget's circuit breaker, in one call.
-- KEYS     <base>:ledger, <base>:res:<id> (the reservation's record), <base>:inflight, <base>:probes,
--          <base>:failers, <base>:hist:<minute> (the history minute, last: `history_target` in
--          ledger_lib_extra.lua; unused on release)   (<base> = <prefix>{<budget>})
-- ARGV     mode ('settle' | 'release'), input, cache_write, output (tokens Bedrock reported; 0 on release),
--          burndown (output multiplier, 0..100), outcome ('none' | 'success' | 'failure' | 'slow'), latency_ms,
--          instance (id of the reporting process)
-- The reservation (app, buckets, requests, held tokens, probe, epoch) comes from its record, never from the
-- caller, and is consumed: a second settle or release, or one naming an id never admitted (or whose record
-- expired, or was lost with Redis's state), changes nothing and says so.
-- Settle charges input + cache_write + ceil(output x burndown) (cache reads were held and are given back):
-- tokens held beyond that are given back at once to the bucket where they were held (if it is still in the
-- window and the ledger epoch is unchanged); a charge above the held tokens is added to the newest bucket.
-- Release gives back the request and all tokens.
-- Settle also adds the request, the charge, the input (+ cache write) and the output to the app's row (or the
-- `other` row) of the history minute in the last key (`history_add` in ledger_lib_extra.lua).
-- Replies  {'settled' | 'released', charged, delta_tokens, breaker_state}
--          {'already_settled', 'settled' | 'released', charged, delta_tokens, breaker_state}
--            (the record was consumed before: what that call did; nothing changes)
--          {'unknown_reservation'}                        (no record: never admitted, expired or lost)
--          {'no_budget'} | {'invalid', arg, reason}
-- Redis cost: TIME + HMGET + GET + HSET + SET (KEEPTTL), + one HMGET when a ring moves on or the held bucket is
-- older than the head; settle adds the history's writes; ZREM when an in-flight limit is set or the call was
-- a probe; breaker transitions and quorum counting add a few writes.

if not reservation_id() then return { 'invalid', 'reservation_id', NAME_RULE } end
local keys_error = sibling_keys(':res:' .. reservation_id(), ':inflight', ':probes', ':failers')
if keys_error then return keys_error end
local mode, outcome, instance = ARGV[1], ARGV[6], ARGV[8]
if mode ~= 'settle' and mode ~= 'release' then return { 'invalid', 'mode', "must be 'settle' or 'release'" } end
local usage = {}
for i, name in ipairs({ 'input', 'cache_write', 'output' }) do
  usage[i] = int_arg(ARGV[1 + i], 0, MAX_TOKENS)
  if not usage[i] then return { 'invalid', name, 'must be an integer from 0 to ' .. MAX_TOKENS } end
end
local burndown = num_arg(ARGV[5], 0, 100)
if not burndown then return { 'invalid', 'burndown', 'must be a number from 0 to 100' } end
if outcome ~= 'none' and outcome ~= 'success' and outcome ~= 'failure' and outcome ~= 'slow' then
  return { 'invalid', 'outcome', "must be 'none', 'success', 'failure' or 'slow'" }
end
local latency = int_arg(ARGV[7], 0, MAX_MS)
if not latency then return { 'invalid', 'latency_ms', 'must be an integer from 0 to ' .. MAX_MS } end
if not valid_name(instance) then return { 'invalid', 'instance', NAME_RULE } end

local packed = redis.call('GET', KEYS[2])
if not packed or #packed <= RECORD_SIZE then return { 'unknown_reservation' } end
local record = { sunpack(RECORD_FORMAT, packed) }
local reservation_epoch, bucket, day_bucket, requests, held, probe = record[2], record[4], record[5], record[6],
  record[7], record[8] == 1
local app = string.sub(packed, RECORD_SIZE + 1)
local app_field = 'a:' .. app
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'bst', 'cap:' .. app, app_field)
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local now = now_ms()
if record[1] ~= RESERVED then   -- consumed before: what that settle or release did, and the breaker now
  local code, deadline = 0, 0
  if v[2] and #v[2] >= STATE_SIZE then code, deadline = select(2, sunpack('<ddd', v[2])) end
  return { 'already_settled', record[1] == SETTLED and 'settled' or 'released', record[10], record[11],
    breaker_state_name(breaker_effective_state(code, deadline, now)) }
end
local history_key, history_minute = history_target(now, mode == 'settle')
if history_key == nil then return history_minute end
local win, n, dwin, dn, _, _, _, _, _, in_flight_limit, _, epoch, _, _, _, history_ms, failure_rate, minimum_calls,
  consecutive_limit, quorum, open_ms, open_multiplier, open_max_ms, close_after, slow_ms, outcome_ms, outcome_n, hop =
  sunpack(CONFIG_FORMAT, v[1])
local span = ring_span(win, n, hop)
local seq, breaker_code, breaker_until, window, day = state_unpack(v[2], win, n, dwin, dn, span, ring_span(dwin, dn, hop))

local charged = 0
if mode == 'settle' then charged = usage[1] + usage[2] + math.ceil(usage[3] * burndown) end
local delta = charged - held
local request_delta = mode == 'release' and -requests or 0
local same_epoch = epoch == reservation_epoch
record[1], record[10], record[11] = mode == 'settle' and SETTLED or RELEASED, charged, delta
redis.call('SET', KEYS[2], spack(RECORD_FORMAT, unpack(record)) .. app, 'KEEPTTL')

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
if v[4] then
  local capped = app_ring(app, v[5], win, n, span)
  settle_ring(capped, bucket, request_delta, delta)
  ring_writes(capped, fields, app_field)
end
local lease_member = reservation_epoch .. ':' .. reservation_id()
if in_flight_limit > 0 then redis.call('ZREM', KEYS[3], lease_member) end
if probe then redis.call('ZREM', KEYS[4], lease_member) end

if history_key then   -- per-minute history; budget totals are the sum over rows
  history_add(history_key, history_minute, app, history_ms, requests, charged, usage[1] + usage[2], usage[3])
end

-- Breaker: count the outcome in its rolling window, then apply the transitions.
local state = breaker_effective_state(breaker_code, breaker_until, now)
if outcome ~= 'none' then
  local openings, consecutive, probe_successes, closed_at, outcomes = breaker_unpack(v[3], outcome_ms, outcome_n)
  local failed = outcome == 'failure' or outcome == 'slow' or (slow_ms > 0 and latency >= slow_ms)
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

  if state == HALF_OPEN and probe then
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
      redis.call('ZADD', failers_key, now, instance)
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
