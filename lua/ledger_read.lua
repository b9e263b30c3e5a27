-- ledger_read.lua (after ledger_lib.lua, ledger_lib_history.lua and ledger_lib_extra.lua): one budget's
-- configuration, usage totals and breaker, as JSON. Read-only: the rings are moved forward to now in memory only.
-- KEYS     <base>:ledger, <base>:inflight, <base>:probes, <base>:failers   (<base> = <prefix>{<budget>})
-- Reply    a JSON object (docs/ledger.md: "Reading a budget"), or {'no_budget'}
-- The buckets of the window and day rings are not listed here: each ring's `slots` tells the caller which
-- hash fields hold them (Swift reads them with HMGET in chunks: `QuotaLedger.status(of:)`), so that no call
-- runs longer than 2 ms however many buckets a ring counts (a script listing 1,800 buckets as JSON took 15 ms).
-- Redis cost: TIME + HMGET + ZCOUNT x3, + one HMGET per ring that moved on (the buckets leaving it, at most the
-- ring), + HGET of `capped` and one HMGET per capped app (+ its leaving buckets); for operators, not hot paths.

local keys_error = sibling_keys(':inflight', ':probes', ':failers')
if keys_error then return keys_error end
local v = redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'bst')
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local now = now_ms()
local values = { sunpack(CONFIG_FORMAT, v[1]) }
local config = {}
for i, name in ipairs(config_fields()) do config[name] = values[i] end
local span = ring_span(config.win, config.n, config.hop)
local seq, code, deadline, window, day = state_unpack(v[2], config.win, config.n, config.dwin, config.dn, span,
  ring_span(config.dwin, config.dn, config.hop))

-- The ring's totals as of now and where its buckets are: `slots` = the field prefix (field `<prefix><a % span>`
-- holds bucket a as 3 little-endian doubles: a, counter 1, counter 2; a stored bucket other than a is stale),
-- `span`, `current` (now's bucket: buckets <= current - span have left), and the stored head bucket with its
-- counters (kept in `st`, not in a slot). `window_ms` is the configured window, `counted_ms` what the ring
-- counts (the window, one more bucket and the hop margin: ring_span).
local function describe(ring, names, window_ms)
  local slots = { prefix = ring.prefix, span = ring.n, head = ring.head, head_counts = { ring.head1, ring.head2 } }
  ring_advance(ring, floor(now / ring.granularity))
  slots.current = ring.head
  return { granularity_ms = ring.granularity, window_ms = window_ms, counted_ms = ring.granularity * ring.n,
    [names[1]] = ring.total1, [names[2]] = ring.total2, slots = slots }
end

-- Capped apps (at most MAX_CAPPED_APPS), named by the field `capped`; a budget configured before that field
-- existed is scanned once more (HKEYS) until it is configured again.
local caps, apps, capped, weights = {}, {}, {}, {}
if config.caps > 0 then
  local list = redis.call('HGET', LEDGER_KEY, 'capped')
  if list then
    for app in string.gmatch(list, '%S+') do capped[#capped + 1] = app end
  else
    for _, name in ipairs(redis.call('HKEYS', LEDGER_KEY)) do capped[#capped + 1] = string.match(name, '^cap:(.+)$') end
  end
end
for _, app in ipairs(capped) do
  local stored = redis.call('HMGET', LEDGER_KEY, 'cap:' .. app, 'a:' .. app)
  if stored[1] then
    caps[app] = tonumber(stored[1])
    -- Its totals as of its last admission or settle, 0 once that bucket has left the ring: an upper bound that
    -- costs no slot reads (moving 16 rings to now could read 16 x 1,200 slots).
    local ring = app_ring(app, stored[2], config.win, config.n, span)
    local left = ring.head <= floor(now / ring.granularity) - ring.n
    apps[app] = { cap = caps[app], requests = left and 0 or ring.total1, tokens = left and 0 or ring.total2 }
  end
end

local breaker = { breaker_unpack(v[3], config.b_win, config.b_n) }
local outcomes = breaker[5]
ring_advance(outcomes, floor(now / outcomes.granularity))

local day_usage = describe(day, { 'tokens', 'unused' }, config.dwin)
day_usage.unused = nil
-- App weights of the waiting line (at most MAX_WEIGHTS), named by the field `weighted`: one HMGET, no scan.
local weighted = redis.call('HGET', LEDGER_KEY, 'weighted')
if weighted then
  local names, fields = {}, {}
  for app in string.gmatch(weighted, '%S+') do names[#names + 1] = app; fields[#fields + 1] = 'w:' .. app end
  local values = redis.call('HMGET', LEDGER_KEY, unpack(fields))
  for i, app in ipairs(names) do weights[app] = tonumber(values[i]) end
end
config.ep, config.caps = nil, nil
config.hk = tonumber(redis.call('HGET', LEDGER_KEY, 'hk')) or HISTORY_DEFAULT_APPS   -- history rows per minute
local line = redis.call('HGET', LEDGER_KEY, 'line')   -- the waiting line's settings (ledger_configure)
config.lcap, config.lprom, config.lgrace = 256, 30000, 1000
if line and #line == 24 then config.lcap, config.lprom, config.lgrace = sunpack('<ddd', line) end
return cjson.encode({
  now_ms = now, epoch = values[12], reservations = seq, config = config, caps = caps, apps = apps,
  line_weights = weights,
  window = describe(window, { 'requests', 'tokens' }, config.win), day = day_usage,
  in_flight = redis.call('ZCOUNT', KEYS[2], now, '+inf'),
  breaker = {
    state = breaker_state_name(breaker_effective_state(code, deadline, now)), stored_state = breaker_state_name(code),
    until_ms = deadline, openings = breaker[1], consecutive_failures = breaker[2], probe_successes = breaker[3],
    closed_at_ms = breaker[4], calls = outcomes.total1, failures = outcomes.total2,
    active_probes = redis.call('ZCOUNT', KEYS[3], now, '+inf'),
    failing_instances = redis.call('ZCOUNT', KEYS[4], now - config.b_win, '+inf'),
  },
})
