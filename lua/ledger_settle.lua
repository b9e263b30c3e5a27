-- ledger_settle.lua (after ledger_lib.lua): settles or releases one reservation and reports the call's
-- outcome to the budget's circuit breaker, in one call.
-- KEYS[1]  <prefix>{<budget>}:ledger
-- KEYS[2]  <prefix>{<budget>}:hist:<minute>, the history minute of this settlement (ledger_lib_extra.lua,
--          `history_target`; unused on release)
-- ARGV     mode ('settle' | 'release'), id, epoch, app, bucket, day_bucket, requests, held_tokens
--          (the reservation's fields), input, cache_write, output (tokens Bedrock reported; 0 on release),
--          burndown (output multiplier, 0..100), outcome ('none' | 'success' | 'failure' | 'slow'), latency_ms,
--          instance (id of the reporting process), probe (0 | 1, from the reservation)
-- Settle charges input + cache_write + ceil(output x burndown): tokens held beyond that are given back at once
-- to the bucket where they were held (if it is still in the window and the ledger epoch is unchanged); a
-- charge above the held tokens is added to the newest bucket. Release gives back the request and all tokens.
-- Settle also adds the request, the charge, the input (+ cache write) and the output to the app's row (or the
-- `other` row) of the history minute KEYS[2] (`history_add` in ledger_lib_extra.lua).
-- Replies  {'settled' | 'released', charged, delta_tokens, breaker_state} | {'no_budget'} | {'invalid', arg, reason}
-- Redis cost: TIME + HMGET + HSET, + one HMGET when a ring moves on or the held bucket is older than the head;
-- settle adds the history's HMGET + HSET (`history_add`); ZREM when an in-flight limit is set or the call was
-- a probe; breaker transitions and quorum counting add a few writes.

local mode, app, instance, outcome = ARGV[1], ARGV[4], ARGV[15], ARGV[13]
if mode ~= 'settle' and mode ~= 'release' then return { 'invalid', 'mode', "must be 'settle' or 'release'" } end
local id = int_arg(ARGV[2], 1, MAX_LIMIT)
if not id then return { 'invalid', 'id', 'must be a reservation id' } end
local reservation_epoch = int_arg(ARGV[3], 0, MAX_LIMIT)
if not reservation_epoch then return { 'invalid', 'epoch', 'must be the reservation epoch' } end
if not valid_name(app) then return { 'invalid', 'app', NAME_RULE } end
local bucket, day_bucket = int_arg(ARGV[5], 0, MAX_LIMIT), int_arg(ARGV[6], 0, MAX_LIMIT)
if not bucket or not day_bucket then return { 'invalid', 'bucket', 'must be the reservation buckets' } end
local requests = int_arg(ARGV[7], 1, MAX_REQUESTS)
if not requests then return { 'invalid', 'requests', 'must be an integer from 1 to ' .. MAX_REQUESTS } end
local usage = {}
for i, name in ipairs({ 'held_tokens', 'input', 'cache_write', 'output' }) do
  usage[i] = int_arg(ARGV[7 + i], 0, MAX_TOKENS)
  if not usage[i] then return { 'invalid', name, 'must be an integer from 0 to ' .. MAX_TOKENS } end
end
local burndown = num_arg(ARGV[12], 0, 100)
if not burndown then return { 'invalid', 'burndown', 'must be a number from 0 to 100' } end
if outcome ~= 'none' and outcome ~= 'success' and outcome ~= 'failure' and outcome ~= 'slow' then
  return { 'invalid', 'outcome', "must be 'none', 'success', 'failure' or 'slow'" }
end
local latency = int_arg(ARGV[14], 0, MAX_MS)
if not latency then return { 'invalid', 'latency_ms', 'must be an integer from 0 to ' .. MAX_MS } end
if not valid_name(instance) then return { 'invalid', 'instance', NAME_RULE } end
local probe = ARGV[16] == '1'

local app_field = 'a:' .. app
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'bst', 'cap:' .. app, app_field)
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local now = now_ms()
local history, refusal = history_target(now, mode == 'settle')
if history == nil then return refusal end
local win, n, dwin, dn, _, _, _, _, _, in_flight_limit, _, epoch, _, _, _, history_ms, failure_rate, minimum_calls,
  consecutive_limit, quorum, open_ms, open_multiplier, open_max_ms, close_after, slow_ms, outcome_ms, outcome_n =
  sunpack(CONFIG_FORMAT, v[1])
local seq, breaker_code, breaker_until, window, day = state_unpack(v[2], win, n, dwin, dn)

local charged = 0
if mode == 'settle' then charged = usage[2] + usage[3] + math.ceil(usage[4] * burndown) end
local delta = charged - usage[1]
local request_delta = mode == 'release' and -requests or 0
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
if v[4] then
  local capped = app_ring(app, v[5], win, n)
  settle_ring(capped, bucket, request_delta, delta)
  ring_writes(capped, fields, app_field)
end
if in_flight_limit > 0 then redis.call('ZREM', budget_key(':inflight'), id) end
if probe then redis.call('ZREM', budget_key(':probes'), id) end

if history then   -- per-minute history; budget totals are the sum over rows
  history_add(history, app, history_ms, requests, charged, usage[2] + usage[3], usage[4])
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
      redis.call('DEL', budget_key(':probes'))
    end
  end

  if state == HALF_OPEN and probe then
    if failed then
      open_breaker(openings + 1)
    elseif probe_successes + 1 >= close_after then
      state, breaker_code, breaker_until, probe_successes, closed_at = CLOSED, CLOSED, 0, 0, now
      outcomes = ring_new('b', outcome_n, outcome_ms / outcome_n)   -- the failures that opened it are history
      redis.call('DEL', budget_key(':probes'), budget_key(':failers'))
    else
      probe_successes = probe_successes + 1
    end
  elseif state == CLOSED and failed then
    local trips = (consecutive_limit > 0 and consecutive >= consecutive_limit)
      or (outcomes.total1 >= minimum_calls and outcomes.total2 >= failure_rate * outcomes.total1)
    if quorum > 1 then   -- failures must come from enough distinct instances
      local failers_key = budget_key(':failers')
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
