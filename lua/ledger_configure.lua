-- ledger_configure.lua (after ledger_lib.lua): writes a budget's limits and settings.
-- KEYS     <base>:ledger, <base>:inflight   (<base> = <prefix>{<budget>}; the in-flight leases are dropped when
--          the in-flight limit is removed)
-- ARGV[1]  mode: 'seed'    set the configuration only if the budget has none (instances at start-up)
--                'replace' replace the whole configuration; optional settings and caps not named are removed
--                'set'     change only the named settings (for example the effective ceiling `ceil`)
--                'adjust_ceiling' ARGV[2] 'lower' | 'raise', ARGV[3] factor (lower: ceil x factor, 0.01..1) or step
--                          (raise: ceil + step, 0..1), ARGV[4] bound (lower: not below it; raise: not above it;
--                          0.01..1): read and written in one call, so concurrent adjustments compose
-- ARGV[2..] setting, value pairs (docs/ledger.md lists them); an empty value removes an optional setting;
--          `cap:<app>` sets an app's share of the window limits; `hk` how many apps of a minute get their own
--          history row (kept in its own field `hk`, default 50); the waiting line's `lcap` (tickets, 1..1000),
--          `lprom` (batch promotion ms) and `lgrace` (ticket grace ms) in the field `line` (3 packed doubles,
--          absent = 256, 30000, 1000), and `w:<app>` an app's weight in its class (0.01..100, at most 1000 apps).
-- Replies  {'seeded' | 'exists' | 'replaced' | 'set', epoch} | {'ceiling', old, new} (decimal strings)
--          | {'no_budget'} ('set' or 'adjust_ceiling' on a budget without
--          configuration) | {'invalid', setting, reason}
-- When the window or day geometry changes, the usage the old rings still count moves into the head bucket of
-- the new rings (so it leaves a full window later: never counted less), old slots are removed and the epoch
-- changes, so earlier reservations settle without touching the new rings.
-- Redis cost: TIME + HMGET + HSET (+ HKEYS and HDEL on 'replace' or a geometry change).

local function int_setting(low, high, optional)
  return { parse = function(x) return int_arg(x, low, high) end, optional = optional,
    text = string.format('must be an integer from %.0f to %.0f', low, high) }
end
local function num_setting(low, high, optional)
  return { parse = function(x) return num_arg(x, low, high) end, optional = optional,
    text = 'must be a number from ' .. low .. ' to ' .. high }
end
local SETTINGS = {
  win = int_setting(1, MAX_MS), n = int_setting(1, 600),                     -- window and its buckets
  dwin = int_setting(1, MAX_MS), dn = int_setting(1, 600),                   -- day window and its buckets
  rpm = int_setting(1, MAX_LIMIT, true), tpm = int_setting(1, MAX_LIMIT, true),
  tpd = int_setting(1, MAX_LIMIT, true),
  batch = num_setting(0.01, 1), ceil = num_setting(0.01, 1),                 -- batch ceiling, effective ceiling
  infl = int_setting(1, 1000000, true), lease = int_setting(1, MAX_MS),      -- in-flight limit, default lease
  hist = int_setting(60000, 604800000),                                      -- per-minute history retention
  hk = int_setting(1, 1000, true),           -- apps with a history row per minute (field `hk`, not in `cfg`)
  hop = int_setting(0, 60000),                                               -- hop margin ms (ring_span)
  b_rate = num_setting(0.01, 1), b_min = int_setting(1, 1000000000),
  b_consec = int_setting(1, 1000000000, true), b_quorum = int_setting(1, 1000),
  b_open = int_setting(1, MAX_MS), b_mult = num_setting(1, 100), b_max = int_setting(1, MAX_MS),
  b_probes = int_setting(1, 1000), b_close = int_setting(1, 1000), b_lease = int_setting(1, MAX_MS),
  b_slow = int_setting(1, MAX_MS, true), b_win = int_setting(1, MAX_MS), b_n = int_setting(1, 600),
  lcap = int_setting(1, 1000, true), lprom = int_setting(0, MAX_MS, true), lgrace = int_setting(1, MAX_MS, true),
}
local CAP_SETTING = num_setting(0.001, 1, true)
local WEIGHT_SETTING, MAX_WEIGHTS = num_setting(0.01, 100, true), 1000
local LINE_SETTINGS, LINE_DEFAULTS = { 'lcap', 'lprom', 'lgrace' }, { 256, 30000, 1000 }

