-- retry_budget.lua: the fleet-wide retry budget of one target, so an outage never turns into a retry storm.
-- Retries may not exceed max(minimum, ratio x calls) over a rolling window, counted fleet-wide.
-- KEYS[1]  <prefix>{<budget>}:retry   (hash: c:<bucket> = calls, r:<bucket> = retries; same hash tag as the ledger)
-- ARGV     calls (first attempts this instance made since its last report, 0..10^6),
--          window_ms (1000..86400000), bucket_ms (100..window_ms, divides it), ratio (0..10), minimum (0..10^6)
-- Replies  {1, retries, allowed}  the retry may go ahead (and is counted)
--          {0, retries, allowed}  the budget is spent: do not retry
--          {'invalid', argument, reason}
-- Calls are reported lazily (only when an instance wants to retry), so the count can only lag behind:
-- the budget errs toward fewer retries, never more.
-- Redis cost: TIME + HMGET + HINCRBY x 1-2 + PEXPIRE (+ HDEL of expired buckets once per bucket).

local function int_arg(value, low, high)
  local number = tonumber(value)
  if not number or number ~= math.floor(number) or number < low or number > high then return nil end
  return number
end

local calls = int_arg(ARGV[1], 0, 1000000)
if not calls then return { 'invalid', 'calls', 'must be an integer from 0 to 10^6' } end
local window = int_arg(ARGV[2], 1000, 86400000)
if not window then return { 'invalid', 'window_ms', 'must be an integer from 1000 to 86400000' } end
local bucket = int_arg(ARGV[3], 100, window)
if not bucket or window % bucket ~= 0 then
  return { 'invalid', 'bucket_ms', 'must divide window_ms, at least 100' }
end
local ratio = tonumber(ARGV[4])
if not ratio or ratio ~= ratio or ratio < 0 or ratio > 10 then return { 'invalid', 'ratio', 'must be a number from 0 to 10' } end
local minimum = int_arg(ARGV[5], 0, 1000000)
if not minimum then return { 'invalid', 'minimum', 'must be an integer from 0 to 10^6' } end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = math.floor(now / bucket)
local count = window / bucket

local fields = {}
for i = 0, count - 1 do
  fields[#fields + 1] = 'c:' .. (current - i)
  fields[#fields + 1] = 'r:' .. (current - i)
end
local values = redis.call('HMGET', KEYS[1], unpack(fields))
local total_calls, total_retries = calls, 0
for i = 1, #values, 2 do
  total_calls = total_calls + (tonumber(values[i]) or 0)
  total_retries = total_retries + (tonumber(values[i + 1]) or 0)
end
local allowed = math.max(minimum, math.floor(ratio * total_calls))

if calls > 0 then redis.call('HINCRBY', KEYS[1], 'c:' .. current, calls) end
local admitted = total_retries + 1 <= allowed
if admitted then
  redis.call('HINCRBY', KEYS[1], 'r:' .. current, 1)
  total_retries = total_retries + 1
end
-- Buckets older than the window are dropped once the key is idle for a whole window.
redis.call('PEXPIRE', KEYS[1], window + bucket)
if redis.call('HLEN', KEYS[1]) > 4 * count + 8 then
  local all = redis.call('HKEYS', KEYS[1])
  local stale = {}
  for _, name in ipairs(all) do
    if tonumber(string.sub(name, 3)) <= current - count then stale[#stale + 1] = name end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
end
return { admitted and 1 or 0, total_retries, allowed }
