-- Benchmark-only reference (quotakeeper-bench ledger): the Redis work of an admission without its Lua, to
-- split the admission's server time into what Redis does and what the script adds. KEYS[1] = a scratch hash
-- holding copies of a ledger's `cfg` and `st` fields. One TIME, one HMGET of both fields, one HSET of `st`,
-- as `ledger_reserve` does on its everyday path. Returns 1.
local fields = redis.call('HMGET', KEYS[1], 'cfg', 'st')
redis.call('TIME')
redis.call('HSET', KEYS[1], 'st', fields[2])
return 1
