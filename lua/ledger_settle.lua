-- ledger_settle.lua (after ledger_lib.lua, ledger_lib_history.lua and ledger_lib_settlement.lua; followed by
-- ledger_lib_extra.lua and ledger_settle_full.lua): settles or releases one reservation and reports the call's
-- outcome to the budget's circuit breaker, in one call. This part checks the arguments and runs the everyday
-- settlement; every other call falls through to ledger_settle_full.lua. Both decide alike.
-- KEYS     <base>:ledger, <base>:res:<id> (the reservation's record), <base>:inflight, <base>:probes,
--          <base>:failers, <base>:hist:<minute> (the history minute, last: `history_target` in
--          ledger_lib_history.lua; unused on release)   (<base> = <prefix>{<budget>})
-- ARGV     mode ('settle' | 'release'), charged (tokens Bedrock charged: input + cache write + ceil(output x
--          burndown), computed by the caller: `BurndownTable.charge` in Swift; 0..MAX_CHARGE), input (input +
--          cache write tokens) and output (output tokens) as Bedrock reported them, for the history (0..2e8,
--          0..1e8; ARGV[2..4] are not read on release), outcome ('none' | 'success' | 'failure' | 'slow'),
--          latency_ms (read only for a success on a budget with a slow-call threshold `b_slow`), instance (id of
--          the reporting process; read only for a failed call, the only one it can be counted for)
-- The reservation (app, buckets, requests, held tokens, probe, epoch) comes from its record, never from the
-- caller, and is consumed: a second settle or release, or one naming an id never admitted (or whose record
-- expired, or was lost with Redis's state), changes nothing and says so.
-- Settle counts `charged` (cache reads were held and are given back): tokens held beyond it are given back at
-- once to the bucket where they were held (if it is still in the window and the ledger epoch is unchanged); a
-- charge above the held tokens is added to the newest bucket. Release gives back the request and all tokens.
-- Settle also adds the request, the charge, the input (+ cache write) and the output to the app's row (or the
-- `other` row) of the history minute in the last key (`history_add` in ledger_lib_history.lua).
-- Replies  delta_tokens (an integer: charged - held) from the everyday path: settled or released as asked,
--            `charged` as sent (0 on release), the breaker closed (the cheapest reply: an array costs 6 000 more)
--          {'settled' | 'released', charged, delta_tokens, breaker_state} from every other settlement
--          {'already_settled', 'settled' | 'released', charged, delta_tokens, breaker_state}
--            (the record was consumed before: what that call did; nothing changes)
--          {'unknown_reservation'}                        (no record: never admitted, expired or lost)
--          {'no_budget'} | {'invalid', arg, reason}
-- Every key but the record and the history minute is checked only where it is touched (KEYS[3] with an
-- in-flight limit, KEYS[4] and KEYS[5] for a probe or a failed call), always before anything changes.
-- Redis cost, everyday: GET + HMGET + TIME + SETRANGE + HSET (skipped when nothing changes), + one HMGET
-- when the held bucket is older than the head; settle adds the history's HGET + HSET; ZREM when an in-flight
-- limit is set or the call was a probe. Off the everyday path (a ring or the breaker's outcome window moves on,
-- app caps, an epoch change, a failure, a breaker not closed): one HMGET more per ring moved, breaker
-- transitions and quorum counting add a few writes.

local MAX_CHARGE = 102 * MAX_TOKENS   -- input and cache write up to 1e8 each, output 1e8 x burndown 100

-- The record key is checked for its prefix only: a record exists only for an id the admission accepted, so the
-- id itself is checked only when there is no record (to tell a malformed id from an unknown one).
if string.find(KEYS[2] or '', BASE .. ':res:', 1, true) ~= 1 then return { 'invalid', 'reservation_id', NAME_RULE } end
local mode, outcome = ARGV[1], ARGV[5]
if mode ~= 'settle' and mode ~= 'release' then return { 'invalid', 'mode', "must be 'settle' or 'release'" } end
local charged, input, output = 0, 0, 0   -- (release: ARGV[2..4] are not read)
if mode == 'settle' then   -- (int_arg's test, inline: this is the everyday path's largest share of argument checks)
  charged, input, output = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  if not (charged and charged % 1 == 0 and charged >= 0 and charged <= MAX_CHARGE) then charged = nil end
  if not (input and input % 1 == 0 and input >= 0 and input <= 2 * MAX_TOKENS) then input = nil end
  if not (output and output % 1 == 0 and output >= 0 and output <= MAX_TOKENS) then output = nil end
  if not charged then return { 'invalid', 'charged', 'must be an integer from 0 to ' .. MAX_CHARGE } end
  if not input then return { 'invalid', 'input', 'must be an integer from 0 to ' .. 2 * MAX_TOKENS } end
  if not output then return { 'invalid', 'output', 'must be an integer from 0 to ' .. MAX_TOKENS } end
end
if outcome ~= 'none' and outcome ~= 'success' and outcome ~= 'failure' and outcome ~= 'slow' then
  return { 'invalid', 'outcome', "must be 'none', 'success', 'failure' or 'slow'" }
end

local packed = redis.call('GET', KEYS[2])
if not packed or #packed <= RECORD_SIZE then
  if not reservation_id() then return { 'invalid', 'reservation_id', NAME_RULE } end
  return { 'unknown_reservation' }
end
local record_state, earlier_charged, earlier_delta, reservation_epoch, _, bucket, day_bucket, requests, held, probe =
  sunpack(RECORD_FORMAT, packed)
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'bst')
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local now = now_ms()
local history_key, history_minute = false, nil
if record_state == RESERVED then   -- (a consumed record answers `already_settled`, whatever its history key)
  history_key, history_minute = history_target(now, mode == 'settle')
  if history_key == nil then return history_minute end
