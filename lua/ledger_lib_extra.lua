-- ledger_lib_extra.lua: what every ledger script but the admission (`ledger_reserve`) needs besides
-- ledger_lib.lua and ledger_lib_history.lua: the functions from `helpers(...)`, at once, and the ones below. The
-- admission leaves them out, and settle takes them only off its everyday path, because every function a script
-- defines costs on each call. Sent after ledger_lib.lua and ledger_lib_history.lua:
--   cat lua/ledger_lib.lua lua/ledger_lib_history.lua lua/ledger_lib_extra.lua lua/ledger_read.lua > /tmp/read.lua

ring_new, ring_add, state_pack, state_unpack, budget_key, breaker_effective_state, ring_header, ring_from,
    app_ring, ring_write, ring_slots, ring_writes, ring_advance, ring_retry_after =
    helpers(STATE_FORMAT, STATE_SIZE, OPEN, HALF_OPEN, FORCED_OPEN)

-- Appends `a` (and `b`, if given) to `list`: field/value pairs for HSET, names for HDEL.
local function push(list, a, b)
  list[#list + 1] = a
  if b ~= nil then list[#list + 1] = b end
end

-- Apps with a cap per budget: each has a ring of its own in the ledger hash (up to 1,201 slots), so their number
-- is bounded like every other dimension (ledger_configure refuses more; `capped` lists them for ledger_read).
local MAX_CAPPED_APPS = 16

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
