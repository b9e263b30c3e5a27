-- ledger_settle.lua (after ledger_lib.lua and ledger_lib_history.lua; followed by ledger_lib_extra.lua and
-- ledger_settle_full.lua): settles or releases one reservation and reports the call's outcome to the budget's
-- circuit breaker, in one call. This part checks the arguments and runs the everyday settlement; every other
-- call falls through to ledger_settle_full.lua. Both decide alike.
-- KEYS     <base>:ledger, <base>:res:<id> (the reservation's record), <base>:inflight, <base>:probes,
--          <base>:failers, <base>:hist:<minute> (the history minute, last: `history_target` in
--          ledger_lib_history.lua; unused on release)   (<base> = <prefix>{<budget>})
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
-- `other` row) of the history minute in the last key (`history_add` in ledger_lib_history.lua).
-- Replies  {'settled' | 'released', charged, delta_tokens, breaker_state}
--          {'already_settled', 'settled' | 'released', charged, delta_tokens, breaker_state}
--            (the record was consumed before: what that call did; nothing changes)
--          {'unknown_reservation'}                        (no record: never admitted, expired or lost)
--          {'no_budget'} | {'invalid', arg, reason}
-- Redis cost, everyday: GET + HMGET + TIME + SET (KEEPTTL) + HSET (skipped when nothing changes), + one HMGET
-- when the held bucket is older than the head; settle adds the history's HMGET + HSET; ZREM when an in-flight
-- limit is set or the call was a probe. Off the everyday path (a ring or the breaker's outcome window moves on,
-- app caps, an epoch change, a failure, a breaker not closed): one HMGET more per ring moved, breaker
-- transitions and quorum counting add a few writes.

local id = reservation_id()   -- (KEYS[2] is then `<base>:res:<id>`)
if not id then return { 'invalid', 'reservation_id', NAME_RULE } end
if KEYS[3] ~= BASE .. ':inflight' or KEYS[4] ~= BASE .. ':probes' or KEYS[5] ~= BASE .. ':failers' then
  return sibling_keys(':res:' .. id, ':inflight', ':probes', ':failers')   -- (names the wrong key)
end
local mode, outcome, instance = ARGV[1], ARGV[6], ARGV[8]
if mode ~= 'settle' and mode ~= 'release' then return { 'invalid', 'mode', "must be 'settle' or 'release'" } end
local input, cache_write, output = int_arg(ARGV[2], 0, MAX_TOKENS), int_arg(ARGV[3], 0, MAX_TOKENS),
  int_arg(ARGV[4], 0, MAX_TOKENS)
if not input then return { 'invalid', 'input', 'must be an integer from 0 to ' .. MAX_TOKENS } end
if not cache_write then return { 'invalid', 'cache_write', 'must be an integer from 0 to ' .. MAX_TOKENS } end
if not output then return { 'invalid', 'output', 'must be an integer from 0 to ' .. MAX_TOKENS } end
local burndown = tonumber(ARGV[5])
if not (burndown and burndown >= 0 and burndown <= 100) then   -- (NaN fails both comparisons)
  return { 'invalid', 'burndown', 'must be a number from 0 to 100' }
end
if outcome ~= 'none' and outcome ~= 'success' and outcome ~= 'failure' and outcome ~= 'slow' then
  return { 'invalid', 'outcome', "must be 'none', 'success', 'failure' or 'slow'" }
end
local latency = int_arg(ARGV[7], 0, MAX_MS)
if not latency then return { 'invalid', 'latency_ms', 'must be an integer from 0 to ' .. MAX_MS } end
if not valid_name(instance) then return { 'invalid', 'instance', NAME_RULE } end

local packed = redis.call('GET', KEYS[2])
if not packed or #packed <= RECORD_SIZE then return { 'unknown_reservation' } end
local record_state, reservation_epoch, sequence, bucket, day_bucket, requests, held, probe, admitted_at,
  earlier_charged, earlier_delta = sunpack(RECORD_FORMAT, packed)
local app = string.sub(packed, RECORD_SIZE + 1)
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'bst')
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local now = now_ms()
local history_key, history_minute = false, nil
if record_state == RESERVED then   -- (a consumed record answers `already_settled`, whatever its history key)
  history_key, history_minute = history_target(now, mode == 'settle')
  if history_key == nil then return history_minute end
end
local win, n, dwin, dn, _, _, _, _, _, in_flight_limit, _, epoch, _, _, caps, history_ms, failure_rate, minimum_calls,
  consecutive_limit, quorum, open_ms, open_multiplier, open_max_ms, close_after, slow_ms, outcome_ms, outcome_n, hop =
  sunpack(CONFIG_FORMAT, v[1])
local charged = 0
if mode == 'settle' then charged = input + cache_write + math.ceil(output * burndown) end
local delta = charged - held
local request_delta = mode == 'release' and -requests or 0
local consumed = spack(RECORD_FORMAT, mode == 'settle' and SETTLED or RELEASED, reservation_epoch, sequence, bucket,
  day_bucket, requests, held, probe, admitted_at, charged, delta) .. app