end
-- `cfg`'s doubles 1-16 and 25-28 (the breaker's thresholds, 17-24, are read by the full path alone).
local win, n, dwin, dn, _, _, _, _, _, in_flight_limit, _, epoch, _, _, caps, history_ms =
  sunpack('<dddddddddddddddd', v[1])
local slow_ms, outcome_ms, outcome_n, hop = sunpack('<dddd', v[1], 193)
-- A failed call (reported so, or a success slower than the budget's `b_slow`) may open the breaker, counting
-- the instance that reports it. `latency_ms` is read only when it decides (a success, and `b_slow` set), and
-- `instance` only when the call failed; the sibling keys only when they are touched (an in-flight lease, a
-- probe, a failure), but always before anything changes.
local failed = outcome == 'failure' or outcome == 'slow'
if outcome == 'success' and slow_ms > 0 then
  local latency = int_arg(ARGV[6], 0, MAX_MS)
  if not latency then return { 'invalid', 'latency_ms', 'must be an integer from 0 to ' .. MAX_MS } end
  failed = latency >= slow_ms
end
if failed and not valid_name(ARGV[7]) then return { 'invalid', 'instance', NAME_RULE } end
if (in_flight_limit > 0 and KEYS[3] ~= BASE .. ':inflight')
    or ((probe == 1 or failed) and (KEYS[4] ~= BASE .. ':probes' or KEYS[5] ~= BASE .. ':failers')) then
  return sibling_keys(string.sub(KEYS[2], #BASE + 1), ':inflight', ':probes', ':failers')   -- (names the wrong key)
end
local delta = charged - held
local request_delta = mode == 'release' and -requests or 0
local app = string.sub(packed, RECORD_SIZE + 1)
local st, bst = v[2], v[3]
-- Consume the record (its first three doubles; the TTL stays; the offset goes as a string: a number argument
-- costs Redis a formatting, about 2 000 instructions), end the leases, add the call to the history minute.
-- Both paths below then count the call in the rings and the breaker.
if record_state == RESERVED then
  redis.call('SETRANGE', KEYS[2], '0', spack(CONSUMED_FORMAT, mode == 'settle' and SETTLED or RELEASED, charged, delta))
  if in_flight_limit > 0 or probe == 1 then
    local lease = reservation_epoch .. ':' .. string.sub(KEYS[2], #BASE + 6)
    if in_flight_limit > 0 then redis.call('ZREM', KEYS[3], lease) end
    if probe == 1 then redis.call('ZREM', KEYS[4], lease) end
  end
  if history_key then
    history_add(history_key, history_minute, app, history_ms, requests, charged, input, output)
  end
end

-- The everyday settlement (`everyday_settlement` in ledger_lib_settlement.lua, shared with ledger_settle_many.lua):
-- a reservation of this epoch, no app caps, the window and day rings still in the bucket of the previous call,
-- the breaker closed and either told nothing or a success counted in its outcome window's current bucket.
if record_state == RESERVED and caps == 0 and epoch == reservation_epoch
    and (outcome == 'none' or (outcome == 'success' and not failed)) then
  local next_st, next_bst, slots = everyday_settlement(st, bst, false, now, win, n, dwin, dn, hop, outcome_ms, outcome_n,
    bucket, day_bucket, -request_delta, delta, outcome == 'success')
  if next_st then
    write_settlement(next_st, next_bst, slots, st, bst)
    return delta   -- (settled or released as asked, `charged` as sent, the breaker closed: the cheapest reply)
  end
end
