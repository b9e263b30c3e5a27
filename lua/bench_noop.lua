-- Benchmark-only reference (quotakeeper-bench ledger, scripts/lua-cost): the server time of an EVALSHA that
-- does nothing with the key and arguments it is given.
return 1
