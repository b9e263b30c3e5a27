-- ledger_settle_many.lua (after ledger_lib.lua, ledger_lib_history.lua and ledger_lib_settlement.lua): up to 64
-- settlements or releases of one budget in one call (group commit: a process sends the settlements of a budget
-- that arrive while one of its settlements is in flight together). Each is decided as ledger_settle.lua would
-- decide it, in order, on the everyday path only (`everyday_settlement`); from the first one that needs anything
-- else (an in-flight limit or a probe, whose leases are not in KEYS; a failure or slow call; app caps; a
-- reservation of an earlier epoch; a ring that moved on; a breaker not closed; an invalid argument), it and every
-- later one are answered `fallback` with nothing changed for them, and the caller sends those through
-- ledger_settle.lua, one by one and in order. So a batch settles a prefix of its calls exactly as the same calls
-- sent one by one at the same instant would be, and the rest are then sent so. A record consumed before (or
-- earlier in the batch: a repeated id) answers `already_settled` and an id without a record
-- `unknown_reservation`, as in ledger_settle.lua; neither changes anything.
-- KEYS     <base>:ledger, then <base>:res:<id> of each call, in order (1-64 calls), then <base>:hist:<minute>:
--          the history minute of every settlement of the batch (checked as ledger_settle.lua checks its last key;
--          one that is not accepted sends every call back as `fallback`)
-- ARGV     per call, 6 values: mode ('settle' | 'release'), charged, input, output, outcome, latency_ms, as for
--          ledger_settle.lua (outcome 'failure' or 'slow' answers `fallback`: it needs the breaker's keys)
-- Replies  {'no_budget'} (no configuration: send every call through ledger_settle.lua, which seeds it), or one
--          answer per call, in order: ledger_settle.lua's everyday reply (the integer charged - held),
--          {'already_settled', 'settled' | 'released', charged, delta_tokens, 'closed'}, {'unknown_reservation'},
--          or {'fallback'} (send it through ledger_settle.lua)
-- Redis cost: HMGET + MGET + TIME + one SETRANGE per call settled + one HSET (when anything changed), + one HMGET
-- per older held bucket first given back to; settlements (not releases) add the history's HGET + HSET once per app
-- of the batch, with the sums of its calls.

local MAX_CALLS, MAX_CHARGE = 64, 102 * MAX_TOKENS   -- (MAX_CHARGE: as in ledger_settle.lua)
local calls = #KEYS - 2
if calls < 1 or calls > MAX_CALLS or #ARGV ~= 6 * calls then
  return redis.error_reply('ERR quotakeeper: ledger_settle_many takes 1-' .. MAX_CALLS
    .. ' record keys, the history key and 6 arguments per record')
end
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'bst')
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local records = redis.call('MGET', unpack(KEYS, 2, calls + 1))
local now = now_ms()
local win, n, dwin, dn, _, _, _, _, _, in_flight_limit, _, epoch, _, _, caps, history_ms =
  sunpack('<dddddddddddddddd', v[1])
local slow_ms, outcome_ms, outcome_n, hop = sunpack('<dddd', v[1], 193)
local history_key, history_minute = history_target(now, true)
local st, bst, slots = v[2], v[3], false
local everyday = history_key and caps == 0 and in_flight_limit == 0
local record_prefix = BASE .. ':res:'
local replies, consumed = {}, {}   -- consumed: record key -> the record as this batch left it
local apps, sums = {}, {}          -- the apps settled, in order, and per app {requests, charged, input, output}
for i = 1, calls do
  local key, at = KEYS[i + 1], 6 * (i - 1)
  local mode, outcome = ARGV[at + 1], ARGV[at + 5]
  local reply = nil   -- nil: `fallback`
  if everyday and string.find(key, record_prefix, 1, true) == 1 and (mode == 'settle' or mode == 'release')
      and (outcome == 'none' or outcome == 'success') then
    local charged, input, output = 0, 0, 0   -- (release: not read)
    if mode == 'settle' then   -- (ledger_settle.lua's checks; a call that fails them is sent alone, which says why)
      charged, input, output = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
      if not (charged and charged % 1 == 0 and charged >= 0 and charged <= MAX_CHARGE
          and input and input % 1 == 0 and input >= 0 and input <= 2 * MAX_TOKENS
          and output and output % 1 == 0 and output >= 0 and output <= MAX_TOKENS) then
        charged = nil
      end
    end
    local failed = false   -- a success slower than `b_slow` (or an invalid latency) is sent alone
    if charged and outcome == 'success' and slow_ms > 0 then
      local latency = int_arg(ARGV[at + 6], 0, MAX_MS)
      failed = not latency or latency >= slow_ms
    end
    local packed = consumed[key] or records[i]
    if not charged or failed then
      reply = nil
    elseif not packed or #packed <= RECORD_SIZE then
      reply = reservation_id(i + 1) and { 'unknown_reservation' } or nil
    else
      local record_state, earlier_charged, earlier_delta, reservation_epoch, _, bucket, day_bucket, requests, held, probe =
        sunpack(RECORD_FORMAT, packed)
      if record_state ~= RESERVED then   -- what the first settle or release did; the breaker is closed (below)
        reply = { 'already_settled', record_state == SETTLED and 'settled' or 'released', earlier_charged, earlier_delta,
          'closed' }
        if not st or #st < STATE_SIZE or select(2, sunpack('<dd', st)) ~= CLOSED then reply = nil end
      elseif probe == 0 and epoch == reservation_epoch then
        local delta = charged - held
        local next_st, next_bst, next_slots = everyday_settlement(st, bst, slots, now, win, n, dwin, dn, hop,
          outcome_ms, outcome_n, bucket, day_bucket, mode == 'release' and requests or 0, delta, outcome == 'success')
        if next_st then
          st, bst, slots = next_st, next_bst, next_slots
          -- Consume the record as ledger_settle.lua does (its first three doubles; the TTL stays).
          local done = spack(CONSUMED_FORMAT, mode == 'settle' and SETTLED or RELEASED, charged, delta)
          redis.call('SETRANGE', key, '0', done)
          consumed[key] = done .. string.sub(packed, 25)
          if mode == 'settle' then
            local app = string.sub(packed, RECORD_SIZE + 1)
            local sum = sums[app]
            if not sum then
              sum = { 0, 0, 0, 0 }
              sums[app], apps[#apps + 1] = sum, app
            end
            sum[1], sum[2], sum[3], sum[4] = sum[1] + requests, sum[2] + charged, sum[3] + input, sum[4] + output
          end
          reply = delta
        end
      end
    end
  end
  if reply == nil then
    everyday = false   -- this one and every later one go one by one, in order
    reply = { 'fallback' }
  end
  replies[i] = reply
end
write_settlement(st, bst, slots, v[2], v[3])
-- The history: each app's row once, apps in the order of their first settlement here (as one by one: the
-- first `hk` apps of a minute get rows), with the sums of the batch's settlements.
for _, app in ipairs(apps) do
  local sum = sums[app]
  history_add(history_key, history_minute, app, history_ms, sum[1], sum[2], sum[3], sum[4])
end
return replies
