-- Benchmark-only reference (quotakeeper-bench ledger, scripts/lua-cost): the Redis work of an admission
-- without its Lua, to split the admission's server time into what Redis does and what the script adds.
-- KEYS[1] = a copy of a ledger hash, KEYS[2] = a reservation record key. One HMGET of `cfg` and `st`, one GET
-- of the record, one TIME, one HSET of `st` (unchanged) and one SET PX of the record, as `ledger_reserve` does
-- on its everyday path. Arguments are ignored. Returns 1.
local fields = redis.call('HMGET', KEYS[1], 'cfg', 'st')
redis.call('GET', KEYS[2])
redis.call('TIME')
redis.call('HSET', KEYS[1], 'st', fields[2])
redis.call('SET', KEYS[2], string.sub(fields[2], 1, 100), 'PX', 60000)
return 1
