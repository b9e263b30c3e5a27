-- breaker_admin.lua (after ledger_lib.lua): operator commands for a budget's circuit breaker.
-- KEYS     <base>:ledger, <base>:probes, <base>:failers   (<base> = <prefix>{<budget>})
-- ARGV[1]  'force_open' (ARGV[2] = duration ms; 0 = until closed by an operator): refuse every call
--          'close'      closed now: clears the failure window, consecutive failures and probes (keeps the
--                       opening count, so a relapse still backs off)
--          'disable'    never trips; outcomes are still counted (a dry run)
--          'reset'      closed with every counter cleared, as after a fresh start
-- Replies  {'ok', state} | {'no_budget'} | {'invalid', argument, reason}
-- Redis cost: TIME + HMGET + HSET (+ HDEL and DEL of the probe and failure sets).

local keys_error = sibling_keys(':probes', ':failers')
if keys_error then return keys_error end
local command = ARGV[1]
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'bst')
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local now = now_ms()
local win, n, dwin, dn = sunpack(ADMISSION_CONFIG_FORMAT, v[1])
local hop = sunpack('<d', v[1], HOP_OFFSET)
local seq, code, deadline, window, day =
  state_unpack(v[2], win, n, dwin, dn, ring_span(win, n, hop), ring_span(dwin, dn, hop))
local fields = {}
if command == 'force_open' then
  local duration = int_arg(ARGV[2], 0, MAX_MS)
  if not duration then
    return { 'invalid', 'duration_ms', string.format('must be an integer from 0 to %.0f', MAX_MS) }
  end
  code, deadline = FORCED_OPEN, duration > 0 and now + duration or 0
elseif command == 'disable' then
  code, deadline = DISABLED, 0
elseif command == 'close' or command == 'reset' then
  code, deadline = CLOSED, 0
  local openings = v[3] and sunpack(BREAKER_FORMAT, v[3]) or 0
  if command == 'reset' then openings = 0 end
  push(fields, 'bst', breaker_pack(openings, 0, 0, now, ring_new('b', 1, 1)))
  redis.call('DEL', KEYS[2], KEYS[3])
else
  return { 'invalid', 'command', "must be 'force_open', 'close', 'disable' or 'reset'" }
end
push(fields, 'st', state_pack(seq, code, deadline, window, day))
redis.call('HSET', LEDGER_KEY, unpack(fields))
return { 'ok', breaker_state_name(code) }
