-- ledger_read.lua (after ledger_lib.lua): one budget's configuration, usage and breaker, as JSON. Read-only:
-- the rings are moved forward to now in memory only.
-- KEYS     <base>:ledger, <base>:inflight, <base>:probes, <base>:failers   (<base> = <prefix>{<budget>})
-- Reply    a JSON object (docs/ledger.md: "Reading a budget"), or {'no_budget'}
-- Redis cost: TIME + HMGET + HKEYS + one HMGET per ring (its slots) + ZCOUNT x3; for operators, not hot paths.

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

-- The ring's totals and its non-empty buckets (start time, counters), oldest first, as of now; the head bucket
-- is always listed (so the JSON array is never empty). `window_ms` is the configured window, `counted_ms` what
-- the ring counts (the window, one more bucket and the hop margin: ring_span).
local function describe(ring, names, window_ms)
  ring_advance(ring, floor(now / ring.granularity))
  local buckets = {}
  local slots = ring.n > 1 and ring_slots(ring, ring.head - ring.n + 1, ring.head - 1) or {}
  slots[#slots + 1] = { ring.head, ring.head1, ring.head2 }
  for _, slot in ipairs(slots) do
    if slot[2] ~= 0 or slot[3] ~= 0 or slot[1] == ring.head then
      buckets[#buckets + 1] = { start_ms = slot[1] * ring.granularity, [names[1]] = slot[2], [names[2]] = slot[3] }
    end
  end
  return { granularity_ms = ring.granularity, window_ms = window_ms, counted_ms = ring.granularity * ring.n,
    [names[1]] = ring.total1,
    [names[2]] = ring.total2, buckets = buckets }
end

local caps, apps, weights = {}, {}, {}
for _, name in ipairs(redis.call('HKEYS', LEDGER_KEY)) do
  local weighted = string.match(name, '^w:(.+)$')
  if weighted then weights[weighted] = tonumber(redis.call('HGET', LEDGER_KEY, name)) end
  local app = string.match(name, '^cap:(.+)$')
  if app then
    caps[app] = tonumber(redis.call('HGET', LEDGER_KEY, name))
    local usage = describe(app_ring(app, redis.call('HGET', LEDGER_KEY, 'a:' .. app), config.win, config.n, span),
      { 'requests', 'tokens' }, config.win)
    apps[app] = { cap = caps[app], requests = usage.requests, tokens = usage.tokens }
  end
end

local breaker = { breaker_unpack(v[3], config.b_win, config.b_n) }
local outcome_usage = describe(breaker[5], { 'calls', 'failures' }, config.b_win)

local day_usage = describe(day, { 'tokens', 'unused' }, config.dwin)
day_usage.unused = nil
for _, bucket in ipairs(day_usage.buckets) do bucket.unused = nil end
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
    closed_at_ms = breaker[4], calls = outcome_usage.calls, failures = outcome_usage.failures,
    active_probes = redis.call('ZCOUNT', KEYS[3], now, '+inf'),
    failing_instances = redis.call('ZCOUNT', KEYS[4], now - config.b_win, '+inf'),
  },
})
