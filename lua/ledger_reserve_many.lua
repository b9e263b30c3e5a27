-- ledger_reserve_many.lua (after ledger_lib.lua and ledger_lib_admission.lua): up to 64 admissions of one budget in
-- one call (group commit: a process sends the reservations that arrive while one of the budget's is in flight
-- together; a caller that waits joins only while it holds no ticket, and its waiting arguments stay with it: they
-- matter only when the everyday path does not admit it, and then it is sent alone). Each is decided as
-- ledger_reserve.lua would decide it, in order, on the everyday path only (`everyday_admission`); from the first
-- one that needs anything else (a denial, a ring that moved on, a breaker not closed, a waiting line, app caps, an
-- in-flight limit, a bad argument), it and every later one are answered `fallback`, and the caller sends those
-- through ledger_reserve.lua, one by one and in order. So a batch admits a prefix of its calls exactly as the
-- same calls sent one by one at the same instant would be.
-- KEYS     <base>:ledger, then <base>:res:<id> of each call, in order (1-64 calls; each id a different
--          reservation, 1-64 characters of A-Z a-z 0-9 . _ -)
-- ARGV     per call, 5 values: app, priority ('interactive' | 'batch'), requests (1..1000), tokens (0..1e8),
--          lease_ms (0 = the budget's default)
-- Replies  {'no_budget'} (no configuration: seed it and send the calls again), or one answer per call, in order:
--          ledger_reserve.lua's {'ok', sequence, epoch, bucket, day_bucket, probe, admitted_at_ms, repeated}, or
--          {'fallback'} (send it through ledger_reserve.lua)
-- Redis cost: HMGET + MGET + TIME + one SET per admitted call + one HSET (when any was admitted).

local MAX_CALLS = 64
local calls = #KEYS - 1
if calls < 1 or calls > MAX_CALLS or #ARGV ~= 5 * calls then
  return redis.error_reply('ERR quotakeeper: ledger_reserve_many takes 1-' .. MAX_CALLS .. ' record keys and 5 arguments per key')
end
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st')
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local records = redis.call('MGET', unpack(KEYS, 2))
local now = now_ms()
local win, n, dwin, dn, rpm, tpm, tpd, batch, ceiling, in_flight_limit, lease, epoch, _, _, caps =
  sunpack(ADMISSION_CONFIG_FORMAT, v[1])
local hop = sunpack('<d', v[1], HOP_OFFSET)
local granularity = win / n
local bucket, day_bucket = floor(now / granularity), floor(now / (dwin / dn))
local window_ms = ring_span(win, n, hop) * granularity
-- The records' time to live with the budget's lease, formatted once (a number argument costs Redis a
-- formatting, about 2 000 instructions, on every call).
local record_ms = string.format('%d', math.max(window_ms, lease))
local st = v[2]
local everyday = st and #st == STATE_SIZE and caps == 0 and in_flight_limit == 0
local replies, written = {}, {}
for i = 1, calls do
  local key, at = KEYS[i + 1], 5 * (i - 1)
  local app, priority = ARGV[at + 1], ARGV[at + 2]
  local requests, tokens, lease_ms = int_arg(ARGV[at + 3], 1, MAX_REQUESTS), int_arg(ARGV[at + 4], 0, MAX_TOKENS),
    int_arg(ARGV[at + 5], 0, MAX_MS)
  local first = written[key] or records[i]
  if first then   -- a retry of an admitted reservation: its first answer, nothing held twice
    local _, _, _, first_epoch, first_seq, first_bucket, first_day, _, _, first_probe, first_at = sunpack(RECORD_FORMAT, first)
    replies[i] = { 'ok', first_seq, first_epoch, first_bucket, first_day, first_probe, first_at, 1 }
  else
    local next_st, seq
    if everyday and requests and tokens and lease_ms and valid_name(app) and reservation_id(i + 1)
        and (priority == 'interactive' or priority == 'batch') then
      next_st, seq = everyday_admission(st, bucket, day_bucket, requests, tokens, rpm, tpm, tpd,
        ceiling * (priority == 'batch' and batch or 1))
    end
    if next_st then
      st = next_st
      local record = spack(RECORD_FORMAT, RESERVED, 0, 0, epoch, seq, bucket, day_bucket, requests, tokens, 0, now) .. app
      redis.call('SET', key, record, 'PX', lease_ms > 0 and math.max(window_ms, lease_ms) or record_ms)
      written[key] = record
      replies[i] = { 'ok', seq, epoch, bucket, day_bucket, 0, now, 0 }
    else
      everyday = false   -- this one and every later one go one by one, in order
      replies[i] = { 'fallback' }
    end
  end
end
if st ~= v[2] then redis.call('HSET', LEDGER_KEY, 'st', st) end
return replies
