-- Benchmark-only baseline for the Redis layer (quotakeeper-bench redis): the smallest useful script,
-- one write. KEYS[1] = a counter key; ARGV[1] = the increment. Returns the new value.
return redis.call('INCRBY', KEYS[1], ARGV[1])
