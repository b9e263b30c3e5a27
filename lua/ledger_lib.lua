-- ledger_lib.lua: helpers shared by every QuotaKeeper ledger script.
-- Not run alone: the Swift side sends `ledger_lib.lua` (+ `ledger_lib_history.lua` and `ledger_lib_extra.lua` for
-- every script but the admission) followed by one operation script, as a single script (one SHA per operation;
-- settle runs its everyday path before ledger_lib_extra.lua: `LedgerScripts` in Swift). By hand:
--   cat lua/ledger_lib.lua lua/ledger_lib_admission.lua lua/ledger_reserve.lua > /tmp/reserve.lua
--   redis-cli --eval /tmp/reserve.lua 'qk:{m}:ledger' 'qk:{m}:res:id-1' 'qk:{m}:inflight' 'qk:{m}:probes' , app interactive 1 100
-- Every script takes KEYS[1] = `<prefix>{<budget>}:ledger` and every other key it touches in KEYS (same hash
-- tag, so the same cluster slot; `sibling_keys` checks them). Redis `TIME` is the only clock. Layout of the ledger hash: docs/ledger.md.

local floor = math.floor
local spack, sunpack = struct.pack, struct.unpack

local MAX_TOKENS = 100000000          -- 1e8: no single request holds more (largest contexts are ~1e6)
local MAX_REQUESTS = 1000             -- requests held by one reservation
local MAX_LIMIT = 1000000000000000    -- 1e15: limits and counters stay exact in a double
local MAX_MS = 31622400000            -- one year, the longest duration any argument may name

local LEDGER_KEY = KEYS[1] or ''
local BRACE = string.find(LEDGER_KEY, '{', 1, true)
if not BRACE or BRACE > #LEDGER_KEY - 9 or string.sub(LEDGER_KEY, -8) ~= '}:ledger' then
  return redis.error_reply('ERR quotakeeper: KEYS[1] must be <prefix>{<budget>}:ledger')
end
-- `<prefix>{<budget>}`: every other key a script touches is this base and a suffix, and comes in KEYS (so a
-- cluster slot that is migrating answers TRYAGAIN before anything runs); `sibling_keys` checks them.
local BASE = string.sub(LEDGER_KEY, 1, -8)

-- Field `cfg`: the configuration as 28 packed doubles in the order of `config_fields()` (0 = an optional
-- setting that is not set; `caps` = how many apps have a cap; names: `config_fields()` in ledger_lib_extra.lua).
-- The admission reads the first 15 and the 28th, `hop` (HOP_OFFSET).
local CONFIG_FORMAT = '<dddddddddddddddddddddddddddd'
local CONFIG_SIZE = 224                  -- a `cfg` of any other size is from another layout: no budget
local ADMISSION_CONFIG_FORMAT = '<ddddddddddddddd'
local HOP_OFFSET = 217                   -- byte position of `hop` (the 28th double) in `cfg`
-- A reservation's record `<base>:res:<id>` (string): RECORD_FORMAT doubles, then the app name. [1] state
-- (RESERVED, SETTLED, RELEASED), [2] tokens charged and [3] tokens given back by its settle or release (0 until
-- then), [4] epoch, [5] sequence number, [6] bucket, [7] day bucket, [8] requests, [9] held tokens, [10] probe
-- 0|1, [11] admission time ms. Written by the admission; settle/release consume it by overwriting its first
-- three doubles (CONSUMED_FORMAT, SETRANGE: the TTL stays).
local RECORD_FORMAT = '<ddddddddddd'
local RECORD_SIZE = 88
local CONSUMED_FORMAT = '<ddd'
local RESERVED, SETTLED, RELEASED = 0, 1, 2
-- Field `st`: the admission state as 15 packed doubles: [1] reservation counter, [2] breaker state code,
-- [3] breaker deadline, then the ring headers (RING_FORMAT in `helpers()`) of the window [4-9] and of the day
-- [10-15]: head bucket, total 1, total 2, head bucket counter 1 and 2, low.
local STATE_FORMAT = '<ddddddddddddddd'
local STATE_SIZE = 120
-- Field `bst`: breaker counters: 4 packed doubles (openings, consecutive failures, probe successes, last close
-- time), then the ring header of its outcome window (counter 1 = calls, counter 2 = failures).
local BREAKER_FORMAT = '<dddd'
-- Breaker state codes in `st`.
local CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = 0, 1, 2, 3, 4