local keys_error = sibling_keys(':inflight')
if keys_error then return keys_error end
local mode = ARGV[1]
if mode == 'adjust_ceiling' then
  local direction, amount, bound = ARGV[2], num_arg(ARGV[3], 0, 1), num_arg(ARGV[4], 0.01, 1)
  if direction ~= 'lower' and direction ~= 'raise' then return { 'invalid', 'direction', "must be 'lower' or 'raise'" } end
  if not amount or (direction == 'lower' and amount < 0.01) then
    return { 'invalid', 'amount', 'must be a factor from 0.01 to 1 (lower) or a step from 0 to 1 (raise)' }
  end
  if not bound then return { 'invalid', 'bound', 'must be a number from 0.01 to 1' } end
  local stored = redis.call('HGET', LEDGER_KEY, 'cfg')
  if not stored or #stored ~= CONFIG_SIZE then return { 'no_budget' } end
  local values = { sunpack(CONFIG_FORMAT, stored) }
  local old = values[9]
  local new = direction == 'lower' and math.max(bound, old * amount) or math.min(bound, old + amount)
  if (direction == 'lower' and new < old) or (direction == 'raise' and new > old) then
    values[9] = new
    redis.call('HSET', LEDGER_KEY, 'cfg', spack(CONFIG_FORMAT, unpack(values, 1, 28)))
  else
    new = old
  end
  return { 'ceiling', string.format('%.17g', old), string.format('%.17g', new) }
end
if mode ~= 'seed' and mode ~= 'replace' and mode ~= 'set' then
  return { 'invalid', 'mode', "must be 'seed', 'replace', 'set' or 'adjust_ceiling'" }
end
-- A budget name with control or format characters (escape sequences; C1; zero-width and bidirectional
-- controls) is never configured: it could rewrite the terminal of whoever lists budgets.
local ledger_name = KEYS[1]
if ledger_name:find('%c') or ledger_name:find('\194[\128-\159]') or ledger_name:find('\226\128[\139-\143\168-\174]')
    or ledger_name:find('\226\129[\160-\175]') then
  return { 'invalid', 'budget', 'must not contain control or format characters' }
end
local given = {}        -- setting -> number, or false to remove
for i = 2, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  local spec = SETTINGS[name]
  if not spec and string.sub(name, 1, 4) == 'cap:' and valid_name(string.sub(name, 5)) then spec = CAP_SETTING end
  if not spec and string.sub(name, 1, 2) == 'w:' and valid_name(string.sub(name, 3)) then spec = WEIGHT_SETTING end
  if not spec then return { 'invalid', name, 'is not a budget setting' } end
  if value == nil then return { 'invalid', name, 'has no value' } end
  if value == '' then
    if not spec.optional then return { 'invalid', name, 'is required' } end
    given[name] = false
  else
    given[name] = spec.parse(value)
    if not given[name] then return { 'invalid', name, spec.text } end
  end
end

local stored = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st')
if stored[1] and #stored[1] ~= CONFIG_SIZE then stored = { false, false } end   -- another layout: start afresh
if mode == 'seed' and stored[1] then return { 'exists', (select(12, sunpack(CONFIG_FORMAT, stored[1]))) } end
if mode == 'set' and not stored[1] then return { 'no_budget' } end
local old = {}
if stored[1] then
  local values = { sunpack(CONFIG_FORMAT, stored[1]) }
  for i, name in ipairs(config_fields()) do old[name] = values[i] end
end
local config = {}
for _, name in ipairs(config_fields()) do
  local spec = SETTINGS[name]
  if given[name] ~= nil then
    config[name] = given[name] or 0
  elseif mode == 'set' or name == 'ep' or name == 'caps' then
    config[name] = old[name]
  elseif spec.optional then
    config[name] = 0
  else
    return { 'invalid', name, 'is required' }
  end
end
for _, pair in ipairs({ { 'win', 'n' }, { 'dwin', 'dn' }, { 'b_win', 'b_n' } }) do
  if config[pair[1]] % config[pair[2]] ~= 0 then
    return { 'invalid', pair[1], 'must be a whole multiple of ' .. pair[2] .. ' milliseconds (one per bucket)' }
  end
end
if config.b_max < config.b_open then return { 'invalid', 'b_max', 'must be at least b_open' } end
if config.hop > config.win or config.hop > config.dwin then   -- (so a ring counts at most 2 n + 1 buckets)
  return { 'invalid', 'hop', 'must be at most the window and the day window' }
end

