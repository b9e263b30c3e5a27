-- ledger_lib_history.lua: the per-minute history's writer, shared by `ledger_settle` (on its everyday path too)
-- and `ledger_replay`. Sent after ledger_lib.lua by every ledger script but the admission (before
-- ledger_lib_extra.lua), so that settle's everyday path has it without ledger_lib_extra.lua's cost.

-- Per-minute history (docs/ledger.md, "History"): `<prefix>{<budget>}:hist:<minute>` (minute = floor(Redis ms /
-- 60000)) is a hash of rows packed as 4 doubles (HISTORY_ROW: requests, charged tokens, input with cache writes,
-- output as Bedrock reported them). The first `hk` apps (ledger field, default 50) that settle in a minute get a
-- row each, named by the app; every later app of the minute adds to the row HISTORY_OTHER (':' is never in an
-- app name), so the rows of a minute always sum to exactly what was settled in it. The key expires `hist` ms
-- (at most 7 days) after the end of its minute. The caller names the key as the script's last key (every key in
-- KEYS), from Redis time (Swift: the admission's `now_ms` plus the monotonic time since): a minute more than
-- HISTORY_SKEW_MINUTES away from Redis's clock is refused before anything changes.
local HISTORY_ROW = '<dddd'
local HISTORY_OTHER = ':other'
local HISTORY_SKEW_MINUTES = 5
local HISTORY_DEFAULT_APPS = 50
local HISTORY_MAX_MS = 604800000

-- The history key and minute the last key names, or nil and the `invalid` reply if it is not this budget's key
-- of a minute within HISTORY_SKEW_MINUTES of `now`; false if the call records no history (`wanted`). (Two
-- values, not a table: a table costs an allocation on every settle.)
local function history_target(now, wanted)
  if not wanted then return false end
  local key, current = KEYS[#KEYS], floor(now / 60000)
  if key == BASE .. ':hist:' .. current then return key, current end   -- the usual case: this minute
  local digits = string.sub(key, #BASE + 7)   -- after `<base>:hist:`
  local minute = tonumber(digits)
  if minute and string.sub(key, 1, #BASE + 6) == BASE .. ':hist:' and not string.find(digits, '%D')
    and minute >= current - HISTORY_SKEW_MINUTES and minute <= current + HISTORY_SKEW_MINUTES then
    return key, minute
  end
  return nil, { 'invalid', 'KEYS[' .. #KEYS .. ']', 'must be the history key <prefix>{<budget>}:hist:<minute> of a minute within '
    .. HISTORY_SKEW_MINUTES .. ' of the Redis clock (now ' .. string.format('%.0f', current) .. ')' }
end

-- Adds one settled call to its minute's row (see above). Redis cost: HGET + HSET; an app without a row of its
-- own adds HGET of the `other` row, and while the minute has fewer than `hk` app rows and no `other` row, HLEN +
-- HGET of `hk` (+ PEXPIREAT for the first row).
local function history_add(key, minute, app, history_ms, requests, tokens, input, output)
  local field, row, created = app, redis.call('HGET', key, app), false
  if not row then
    row = redis.call('HGET', key, HISTORY_OTHER)
    if row then
      field = HISTORY_OTHER
    else
      local rows = redis.call('HLEN', key)
      created = rows == 0
      if rows >= (tonumber(redis.call('HGET', LEDGER_KEY, 'hk')) or HISTORY_DEFAULT_APPS) then field = HISTORY_OTHER end
    end
  end
  local r, t, i, o = 0, 0, 0, 0
  if row and #row == 32 then r, t, i, o = sunpack(HISTORY_ROW, row) end
  redis.call('HSET', key, field, spack(HISTORY_ROW, r + requests, t + tokens, i + input, o + output))
  if created then
    redis.call('PEXPIREAT', key, (minute + 1) * 60000 + math.min(history_ms, HISTORY_MAX_MS))
  end
end