local function now_ms()   -- (TIME's strings take part in arithmetic as numbers: no `tonumber` needed)
  local t = redis.call('TIME')
  return t[1] * 1000 + floor(t[2] / 1000)
end

-- The number in `value` if it is an integer in [low, high], else nil.
local function int_arg(value, low, high)
  local n = tonumber(value)
  if n and n == floor(n) and n >= low and n <= high then return n end
  return nil
end

-- Nil if KEYS[2..] are BASE followed by the given suffixes, in order, else the error reply to return.
local function sibling_keys(...)
  local suffixes = { ... }
  for i = 1, #suffixes do
    if KEYS[i + 1] ~= BASE .. suffixes[i] then
      return redis.error_reply('ERR quotakeeper: KEYS[' .. (i + 1) .. '] must be <prefix>{<budget>}' .. suffixes[i])
    end
  end
  return nil
end

-- The reservation id named by KEYS[index] (default 2) = `<base>:res:<id>`, or nil if it is not a valid id.
local function reservation_id(index)
  local key = KEYS[index or 2] or ''
  if #key <= #BASE + 5 or string.sub(key, 1, #BASE + 5) ~= BASE .. ':res:' then return nil end
  local id = string.sub(key, #BASE + 6)
  if #id > 64 or string.find(id, '[^%w%._%-]') then return nil end
  return id
end

-- Buckets a window ring counts: `n` buckets of `win / n` ms, one more (an admission at any time within the
-- head bucket sees every bucket a continuous window ending then overlaps) and enough to cover the hop margin
-- `hop` (ms between the admission and Bedrock's own). docs/ledger.md: "Exact against a sliding window".
local function ring_span(win, n, hop)
  return n + 1 + math.ceil(hop * n / win)
end

-- App and instance names: 1-64 characters of A-Z a-z 0-9 . _ -
local NAME_RULE = 'must be 1-64 characters of A-Z a-z 0-9 . _ -'
local function valid_name(name)
  return name ~= nil and #name >= 1 and #name <= 64 and not string.find(name, '[^%w%._%-]')
end

-- Everything else comes from `helpers(...)`, which defines and returns the functions declared below, in this
-- order. They are not defined at the top like the ones above because a script defines its functions anew on
-- every call, used or not, and each local a function captures costs an allocation as well: the admission's
-- everyday path (ledger_reserve.lua) needs none of them, nor does settle's (ledger_settle.lua). Every other
-- script takes them at once (ledger_lib_extra.lua), admission and settle only when they leave their everyday path. For the same reason `helpers`
-- captures nothing: KEYS[1] stands for LEDGER_KEY, the packing functions and ring formats are its own locals
-- and the state format and breaker codes come in as arguments:
--   helpers(STATE_FORMAT, STATE_SIZE, OPEN, HALF_OPEN, FORCED_OPEN)
local ring_new, ring_add, state_pack, state_unpack, budget_key, breaker_effective_state, ring_header, ring_from,
  app_ring, ring_write, ring_slots, ring_writes, ring_advance, ring_retry_after
local function helpers(STATE_FORMAT, STATE_SIZE, OPEN, HALF_OPEN, FORCED_OPEN)
  local spack, sunpack = struct.pack, struct.unpack
  -- A ring header: head bucket, total 1, total 2, head bucket counter 1 and 2, oldest bucket that may hold counts.
  local RING_FORMAT = '<dddddd'
  local SLOT_FORMAT = '<ddd'               -- a ring slot: its absolute bucket, counter 1, counter 2

  -- A ring counts two numbers per time bucket over a sliding window of `n` buckets (for the window and day rings
  -- `n` is the span from `ring_span`) (absolute bucket =
  -- floor(time / granularity)). Its header (head = newest bucket, totals over the window, the head bucket's own
  -- counters) lives in a packed field read with every call; every older bucket lives in its own hash field
  -- `<prefix><a % n>` as (a, counter 1, counter 2), written once, when the head moves on. A slot whose stored
  -- bucket is not the one expected is stale and counts as zero, so nothing ever needs clearing.
  local function ring_new(prefix, n, granularity, head, total1, total2, head1, head2, low)
    return { prefix = prefix, n = n, granularity = granularity, head = head or -1, total1 = total1 or 0,
      total2 = total2 or 0, head1 = head1 or 0, head2 = head2 or 0, low = low or -1, pending = false }
  end

  -- Adds (d1, d2) to the head bucket. `low` (no counts below it) moves up to the head when the ring was empty.
  -- (The admission's everyday path in ledger_reserve.lua does the same on the unpacked numbers of `st`.)
  local function ring_add(ring, d1, d2)
    if ring.total1 == 0 and ring.total2 == 0 then ring.low = ring.head end
    ring.head1, ring.head2 = ring.head1 + d1, ring.head2 + d2
    ring.total1, ring.total2 = ring.total1 + d1, ring.total2 + d2
  end

  -- The packed `st` field.
  -- `st` may end with the waiting line's marker (QUEUE_MARKER_SIZE bytes, see ledger_reserve.lua): it rides
  -- on the window ring as `line` and is written back unchanged by every script but the admission.
  local function state_pack(seq, breaker_code, breaker_until, w, d)
    return spack(STATE_FORMAT, seq, breaker_code, breaker_until, w.head, w.total1, w.total2, w.head1, w.head2, w.low,
      d.head, d.total1, d.total2, d.head1, d.head2, d.low) .. (w.line or '')
  end

  -- Seq, breaker code, breaker deadline, window ring, day ring from the packed `st` field (nil: a new budget).
  -- The rings count `ring_span(win, n, hop)` buckets (ledger_lib.lua), passed in as `span` / `dspan`.
  local function state_unpack(packed, win, n, dwin, dn, span, dspan)
    if not packed or (#packed ~= STATE_SIZE and #packed ~= STATE_SIZE + 16) then   -- new budget, or a state of
      return 0, 0, 0, ring_new('w', span, win / n), ring_new('d', dspan, dwin / dn)  -- another layout: afresh
    end
    local seq, code, deadline, h, t1, t2, h1, h2, low, dh, dt1, dt2, dh1, dh2, dlow = sunpack(STATE_FORMAT, packed)
    local window = ring_new('w', span, win / n, h, t1, t2, h1, h2, low)
    if #packed > STATE_SIZE then window.line = string.sub(packed, STATE_SIZE + 1) end
    return seq, code, deadline, window, ring_new('d', dspan, dwin / dn, dh, dt1, dt2, dh1, dh2, dlow)
  end

  -- The budget's sibling key `<prefix>{<budget>}<suffix>`: ':inflight' (ZSET reservation id -> lease expiry ms),
  -- ':probes' (ZSET reservation id -> half-open probe lease expiry ms), ':failers' (ZSET instance id -> time of
  -- its latest failure ms), ':hist:<minute>', ':replayed:<id>'. Built on use: most calls touch none.
  local function budget_key(suffix)
    return string.sub(KEYS[1], 1, -8) .. suffix
  end

  -- The breaker state callers see: an open (or timed forced-open) breaker whose time is up is half-open.
  local function breaker_effective_state(code, open_until, now)
    if (code == OPEN or code == FORCED_OPEN) and open_until > 0 and now >= open_until then return HALF_OPEN end
    return code
  end

  local function ring_header(ring)
    return spack(RING_FORMAT, ring.head, ring.total1, ring.total2, ring.head1, ring.head2, ring.low)
  end

  -- A ring whose header is stored in `packed` at byte `position` (a new, empty ring if `packed` is nil).
  local function ring_from(prefix, n, granularity, packed, position)
    if not packed or #packed < position + 47 then return ring_new(prefix, n, granularity) end
    return ring_new(prefix, n, granularity, sunpack(RING_FORMAT, packed, position))
  end

  -- A per-app ring (for apps with a cap) from its header field `a:<app>`; it counts `span` buckets like the window.
  local function app_ring(app, packed, win, n, span)
    return ring_from('a:' .. app .. ':', span, win / n, packed, 1)
  end

  local function ring_write(ring, a, c1, c2)
    ring.pending = ring.pending or {}
    ring.pending[ring.prefix .. (a % ring.n)] = spack(SLOT_FORMAT, a, c1, c2)
  end

  -- The counters of absolute buckets first..last below the head: a list of {bucket, counter 1, counter 2}.
  local function ring_slots(ring, first, last)
    local names = {}
    for a = first, last do names[#names + 1] = ring.prefix .. (a % ring.n) end
    local stored = redis.call('HMGET', KEYS[1], unpack(names))
    local slots = {}
    for i = 1, #names do
      local a, c1, c2 = first + i - 1, 0, 0
      local value = ring.pending and ring.pending[names[i]] or stored[i]
      if value then
        local b, s1, s2 = sunpack(SLOT_FORMAT, value)
        if b == a then c1, c2 = s1, s2 end
      end
      slots[i] = { a, c1, c2 }
    end
    return slots
  end

  -- Milliseconds from `now` until the oldest buckets leaving the window have freed at least `needed` of
  -- counter `column` (bucket a leaves at (a + n) x granularity), or -1 if the whole window cannot free that much.
  local function ring_retry_after(ring, column, needed, now)
    local freed = 0
    local first = math.max(ring.low, ring.head - ring.n + 1)
    while first <= ring.head do
      local last = math.min(first + 3, ring.head - 1)   -- 4 slots a read: usually the oldest suffices
      local slots = last >= first and ring_slots(ring, first, last) or {}
      if last < first then   -- only the head bucket is left
        slots = { { ring.head, ring.head1, ring.head2 } }
        last = ring.head
      end
      for _, slot in ipairs(slots) do
        freed = freed + slot[column + 1]
        if freed >= needed then return (slot[1] + ring.n) * ring.granularity - now end
      end
      first = last + 1
    end
    return -1
  end

  -- Appends the ring's slot writes (field, value pairs) to `fields`, and its header as `header_field` if named.
  local function ring_writes(ring, fields, header_field)
    if header_field then
      fields[#fields + 1], fields[#fields + 2] = header_field, ring_header(ring)
    end
    if ring.pending then
      for name, value in pairs(ring.pending) do fields[#fields + 1], fields[#fields + 2] = name, value end
    end
  end

  -- Moves the ring forward to end at bucket `b`: the head bucket goes to its slot and the buckets that leave
  -- the window are subtracted from the totals. Returns true if the ring moved.
  local function ring_advance(ring, b)
    local steps = b - ring.head
    if steps <= 0 then return false end
    if steps >= ring.n then
      ring.total1, ring.total2 = 0, 0
    else
      if ring.head1 ~= 0 or ring.head2 ~= 0 then ring_write(ring, ring.head, ring.head1, ring.head2) end
      local first = math.max(ring.head + 1 - ring.n, ring.low)   -- buckets below `low` hold nothing
      if first <= b - ring.n then
        for _, slot in ipairs(ring_slots(ring, first, b - ring.n)) do
          ring.total1, ring.total2 = ring.total1 - slot[2], ring.total2 - slot[3]
        end
      end
    end
    ring.head, ring.head1, ring.head2 = b, 0, 0
    return true
  end

  return ring_new, ring_add, state_pack, state_unpack, budget_key, breaker_effective_state, ring_header, ring_from,
    app_ring, ring_write, ring_slots, ring_writes, ring_advance, ring_retry_after
end
