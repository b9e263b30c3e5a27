-- ledger_replay.lua (after ledger_lib.lua, ledger_lib_history.lua and ledger_lib_extra.lua): charges usage that an instance admitted on
-- its own while Redis was unreachable (call path policy failOpen), exactly once.
-- KEYS     <base>:ledger, <base>:replayed:<replay_id>, <base>:hist:<minute> (the current history minute, the
--          last key: `history_target` in ledger_lib_history.lua)   (<base> = <prefix>{<budget>})
-- ARGV     replay_id (1-64 characters of A-Z a-z 0-9 . _ -: the same id on every retry of one entry),
--          app, requests (1..10^6), tokens (0..10^12: what Bedrock charged), dedupe_ms (how long the id is
--          remembered, 1000..one year), input and output (0..10^12: input + cache write and output as Bedrock
--          reported them, for the history)
-- The usage is added to the newest bucket of the window, day and capped-app rings (it happened before now, so
-- it leaves the window later than it really would: counting more, never less) and to this minute's history.
-- The id is remembered in `<base>:replayed:<id>` (KEYS[2], SET NX PX), so a retry after a lost reply counts nothing twice.
-- Replies  {'replayed', tokens} | {'duplicate'} | {'no_budget'} | {'invalid', argument, reason}
-- Redis cost: SET NX + TIME + HMGET + HSET (+ HMGET when a ring moves on) + the history's HGET + HSET.

local replay_id, app = ARGV[1], ARGV[2]
if not valid_name(replay_id) then return { 'invalid', 'replay_id', NAME_RULE } end
local keys_error = sibling_keys(':replayed:' .. replay_id)
if keys_error then return keys_error end
if not valid_name(app) then return { 'invalid', 'app', NAME_RULE } end
local requests = int_arg(ARGV[3], 1, 1000000)
if not requests then return { 'invalid', 'requests', 'must be an integer from 1 to 10^6' } end
local tokens = int_arg(ARGV[4], 0, 1000000000000)
if not tokens then return { 'invalid', 'tokens', 'must be an integer from 0 to 10^12' } end
local dedupe_ms = int_arg(ARGV[5], 1000, MAX_MS)
if not dedupe_ms then return { 'invalid', 'dedupe_ms', 'must be an integer from 1000 to ' .. MAX_MS } end
local input, output = int_arg(ARGV[6], 0, 1000000000000), int_arg(ARGV[7], 0, 1000000000000)
if not input or not output then return { 'invalid', 'input', 'input and output must be integers from 0 to 10^12' } end

local app_field = 'a:' .. app
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'cap:' .. app, app_field)
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end   -- absent, or stored in another layout
local now = now_ms()
local history_key, history_minute = history_target(now, true)
if not history_key then return history_minute end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', dedupe_ms) then
  return { 'duplicate' }
end

local win, n, dwin, dn, _, _, _, _, _, _, _, _, _, _, _, history_ms = sunpack(CONFIG_FORMAT, v[1])
local hop = sunpack('<d', v[1], HOP_OFFSET)
local span = ring_span(win, n, hop)
local seq, breaker_code, breaker_until, window, day = state_unpack(v[2], win, n, dwin, dn, span, ring_span(dwin, dn, hop))
local function charge(ring, d1, d2)
  ring_advance(ring, floor(now / ring.granularity))
  ring_add(ring, d1, d2)
end
charge(window, requests, tokens)
charge(day, tokens, 0)
local fields = {}
ring_writes(window, fields)
ring_writes(day, fields)
if v[3] then
  local capped = app_ring(app, v[4], win, n, span)
  charge(capped, requests, tokens)
  ring_writes(capped, fields, app_field)
end
push(fields, 'st', state_pack(seq, breaker_code, breaker_until, window, day))
redis.call('HSET', LEDGER_KEY, unpack(fields))

history_add(history_key, history_minute, app, history_ms, requests, tokens, input, output)
return { 'replayed', tokens }
