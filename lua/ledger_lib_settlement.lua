-- ledger_lib_settlement.lua (after ledger_lib.lua and ledger_lib_history.lua; sent with ledger_settle.lua and
-- ledger_settle_many.lua): the everyday settlement, shared by the single settle and the batch.
--
-- The everyday settlement of a reservation of the budget's epoch, on a budget without app caps (the caller checks
-- both, and that the record was not consumed): the window and day rings still in the bucket of the previous call
-- (nothing leaves them), the breaker closed and either told nothing (`counted` false: outcome 'none') or told of
-- a success, counted in its outcome window's current bucket (`counted` true). It works on the unpacked numbers of
-- `st` and `bst` as ledger_settle_full.lua's `settle_ring` and breaker step do: gives back `requests_back`
-- requests and the tokens held beyond the charge (`delta` = charged - held < 0) to the held buckets (the head, or
-- the slot of an older bucket still counted), adds a charge above the hold (`delta` > 0) to the head, counts the
-- success. An older bucket's slot is read from `slots` (field -> packed slot: what an earlier call of the same
-- script wrote, false when none did) or else with one HMGET, and written into `slots` (created when first needed).
-- Returns the next `st` and `bst` (the strings passed in when unchanged) and `slots`, or nil when the call needs
-- the full path (ledger_settle_full.lua); both decide alike. It captures `ring_span` alone (each captured local
-- costs an allocation on every call): the formats are literals (STATE_FORMAT, STATE_SIZE, the breaker's `bst`).
local function everyday_settlement(st, bst, slots, now, win, n, dwin, dn, hop, outcome_ms, outcome_n,
    bucket, day_bucket, requests_back, delta, counted)
  local floor, spack, sunpack = math.floor, struct.pack, struct.unpack
  if not st or (#st ~= 120 and #st ~= 136) then return nil end   -- STATE_SIZE (+ the waiting line's marker)
  local seq, code, deadline, w_head, w_requests, w_tokens, w_head_requests, w_head_tokens, w_low,
    d_head, d_tokens, d_unused, d_head_tokens, d_head_unused, d_low = sunpack('<ddddddddddddddd', st)
  if code ~= 0 or w_head ~= floor(now / (win / n)) or d_head ~= floor(now / (dwin / dn)) then return nil end
  local b_open, b_consecutive, b_successes, b_closed, b_head, b_calls, b_failures, b_head_calls, b_head_failures, b_low
  if counted then
    if not bst or #bst ~= 80 then return nil end
    b_open, b_consecutive, b_successes, b_closed, b_head, b_calls, b_failures, b_head_calls, b_head_failures, b_low =
      sunpack('<dddddddddd', bst)   -- BREAKER_FORMAT, then the outcome ring's header
    if b_head ~= floor(now / (outcome_ms / outcome_n)) then return nil end
  end
  -- Give back: (requests, tokens) to the window's held bucket, tokens to the day's.
  local w_back_requests, w_back_tokens = requests_back, delta < 0 and -delta or 0
  local d_back = w_back_tokens
  local w_slot, d_slot = false, false   -- the held buckets' slot fields, if older than the head and still counted
  if (w_back_requests > 0 or w_back_tokens > 0) and bucket < w_head then
    local span = ring_span(win, n, hop)
    w_slot = bucket > w_head - span and 'w' .. (bucket % span)
  end
  if d_back > 0 and day_bucket < d_head then
    local span = ring_span(dwin, dn, hop)
    d_slot = day_bucket > d_head - span and 'd' .. (day_bucket % span)
  end
  local w_value, d_value = false, false   -- their packed slots (false: never written)
  if w_slot or d_slot then
    slots = slots or {}
    w_value, d_value = w_slot and slots[w_slot], d_slot and slots[d_slot]
    if (w_slot and not w_value) or (d_slot and not d_value) then
      local stored = redis.call('HMGET', KEYS[1], w_slot or d_slot, d_slot or w_slot)
      w_value, d_value = w_value or (w_slot and stored[1]), d_value or (d_slot and stored[2])
    end
  end
  if bucket == w_head then
    if w_requests == 0 and w_tokens == 0 then w_low = w_head end
    if w_back_requests > w_head_requests then w_back_requests = w_head_requests end   -- (math.min, inline)
    if w_back_tokens > w_head_tokens then w_back_tokens = w_head_tokens end
    w_head_requests, w_head_tokens = w_head_requests - w_back_requests, w_head_tokens - w_back_tokens
  elseif w_slot then
    local a, c1, c2 = sunpack('<ddd', w_value or spack('<ddd', -1, 0, 0))
    if a ~= bucket then c1, c2 = 0, 0 end   -- stale: that bucket holds nothing
    w_back_requests, w_back_tokens = math.min(w_back_requests, c1), math.min(w_back_tokens, c2)
    slots[w_slot] = spack('<ddd', bucket, c1 - w_back_requests, c2 - w_back_tokens)
  else
    w_back_requests, w_back_tokens = 0, 0   -- it has left the window
  end
  if day_bucket == d_head then
    if d_tokens == 0 and d_unused == 0 then d_low = d_head end
    if d_back > d_head_tokens then d_back = d_head_tokens end
    d_head_tokens = d_head_tokens - d_back
  elseif d_slot then
    local a, c1, c2 = sunpack('<ddd', d_value or spack('<ddd', -1, 0, 0))
    if a ~= day_bucket then c1, c2 = 0, 0 end
    d_back = math.min(d_back, c1)
    slots[d_slot] = spack('<ddd', day_bucket, c1 - d_back, c2)
  else
    d_back = 0
  end
  -- A charge above the held tokens goes to the head bucket (counting more, never less).
  local extra = delta > 0 and delta or 0
  if extra > 0 then
    if w_requests - w_back_requests == 0 and w_tokens - w_back_tokens == 0 then w_low = w_head end
    if d_tokens - d_back == 0 and d_unused == 0 then d_low = d_head end
  end
  if w_back_requests > 0 or w_back_tokens > 0 or d_back > 0 or extra > 0 then
    st = spack('<ddddddddddddddd', seq, code, deadline,
      w_head, w_requests - w_back_requests, w_tokens - w_back_tokens + extra, w_head_requests, w_head_tokens + extra, w_low,
      d_head, d_tokens - d_back + extra, d_unused, d_head_tokens + extra, d_head_unused, d_low) .. string.sub(st, 121)
  end
  if counted then   -- a success: one more call in the outcome window's current bucket, no failure in a row
    if b_calls == 0 and b_failures == 0 then b_low = b_head end
    bst = spack('<dddddddddd', b_open, 0, b_successes, b_closed,
      b_head, b_calls + 1, b_failures, b_head_calls + 1, b_head_failures, b_low)
  end
  return st, bst, slots
end

-- Writes what `everyday_settlement` returned (`st` and `bst` where they differ from the fields read, `read_st`
-- and `read_bst`, and the slots written) in one HSET, or nothing when nothing changed.
local function write_settlement(st, bst, slots, read_st, read_bst)
  if slots then
    local fields = {}
    for field, value in pairs(slots) do fields[#fields + 1], fields[#fields + 2] = field, value end
    if st ~= read_st then fields[#fields + 1], fields[#fields + 2] = 'st', st end
    if bst ~= read_bst then fields[#fields + 1], fields[#fields + 2] = 'bst', bst end
    redis.call('HSET', KEYS[1], unpack(fields))
  elseif st ~= read_st and bst ~= read_bst then
    redis.call('HSET', KEYS[1], 'st', st, 'bst', bst)
  elseif st ~= read_st or bst ~= read_bst then
    redis.call('HSET', KEYS[1], st ~= read_st and 'st' or 'bst', st ~= read_st and st or bst)
  end
end