-- The everyday settlement: a reservation of this epoch, no app caps, the window and day rings still in the
-- bucket of the previous call (nothing leaves them), the breaker closed and either told nothing or a success
-- counted in its outcome window's current bucket. It works on the unpacked numbers of `st` and `bst` as the
-- full path's `settle_ring` and breaker step do: give back to the held bucket (the head, or one slot read and
-- written if it is older and still counted), add any extra charge to the head; count the call.
local st, bst = v[2], v[3]
if record_state == RESERVED and caps == 0 and epoch == reservation_epoch and st
    and (#st == STATE_SIZE or #st == STATE_SIZE + 16) then
  local seq, code, deadline, w_head, w_requests, w_tokens, w_head_requests, w_head_tokens, w_low,
    d_head, d_tokens, d_unused, d_head_tokens, d_head_unused, d_low = sunpack(STATE_FORMAT, st)
  local counted = outcome == 'success' and not (slow_ms > 0 and latency >= slow_ms)
  local b_open, b_consecutive, b_successes, b_closed, b_head, b_calls, b_failures, b_head_calls, b_head_failures, b_low
  if counted and bst and #bst == 80 then
    b_open, b_consecutive, b_successes, b_closed, b_head, b_calls, b_failures, b_head_calls, b_head_failures, b_low =
      sunpack('<dddddddddd', bst)   -- BREAKER_FORMAT, then the outcome ring's header
  end
  if code == CLOSED and w_head == floor(now / (win / n)) and d_head == floor(now / (dwin / dn))
      and (outcome == 'none' or (b_head and b_head == floor(now / (outcome_ms / outcome_n)))) then
    local fields = {}
    -- Give back: (requests, tokens) to the window's held bucket, tokens to the day's.
    local w_back_requests, w_back_tokens, d_back = math.max(-request_delta, 0), math.max(-delta, 0), math.max(-delta, 0)
    local w_slot, d_slot = false, false   -- the held buckets' slot fields, if older than the head and still counted
    if (w_back_requests > 0 or w_back_tokens > 0) and bucket < w_head then
      local span = ring_span(win, n, hop)
      w_slot = bucket > w_head - span and 'w' .. (bucket % span)
    end
    if d_back > 0 and day_bucket < d_head then
      local span = ring_span(dwin, dn, hop)
      d_slot = day_bucket > d_head - span and 'd' .. (day_bucket % span)
    end
    local slots = (w_slot or d_slot) and redis.call('HMGET', LEDGER_KEY, w_slot or d_slot, d_slot or w_slot)
    if bucket == w_head then
      if w_requests == 0 and w_tokens == 0 then w_low = w_head end
      w_back_requests, w_back_tokens = math.min(w_back_requests, w_head_requests), math.min(w_back_tokens, w_head_tokens)
      w_head_requests, w_head_tokens = w_head_requests - w_back_requests, w_head_tokens - w_back_tokens
    elseif w_slot then
      local a, c1, c2 = sunpack('<ddd', slots[1] or spack('<ddd', -1, 0, 0))
      if a ~= bucket then c1, c2 = 0, 0 end   -- stale: that bucket holds nothing
      w_back_requests, w_back_tokens = math.min(w_back_requests, c1), math.min(w_back_tokens, c2)
      fields[#fields + 1], fields[#fields + 2] = w_slot, spack('<ddd', bucket, c1 - w_back_requests, c2 - w_back_tokens)
    else
      w_back_requests, w_back_tokens = 0, 0   -- it has left the window
    end
    if day_bucket == d_head then
      if d_tokens == 0 and d_unused == 0 then d_low = d_head end
      d_back = math.min(d_back, d_head_tokens)
      d_head_tokens = d_head_tokens - d_back
    elseif d_slot then
      local a, c1, c2 = sunpack('<ddd', slots[2] or spack('<ddd', -1, 0, 0))
      if a ~= day_bucket then c1, c2 = 0, 0 end
      d_back = math.min(d_back, c1)
      fields[#fields + 1], fields[#fields + 2] = d_slot, spack('<ddd', day_bucket, c1 - d_back, c2)
    else
      d_back = 0
    end
    -- A charge above the held tokens goes to the head bucket (counting more, never less).
    local extra = math.max(delta, 0)
    if extra > 0 then
      if w_requests - w_back_requests == 0 and w_tokens - w_back_tokens == 0 then w_low = w_head end
      if d_tokens - d_back == 0 and d_unused == 0 then d_low = d_head end
    end
    if w_back_requests > 0 or w_back_tokens > 0 or d_back > 0 or extra > 0 then
      fields[#fields + 1], fields[#fields + 2] = 'st', spack(STATE_FORMAT, seq, code, deadline,
        w_head, w_requests - w_back_requests, w_tokens - w_back_tokens + extra, w_head_requests, w_head_tokens + extra, w_low,
        d_head, d_tokens - d_back + extra, d_unused, d_head_tokens + extra, d_head_unused, d_low) .. (#st > STATE_SIZE and string.sub(st, STATE_SIZE + 1) or '')
    end
    if counted then   -- a success: one more call in the outcome window's current bucket, no failure in a row
      if b_calls == 0 and b_failures == 0 then b_low = b_head end
      fields[#fields + 1], fields[#fields + 2] = 'bst', spack('<dddddddddd', b_open, 0, b_successes, b_closed,
        b_head, b_calls + 1, b_failures, b_head_calls + 1, b_head_failures, b_low)
    end
    if #fields > 0 then redis.call('HSET', LEDGER_KEY, unpack(fields)) end
    redis.call('SET', KEYS[2], consumed, 'KEEPTTL')
    if in_flight_limit > 0 then redis.call('ZREM', KEYS[3], reservation_epoch .. ':' .. id) end
    if probe == 1 then redis.call('ZREM', KEYS[4], reservation_epoch .. ':' .. id) end
    if history_key then
      history_add(history_key, history_minute, app, history_ms, requests, charged, input + cache_write, output)
    end
    return { mode == 'settle' and 'settled' or 'released', charged, delta, 'closed' }
  end
end
