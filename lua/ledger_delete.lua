-- ledger_delete.lua (after ledger_lib.lua): removes a budget, or only its usage.
-- KEYS     <base>:ledger, <base>:inflight, <base>:probes, <base>:failers   (<base> = <prefix>{<budget>})
-- ARGV[1]  'delete'      the ledger, in-flight leases, probes and failing instances (the caller removes the
--                        per-minute history keys itself, in bounded chunks: QuotaLedger.deleteBudget)
--          'reset_usage' keeps configuration and breaker; clears the rings and leases and starts a new epoch
--                        (reservations made before settle without touching the new rings)
-- Replies  {'deleted', keys removed} | {'reset', epoch} | {'no_budget'} | {'invalid', argument, reason}
-- Redis cost: delete: one DEL of 4 keys; reset: HKEYS + HDEL + HSET.

local keys_error = sibling_keys(':inflight', ':probes', ':failers')
if keys_error then return keys_error end
local command = ARGV[1]
if command ~= 'delete' and command ~= 'reset_usage' then
  return { 'invalid', 'command', "must be 'delete' or 'reset_usage'" }
end
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st')
local now = now_ms()
local valid = v[1] and #v[1] == CONFIG_SIZE
local values = valid and { sunpack(CONFIG_FORMAT, v[1]) } or {}
if command == 'delete' then     -- also a budget whose configuration is missing or of another layout
  return { 'deleted', redis.call('DEL', LEDGER_KEY, KEYS[2], KEYS[3], KEYS[4]) }
end
if not valid then return { 'no_budget' } end
local span, dspan = ring_span(values[1], values[2], values[28]), ring_span(values[3], values[4], values[28])
local seq, code, deadline = state_unpack(v[2], values[1], values[2], values[3], values[4], span, dspan)
local removals = {}
for _, name in ipairs(redis.call('HKEYS', LEDGER_KEY)) do
  if string.match(name, '^[wd]%d+$') or string.match(name, '^a:') then push(removals, name) end
end
if #removals > 0 then redis.call('HDEL', LEDGER_KEY, unpack(removals)) end
redis.call('DEL', KEYS[2])
values[12] = now
redis.call('HSET', LEDGER_KEY, 'cfg', spack(CONFIG_FORMAT, unpack(values)), 'st', state_pack(seq, code, deadline,
  ring_new('w', span, values[1] / values[2]), ring_new('d', dspan, values[3] / values[4])))
return { 'reset', now }
