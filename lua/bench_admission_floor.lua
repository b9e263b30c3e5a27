-- Benchmark-only reference (quotakeeper-bench ledger, scripts/lua-cost): the Redis work of an admission
-- without its Lua, to split the admission's server time into what Redis does and what the script adds.
-- KEYS[1] = a copy of a ledger hash. One HMGET of `cfg` and `st`, one TIME, one HSET of `st` (unchanged), as
-- `ledger_reserve` does on its everyday path. Arguments are ignored. Returns 1.
local fields = redis.call('HMGET', KEYS[1], 'cfg', 'st')
redis.call('TIME')
redis.call('HSET', KEYS[1], 'st', fields[2])
return 1