local now = now_ms()
local names = stored[1] and redis.call('HKEYS', LEDGER_KEY) or {}
local writes, removals = {}, {}
-- Per-app settings stored as fields `<prefix><app>` (caps, line weights): writes and removals for the ones
-- given ('replace' removes those not named); returns the fields that remain set and their number.
local function per_app_settings(prefix)
  local kept, count = {}, 0
  for _, name in ipairs(names) do
    if string.sub(name, 1, #prefix) == prefix then
      if mode == 'replace' and given[name] == nil then push(removals, name) else kept[name] = true end
    end
  end
  for name, value in pairs(given) do
    if string.sub(name, 1, #prefix) == prefix then
      if value then push(writes, name, value) else push(removals, name) end
      kept[name] = value and true or nil
    end
  end
  for _ in pairs(kept) do count = count + 1 end
  return kept, count
end
local caps, cap_count = per_app_settings('cap:')
if given.hk then
  push(writes, 'hk', given.hk)
elseif given.hk == false or (mode == 'replace' and given.hk == nil) then
  push(removals, 'hk')   -- back to the default (ledger_lib_history.lua: HISTORY_DEFAULT_APPS)
end
-- The waiting line's settings (field `line`) and app weights (`w:<app>`), read by waiting admissions.
local weights, weighted = per_app_settings('w:')
if weighted > MAX_WEIGHTS then return { 'invalid', 'w:<app>', 'at most ' .. MAX_WEIGHTS .. ' apps may have a weight' } end
local weighted_apps = {}   -- field `weighted`: the weighted apps' names, so that ledger_read needs no scan
for name in pairs(weights) do weighted_apps[#weighted_apps + 1] = string.sub(name, 3) end
table.sort(weighted_apps)
if #weighted_apps > 0 then push(writes, 'weighted', table.concat(weighted_apps, ' ')) else push(removals, 'weighted') end
if mode ~= 'set' or given.lcap ~= nil or given.lprom ~= nil or given.lgrace ~= nil then
  local line = LINE_DEFAULTS
  local stored_line = mode == 'set' and redis.call('HGET', LEDGER_KEY, 'line')
  if stored_line and #stored_line == 24 then line = { sunpack('<ddd', stored_line) } end
  local values = {}
  for i, name in ipairs(LINE_SETTINGS) do
    if given[name] == nil then values[i] = line[i] else values[i] = given[name] or LINE_DEFAULTS[i] end
  end
  push(writes, 'line', spack('<ddd', unpack(values)))
end
for _, name in ipairs(names) do   -- the rings of apps that no longer have a cap
  local app = string.match(name, '^a:([^:]+)')
  if app and not caps['cap:' .. app] then push(removals, name) end
end
config.caps = cap_count
local capped = {}   -- field `capped`: the capped apps' names, so that reading them needs no scan of the hash
for name in pairs(caps) do capped[#capped + 1] = string.sub(name, 5) end
if config.caps > MAX_CAPPED_APPS then
  return { 'invalid', 'cap', 'at most ' .. MAX_CAPPED_APPS .. ' apps may have a cap, not ' .. config.caps }
end
table.sort(capped)
if #capped > 0 then push(writes, 'capped', table.concat(capped, ' ')) else push(removals, 'capped') end

if not stored[1] then
  config.ep = now
elseif old.win ~= config.win or old.n ~= config.n or old.dwin ~= config.dwin or old.dn ~= config.dn
    or old.hop ~= config.hop then
  -- Fold: what the old rings count moves into the head bucket of rings with the new geometry (the hop margin
  -- changes how many buckets a ring counts, so it is part of the geometry).
  config.ep = now
  local old_span = ring_span(old.win, old.n, old.hop)
  local seq, code, deadline, window, day =
    state_unpack(stored[2], old.win, old.n, old.dwin, old.dn, old_span, ring_span(old.dwin, old.dn, old.hop))
  local function fold(ring, win, n)
    ring_advance(ring, floor(now / ring.granularity))
    local head = floor(now / (win / n))
    if ring.head > floor(now / ring.granularity) then   -- a booking ahead: the new bucket holding the old one's end
      head = floor(((ring.head + 1) * ring.granularity - 1) / (win / n))
    end
    return ring_new(ring.prefix, ring_span(win, n, config.hop), win / n, head, ring.total1, ring.total2, ring.total1,
      ring.total2, head)
  end
  push(writes, 'st', state_pack(seq, code, deadline, fold(window, config.win, config.n),
    fold(day, config.dwin, config.dn)))
  for _, name in ipairs(names) do
    local app = string.match(name, '^a:([^:]+)$')
    if app then
      ring_writes(fold(app_ring(app, redis.call('HGET', LEDGER_KEY, name), old.win, old.n, old_span), config.win,
        config.n), writes, name)
    end
    if string.match(name, '^[wd]%d+$') or string.match(name, '^a:[^:]+:%d+$') then push(removals, name) end
  end
end
if config.infl == 0 and old.infl and old.infl > 0 then redis.call('DEL', KEYS[2]) end
if old.b_win ~= config.b_win or old.b_n ~= config.b_n then
  push(removals, 'bst')    -- the breaker's outcome window starts afresh (state and deadline stay in `st`)
end

local values = {}
for i, name in ipairs(config_fields()) do values[i] = config[name] end
push(writes, 'cfg', spack(CONFIG_FORMAT, unpack(values)))
redis.call('HSET', LEDGER_KEY, unpack(writes))
if #removals > 0 then redis.call('HDEL', LEDGER_KEY, unpack(removals)) end
local replies = { seed = 'seeded', replace = 'replaced', set = 'set' }
return { replies[mode], config.ep }
