-- ledger_lib_extra.lua: what every ledger script but the admission (`ledger_reserve`) needs besides
-- ledger_lib.lua: the functions from `helpers(...)`, at once, and the ones below. The admission leaves them out
-- because every function a script defines costs on each call. Sent after ledger_lib.lua:
--   cat lua/ledger_lib.lua lua/ledger_lib_extra.lua lua/ledger_settle.lua > /tmp/settle.lua

ring_new, ring_add, state_pack, state_unpack, budget_key, breaker_effective_state, ring_header, ring_from,
    app_ring, ring_write, ring_slots, ring_writes, ring_advance, ring_retry_after =
    helpers(STATE_FORMAT, STATE_SIZE, OPEN, HALF_OPEN, FORCED_OPEN)

-- Appends `a` (and `b`, if given) to `list`: field/value pairs for HSET, names for HDEL.
local function push(list, a, b)
  list[#list + 1] = a
  if b ~= nil then list[#list + 1] = b end
end

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
  local key = KEYS[#KEYS]
  local digits = string.sub(key, #BASE + 7)   -- after `<base>:hist:`; compared, never formatted (cheaper)
  local minute = tonumber(digits)
  local current = floor(now / 60000)
  if minute and string.sub(key, 1, #BASE + 6) == BASE .. ':hist:' and not string.find(digits, '%D')
    and minute >= current - HISTORY_SKEW_MINUTES and minute <= current + HISTORY_SKEW_MINUTES then
    return key, minute
  end
  return nil, { 'invalid', 'KEYS[' .. #KEYS .. ']', 'must be the history key <prefix>{<budget>}:hist:<minute> of a minute within '
    .. HISTORY_SKEW_MINUTES .. ' of the Redis clock (now ' .. string.format('%.0f', current) .. ')' }
end

-- Adds one settled call to its minute's row (see above). Redis cost: HMGET + HSET; while the minute has fewer
-- than `hk` app rows and no `other` row, a new app adds HLEN + HGET of `hk` (+ PEXPIREAT for the first row).
local function history_add(key, minute, app, history_ms, requests, tokens, input, output)
  local stored = redis.call('HMGET', key, app, HISTORY_OTHER)
  local field, row, created = app, stored[1], false
  if not row then
    if stored[2] then
      field, row = HISTORY_OTHER, stored[2]
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

-- The number in `value` if it lies in [low, high], else nil.
local function num_arg(value, low, high)
  local n = tonumber(value)
  if n and n >= low and n <= high then return n end
  return nil
end

-- The names of the `cfg` doubles, in order.
local function config_fields()
  return { 'win', 'n', 'dwin', 'dn', 'rpm', 'tpm', 'tpd', 'batch', 'ceil', 'infl', 'lease', 'ep', 'b_probes',
    'b_lease', 'caps', 'hist', 'b_rate', 'b_min', 'b_consec', 'b_quorum', 'b_open', 'b_mult', 'b_max', 'b_close',
    'b_slow', 'b_win', 'b_n', 'hop' }
end

-- The name of a breaker state code.
local function breaker_state_name(code)
  return ({ [0] = 'closed', 'open', 'half_open', 'forced_open', 'disabled' })[code]
end

-- Takes up to (g1, g2) back from bucket `a` (never below zero), if `a` is still inside the window.
local function ring_give_back(ring, a, g1, g2)
  if g1 == 0 and g2 == 0 then return end
  if a == ring.head then
    ring_add(ring, -math.min(g1, ring.head1), -math.min(g2, ring.head2))
  elseif a < ring.head and a > ring.head - ring.n then
    local slot = ring_slots(ring, a, a)[1]
    g1, g2 = math.min(g1, slot[2]), math.min(g2, slot[3])
    ring.total1, ring.total2 = ring.total1 - g1, ring.total2 - g2
    ring_write(ring, a, slot[2] - g1, slot[3] - g2)
  end
end

-- Breaker counters (openings, consecutive failures, probe successes, last close) and outcome ring from `bst`.
local function breaker_unpack(packed, outcome_ms, outcome_n)
  local openings, consecutive, successes, closed_at = 0, 0, 0, 0
  if packed then openings, consecutive, successes, closed_at = sunpack(BREAKER_FORMAT, packed) end
  return openings, consecutive, successes, closed_at,
    ring_from('b', outcome_n, outcome_ms / outcome_n, packed, 33)
end

local function breaker_pack(openings, consecutive, successes, closed_at, outcomes)
  return spack(BREAKER_FORMAT, openings, consecutive, successes, closed_at) .. ring_header(outcomes)
end
