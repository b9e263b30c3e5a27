-- ledger_reserve.lua (after ledger_lib.lua and ledger_lib_admission.lua): the full atomic admission of one call
-- against one budget: breaker, requests and tokens per window, tokens per day, batch ceiling, per-app cap,
-- in-flight limit.
-- KEYS     <base>:ledger, <base>:res:<id>, <base>:inflight, <base>:probes   (<base> = <prefix>{<budget>};
--          <id>: the caller's reservation id, 1-64 characters of A-Z a-z 0-9 . _ -, unique per reservation),
--          and for a caller that waits: <base>:line, <base>:line:exp, <base>:line:tickets
-- ARGV     app, priority ('interactive' | 'batch'), requests (1..1000), tokens (0..1e8: input estimate +
--          cache reads + cache writes + max output), [lease_ms] (in-flight lease; absent or 0 = the budget's default)
--          and for a caller that waits (the reservation id names its ticket; repeat it on every attempt):
--          wait_ms (how long it will still wait). The line's settings are the budget's (ledger_configure: field
--          `line` = capacity, promotion ms, grace ms; field `w:<app>` = the app's weight; defaults 256, 30000,
--          1000, 1); arguments after wait_ms are ignored (older clients sent the settings).
-- Replies  {'ok', sequence, epoch, bucket, day_bucket, probe (0|1), admitted_at_ms, repeated (0|1), starts_in_ms}
--            repeated = 1: the id was admitted before (a retry): the first admission's answer, nothing held again
--            starts_in_ms > 0: a booking (a waiting caller admitted for the later time admitted_at_ms: it calls
--            Bedrock only after starts_in_ms); the everyday path's answer leaves it out (0)
--          {'denied', reason, usage, limit, retry_after_ms (-1 = never at this priority), dimension}
--            reason: rpm | tpm | tpd | batch_ceiling | app_cap | in_flight | breaker_open | waiters
--            dimension: requests | tokens | day_tokens | in_flight | breaker | line
--            (`waiters`: callers waiting in line come first; a waiting caller gets a ticket instead)
--          {'queued', due_ms, position, tag, reason, usage, limit, dimension, next_ms}: a waiting caller's ticket
--            (new or kept): come back in due_ms with the same reservation id; position = tickets ahead + 1 (at
--            most LINE_SCAN + 1); tag = the ticket's place in the line (text); next_ms = when the app's next
--            caller of the class would have its turn, by the line's pace (-1: not known, or a booking is ahead)
--          {'no_budget'}   (no configuration: seed it and retry)
--          {'invalid', argument, reason}
-- An admission writes the record `<base>:res:<id>` (RECORD_FORMAT + app), which expires when the hold has left
-- the window or the lease is over, whichever is later; settle/release consume it.
-- Every window ring counts ring_span(win, n, hop) buckets: no continuous window of `win` ms (shifted by up to
-- `hop` ms) holds more than a limit (docs/ledger.md).
-- Redis cost: TIME + one HMGET + GET + one HSET + SET. One more HMGET when the budget has app caps, when the
-- window moves on to a new bucket (at most once per granularity) and per 4 buckets scanned for a denial's
-- retry-after; ZREMRANGEBYSCORE + ZCARD (+ ZADD) when an in-flight limit is set or the breaker is half-open.
-- A denial writes only when the window moved on.

if not reservation_id() then return { 'invalid', 'reservation_id', NAME_RULE } end
local keys_error = sibling_keys(':res:' .. reservation_id(), ':inflight', ':probes')
if keys_error then return keys_error end
local app, priority = ARGV[1], ARGV[2]
if not valid_name(app) then return { 'invalid', 'app', NAME_RULE } end
if priority ~= 'interactive' and priority ~= 'batch' then
  return { 'invalid', 'priority', "must be 'interactive' or 'batch'" }
end
local requests = int_arg(ARGV[3], 1, MAX_REQUESTS)
if not requests then return { 'invalid', 'requests', 'must be an integer from 1 to ' .. MAX_REQUESTS } end
local tokens = int_arg(ARGV[4], 0, MAX_TOKENS)
if not tokens then return { 'invalid', 'tokens', 'must be an integer from 0 to ' .. MAX_TOKENS } end
local lease_ms = 0                       -- optional (most calls leave it out): the budget's default lease
if ARGV[5] then
  lease_ms = int_arg(ARGV[5], 0, MAX_MS)
  if not lease_ms then return { 'invalid', 'lease_ms', 'must be an integer from 0 to ' .. MAX_MS } end
end
local wait_ms                              -- only for a caller that waits (docs/ledger.md "Waiting line")
if ARGV[6] then
  wait_ms = int_arg(ARGV[6], 1, MAX_MS)
  if not wait_ms then return { 'invalid', 'wait_ms', 'must be an integer from 1 to ' .. MAX_MS } end
  if KEYS[5] ~= BASE .. ':line' or KEYS[6] ~= BASE .. ':line:exp' or KEYS[7] ~= BASE .. ':line:tickets' then
    return redis.error_reply('ERR quotakeeper: KEYS[5..7] must be <prefix>{<budget>}:line, :line:exp, :line:tickets')
  end
end

local record_key = KEYS[2]

local v = wait_ms and redis.call('HMGET', LEDGER_KEY, 'cfg', 'st', 'line', 'w:' .. app)
  or redis.call('HMGET', LEDGER_KEY, 'cfg', 'st')
if not v[1] or #v[1] ~= CONFIG_SIZE then return { 'no_budget' } end
local first = redis.call('GET', record_key)
if first then   -- a retry of an admitted reservation: its first answer, nothing held twice
  local _, _, _, first_epoch, first_seq, first_bucket, first_day, _, _, first_probe, first_at = sunpack(RECORD_FORMAT, first)
  return { 'ok', first_seq, first_epoch, first_bucket, first_day, first_probe, first_at, 1, math.max(first_at - now_ms(), 0) }
end
local now = now_ms()
local win, n, dwin, dn, rpm, tpm, tpd, batch, ceiling, in_flight_limit, lease, epoch, probes, probe_lease, caps =
  sunpack(ADMISSION_CONFIG_FORMAT, v[1])
local hop = sunpack('<d', v[1], HOP_OFFSET)
local granularity = win / n
local bucket, day_bucket = floor(now / granularity), floor(now / (dwin / dn))
local share = ceiling * (priority == 'batch' and batch or 1)
local span = ring_span(win, n, hop)
lease = lease_ms > 0 and lease_ms or lease
-- The record lives while its hold is in the window and while its lease runs, whichever is longer.
local record_ms = math.max(span * granularity, lease)
local function record(seq, probe, at, at_bucket, at_day_bucket)
  redis.call('SET', record_key, spack(RECORD_FORMAT, RESERVED, 0, 0, epoch, seq, at_bucket, at_day_bucket, requests,
    tokens, probe, at) .. app, 'PX', record_ms + (at - now))
end

-- The everyday admission (`everyday_admission`, ledger_lib_admission.lua): breaker closed, both rings still in
-- the bucket of the previous call, no waiting line, app caps or in-flight limit, and every limit has room. Any
-- other call takes the full path below; both decide alike.
if v[2] and #v[2] == STATE_SIZE and caps == 0 and in_flight_limit == 0 then
  local st, seq = everyday_admission(v[2], bucket, day_bucket, requests, tokens, rpm, tpm, tpd, share)
  if st then
    redis.call('HSET', LEDGER_KEY, 'st', st)
    record(seq, 0, now, bucket, day_bucket)
    return { 'ok', seq, epoch, bucket, day_bucket, 0, now, 0 }
  end
end

ring_new, ring_add, state_pack, state_unpack, budget_key, breaker_effective_state, ring_header, ring_from,
  app_ring, ring_write, ring_slots, ring_writes, ring_advance, ring_retry_after =
  helpers(STATE_FORMAT, STATE_SIZE, OPEN, HALF_OPEN, FORCED_OPEN)
local seq, breaker_code, breaker_until, window, day =
  state_unpack(v[2], win, n, dwin, dn, span, ring_span(dwin, dn, hop))
local moved = bucket > window.head or day_bucket > day.head

-- Breaker first: an open breaker refuses without looking at the ledger.
local state = breaker_effective_state(breaker_code, breaker_until, now)
if state == OPEN or state == FORCED_OPEN then
  return { 'denied', 'breaker_open', 0, 0, breaker_until > 0 and breaker_until - now or -1, 'breaker' }
end
local probes_key = state == HALF_OPEN and KEYS[4]
if probes_key then
  redis.call('ZREMRANGEBYSCORE', probes_key, '-inf', now)
  local active = redis.call('ZCARD', probes_key)
  if active >= probes then
    local first = redis.call('ZRANGE', probes_key, 0, 0, 'WITHSCORES')
    return { 'denied', 'breaker_open', active, probes, tonumber(first[2]) - now, 'breaker' }
  end
end

if moved then
  ring_advance(window, bucket)
  ring_advance(day, day_bucket)
end
-- Bookings (docs/ledger.md "Waiting line", Bookings): the head of the line that the window will have room for within its wait
-- is admitted at once for that later time, so it does not come back. Its hold goes to the ring's head bucket,
-- which then lies in the future: every later admission is for the head's time or later (what lies before it in
-- the window is no longer counted), so callers that do not wait are refused while a booking is ahead, and each
-- booking is counted in the bucket of the time its caller may start. Only where nothing is counted in time
-- but the rings: no app caps, no in-flight limit, no probe.
local bookable = wait_ms and caps == 0 and in_flight_limit == 0 and not probes_key
local at = math.max(now, window.head * granularity)   -- the earliest time this call can be admitted for

-- The waiting line (docs/ledger.md "Waiting line"). Tickets live in the zset `line` (member
-- `<class i|b>|<requests>|<tokens>|<arrival ms>|<id>`, score = the ticket's tag), `line:exp` (id -> expiry ms)
-- and the hash `line:tickets` (id -> member; `@v` -> the line's virtual time, the highest tag admitted;
-- `@<class>:<app>` -> the app's finish tag). Start-time fair queueing: a ticket's tag is max(virtual time
-- (+ promotion for batch), the app's finish tag in its class), and the app's finish tag moves on by the
-- counted span its demand takes at the full rate / the app's weight, so backlogged apps interleave in
-- proportion to their weights and one app's tickets keep their arrival order. A call is admitted only if the
-- limits have room for it and for every ticket ahead of it (lower tag). `st` carries a marker (the time the
-- head ticket blocks interactive callers from: 0 for an interactive head, arrival + promotion for a batch
-- one; the latest expiry) while tickets exist, which sends every admission off the everyday path; callers
-- that do not wait read only the marker.
local LINE_SCAN = 128       -- tickets ahead summed per call; deeper in line a call is not yet due
local class = priority == 'batch' and 'b' or 'i'
local unit = 0              -- ms of the window this call's demand takes at the full rate
if rpm > 0 then unit = requests * span * granularity / (rpm * share) end
if tpm > 0 then unit = math.max(unit, tokens * span * granularity / (tpm * share)) end
unit = math.max(unit, 0.001)
local ahead_requests, ahead_tokens, ahead, blocked = 0, 0, 0, false
local line_blocks_from, line_until = 0, 0
if window.line then line_blocks_from, line_until = sunpack('<dd', window.line) end
local ticket, tag, app_tag_field, app_finish, app_tagged, virtual, pace, paced_since, paced_most, predicted
local line_cap, promotion, grace, weight = 256, 30000, 1000, 1   -- the line's settings (ledger_configure)
if wait_ms then
  if v[3] and #v[3] == 24 then line_cap, promotion, grace = sunpack('<ddd', v[3]) end
  weight = tonumber(v[4]) or 1
  local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, 32)
  if #expired > 0 then   -- their holders did not come back: they stop blocking (at most 32 leave per call)
    local members, gone = redis.call('HMGET', KEYS[7], unpack(expired)), {}
    for i = 1, #expired do if members[i] then gone[#gone + 1] = members[i] end end
    if #gone > 0 then redis.call('ZREM', KEYS[5], unpack(gone)) end
    redis.call('ZREM', KEYS[6], unpack(expired))
    redis.call('HDEL', KEYS[7], unpack(expired))
  end
  ticket = redis.call('HGET', KEYS[7], reservation_id())
  if ticket then tag = tonumber(redis.call('ZSCORE', KEYS[5], ticket)) end
  app_tag_field = '@' .. class .. ':' .. app
  local tags = redis.call('HMGET', KEYS[7], '@v', app_tag_field, '@r', '@vt', '@w')
  virtual, pace, paced_since, app_finish = tonumber(tags[1]) or 0, tonumber(tags[3]), tonumber(tags[4]), tonumber(tags[2])
  app_tagged, paced_most = tags[2] ~= false, tonumber(tags[5]) or 0
  if not tag then
    ticket = nil
    tag = math.max(virtual + (class == 'b' and promotion or 0), tonumber(tags[2]) or 0)
  end
  -- The line's pace `@r` (real ms per virtual ms, measured as interactive tickets are admitted in turn: about
  -- the weight of the apps that keep tickets waiting) predicts when an interactive ticket's turn comes however
  -- many tickets of other apps are still to arrive ahead of it; a caller that cannot wait that long leaves now.
  -- A sample is at most `@w`, the weight of the interactive apps that have a finish tag (written with the tag,
  -- taken off when tags are pruned): the pace when all of them keep tickets waiting. Without the bound, the
  -- first admission of a burst (a saturated window admits in bursts, one per span) measured a span of real
  -- time against one call's virtual time: a pace of 5 for one app alone sent away callers whose turn was within
  -- their wait, and told a ticket that came back to return 10 s later.
  if pace and class == 'i' then predicted = (tag - virtual) * pace end
  local list = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. tag, 'LIMIT', 0, LINE_SCAN)
  for i = 1, #list do
    local r, t = string.match(list[i], '^%a|(%d+)|(%d+)|')
    ahead_requests, ahead_tokens = ahead_requests + r, ahead_tokens + t
  end
  ahead, blocked = #list, #list == LINE_SCAN
  -- Age-based promotion: a batch ticket older than `promotion` is checked against the interactive limits
  -- (and ordered before every interactive ticket that arrived after its promotion), so it is never starved.
  if ticket and class == 'b' and tonumber(string.match(ticket, '^%a|%d+|%d+|(%d+)|')) + promotion <= now then
    share = ceiling
  end
elseif window.line then
  if line_until <= now then window.line = nil   -- every ticket has expired: the marker goes with the next write
  else blocked = class == 'b' or now >= line_blocks_from end   -- a ticket is ahead of where this call would be
end
if at > now and not bookable then blocked = true end   -- a booking is ahead
-- Per-app shares: a caller without a ticket books only while its app's finish tag is at most BOOKING_LEAD of its
-- calls ahead of the line's virtual time (which bookings do not move: only admissions in turn do); further ahead
-- (above its share) it takes a ticket, in the fair order, as on a line of tickets alone.
local BOOKING_LEAD = 8
local beyond_share = wait_ms and tag > virtual + BOOKING_LEAD * unit / weight
-- True while the line holds fewer than its capacity of tickets and bookings (a caller's own ticket is counted).
local function line_has_room() return ticket or redis.call('ZCARD', KEYS[6]) < line_cap end

local denial          -- the failing check with the longest wait: { reason, usage, limit, retry, dimension }
local capped, app_field
-- Denies unless usage + ahead + amount <= limit x fraction (`ahead`: the demand of the tickets ahead in line);
-- the wait is exact to the ring's granularity while the line ahead fits in what the window holds; deeper in
-- line, each full window's worth ahead adds one counted span (what is admitted as the window frees leaves a
-- span later): an estimate, and the waiter is told precisely when it comes back.
local function check(limit, fraction, ring, column, amount, ahead, reason, dimension)
  if limit == 0 then return end
  local usage = column == 1 and ring.total1 or ring.total2
  local allowed = floor(limit * fraction)
  if usage + ahead + amount <= allowed then return end
  if fraction < ceiling and usage + ahead + amount <= floor(limit * ceiling) then reason = 'batch_ceiling' end
  local retry = -1
  if amount <= allowed then
    local needed, windows = usage + ahead + amount - allowed, 0
    if needed > usage then   -- what the window admits as it frees leaves one span later, `allowed` a span
      windows = math.ceil((needed - usage) / allowed)
      needed = needed - windows * allowed
    end
    retry = needed > 0 and ring_retry_after(ring, column, needed, now) or 0
    if retry < 0 then retry = ring.granularity end   -- (totals and slots disagree: come back a bucket later)
    retry = retry + windows * ring.n * ring.granularity
  end
  if not denial or retry == -1 or (denial[4] ~= -1 and retry > denial[4]) then
    denial = { reason, usage, allowed, retry, dimension }
  end
end

check(rpm, share, window, 1, requests, ahead_requests, 'rpm', 'requests')
check(tpm, share, window, 2, tokens, ahead_tokens, 'tpm', 'tokens')
check(tpd, share, day, 1, tokens, ahead_tokens, 'tpd', 'day_tokens')
if caps > 0 then   -- per-app cap: a share of the window limits, counted in the app's own ring
  app_field = 'a:' .. app
  local cap = redis.call('HMGET', LEDGER_KEY, 'cap:' .. app, app_field)
  if cap[1] then
    capped = app_ring(app, cap[2], win, n, span)
    ring_advance(capped, bucket)
    check(rpm * tonumber(cap[1]), ceiling, capped, 1, requests, 0, 'app_cap', 'requests')
    check(tpm * tonumber(cap[1]), ceiling, capped, 2, tokens, 0, 'app_cap', 'tokens')
  end
end

local inflight_key = in_flight_limit > 0 and KEYS[3]
if inflight_key then
  redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
  local held = redis.call('ZCARD', inflight_key)
  if held >= in_flight_limit and not (denial and denial[4] == -1) then
    local first = redis.call('ZRANGE', inflight_key, 0, 0, 'WITHSCORES')
    local retry = tonumber(first[2]) - now
    if not denial or retry > denial[4] then denial = { 'in_flight', held, in_flight_limit, retry, 'in_flight' } end
  end
end

if blocked and not denial then denial = { 'waiters', ahead, LINE_SCAN, math.max(granularity, at - now), 'line' } end

-- A booking: a waiting caller the rings have room for at `at` (later than now), or the head of the line (no ticket
-- ahead) denied by the window's limits alone whose wait covers the time they will have room (the rings move on to
-- it, and what leaves them then is what the denial's retry-after counted), while the line holds fewer than its
-- capacity of tickets and bookings, and, for a caller without a ticket, while its app is within its share (above).
-- A recheck against the moved rings guards the arithmetic.
local admit_at = now
if bookable then
  local reason = denial and denial[1]
  local within_share = ticket or not beyond_share
  if not denial and at > now then
    if within_share and line_has_room() then admit_at = at else denial = { 'waiters', ahead, LINE_SCAN, at - now, 'line' } end
  elseif denial and ahead == 0 and not blocked and denial[4] > 0 and denial[4] <= wait_ms and within_share
      and (reason == 'rpm' or reason == 'tpm' or reason == 'tpd' or reason == 'batch_ceiling') and line_has_room() then
    local t = now + denial[4]
    if ring_advance(window, floor(t / granularity)) then moved = true end
    if ring_advance(day, floor(t / (dwin / dn))) then moved = true end
    if (rpm == 0 or window.total1 + requests <= floor(rpm * share)) and (tpm == 0 or window.total2 + tokens <= floor(tpm * share))
        and (tpd == 0 or day.total1 + tokens <= floor(tpd * share)) then
      admit_at, denial = math.max(t, window.head * granularity), nil
    end
  end
end

-- A waiting caller denied by the window's limits or the line, who can wait that long, keeps or takes its
-- ticket (when the line has room) and is told when it is due; any other waiting caller leaves the line.
local due, line_changed
-- True if the hash `key` has fewer than `most` fields, after removing, when it is full, the apps' finish tags
-- (`@<class>:<app>`) below the virtual time (a new ticket of that app starts there anyway) among 128 fields drawn
-- at random: reading the whole hash (up to 4,000 fields at the largest capacity) took 2.4-3.4 ms.
local function line_has_tag_room(key, most)
  local size = redis.call('HLEN', key)
  if size < most then return true end
  local fields, stale, weights = redis.call('HRANDFIELD', key, 128, 'WITHVALUES'), {}, {}
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 3) == '@' .. class .. ':' and tonumber(fields[i + 1]) <= virtual then
      stale[#stale + 1] = fields[i]
      weights[#weights + 1] = 'w:' .. string.sub(fields[i], 4)
      if fields[i] == app_tag_field then app_tagged = false end
    end
  end
  if #stale > 0 then
    redis.call('HDEL', key, unpack(stale))
    if class == 'i' then   -- (`@w`: the weight of the interactive apps with a tag)
      for _, w in ipairs(redis.call('HMGET', LEDGER_KEY, unpack(weights))) do paced_most = paced_most - (tonumber(w) or 1) end
      redis.call('HSET', key, '@w', string.format('%.17g', math.max(paced_most, 0)))
    end
  end
  return size - #stale < most
end
-- The fields that write this app's finish tag `finish`, and `@w` when the tag is new.
local function app_tag_fields(fields, finish)
  fields[#fields + 1], fields[#fields + 2] = app_tag_field, string.format('%.17g', finish)
  if class == 'i' and not app_tagged then
    paced_most, app_tagged = paced_most + weight, true
    fields[#fields + 1], fields[#fields + 2] = '@w', string.format('%.17g', paced_most)
  end
  return fields
end
if wait_ms then
  local reason = denial and denial[1]
  if denial and predicted and predicted > denial[4] and denial[4] ~= -1 and (reason == 'rpm' or reason == 'tpm'
      or reason == 'tpd' or reason == 'waiters') and (predicted > wait_ms or (at == now and (ticket or beyond_share))) then
    -- Its turn as the line's pace predicts it: beyond its wait (it leaves), or, for a ticket that came back
    -- when the limits said and found others gone ahead of it, or a new one of an app above its share (whose turn
    -- waits for the other apps' newcomers, which the limits' estimate cannot see), when it comes back (not sooner
    -- and again).
    denial[4] = floor(predicted)
  end
  if denial and denial[4] ~= -1 and denial[4] <= wait_ms and (reason == 'rpm' or reason == 'tpm' or reason == 'tpd'
      or reason == 'batch_ceiling' or reason == 'waiters') then
    if not ticket and line_has_room() and line_has_tag_room(KEYS[7], 3 * line_cap) then
      ticket = class .. '|' .. requests .. '|' .. tokens .. '|' .. now .. '|' .. reservation_id()
      redis.call('ZADD', KEYS[5], tag, ticket)
      app_finish = tag + unit / weight
      redis.call('HSET', KEYS[7], unpack(app_tag_fields({ reservation_id(), ticket }, app_finish)))
    end
    if ticket then   -- (a full line: a plain denial, and the caller waits without a ticket)
      due = denial[4]
      redis.call('ZADD', KEYS[6], now + due + grace, reservation_id())
    end
  else
    if ticket then
      redis.call('ZREM', KEYS[5], ticket)
      redis.call('ZREM', KEYS[6], reservation_id())
      redis.call('HDEL', KEYS[7], reservation_id())
    end
    if not denial and (ticket or line_until > 0 or admit_at > now) then   -- admitted in its turn: the clocks move on
      local in_turn = ticket or admit_at == now   -- (a booking without a ticket moves only its app's finish tag)
      local fields = in_turn and { '@v', string.format('%.17g', math.max(tag, virtual)) } or {}
      if not ticket then app_tag_fields(fields, tag + unit / weight) end
      if tag > virtual and in_turn then   -- the pace: a moving average of real ms per virtual ms over interactive turns
        if paced_since and ticket and class == 'i' then
          local sample = math.min(math.max((now - paced_since) / (tag - virtual), 0.01), math.max(paced_most, weight))
          fields[#fields + 1], fields[#fields + 2] = '@r', string.format('%.17g', pace and 0.75 * pace + 0.25 * sample or sample)
        end
        fields[#fields + 1], fields[#fields + 2] = '@vt', now
      end
      redis.call('HSET', KEYS[7], unpack(fields))
    end
  end
  if not denial and admit_at > now then   -- a booking stays in the line (for `status`: its arrival) until its time comes
    redis.call('ZADD', KEYS[6], admit_at, reservation_id())
    redis.call('HSET', KEYS[7], reservation_id(), ticket or class .. '|' .. requests .. '|' .. tokens .. '|' .. now .. '|' .. reservation_id())
  end
  local head, line = redis.call('ZRANGE', KEYS[5], 0, 0), nil
  local last = tonumber(redis.call('ZRANGE', KEYS[6], -1, -1, 'WITHSCORES')[2] or now)
  if head[1] then
    local head_class, head_arrival = string.match(head[1], '^(%a)|%d+|%d+|(%d+)|')
    line = spack('<dd', head_class == 'b' and tonumber(head_arrival) + promotion or 0, last)
  end
  if last > now then
    for i = 5, 7 do redis.call('PEXPIRE', KEYS[i], last - now + 1000) end
  end
  line_changed = line ~= window.line
  window.line = line
elseif line_until > 0 and not window.line then
  line_changed = true   -- write `st` without the marker of a line whose tickets all expired
end

-- Admitted: hold the request and tokens in the head bucket of every ring.
-- Leases are keyed by epoch and reservation id (a counter that restarts after a state loss names nothing old).
local id, probe = seq, 0
if not denial then
  id = seq + 1
  local lease_member = epoch .. ':' .. reservation_id()
  if probes_key then
    probe = 1
    breaker_code = HALF_OPEN
    redis.call('ZADD', probes_key, now + probe_lease, lease_member)
  end
  if inflight_key then
    redis.call('ZADD', inflight_key, now + lease, lease_member)
  end
  record(id, probe, admit_at, window.head, day.head)
  ring_add(window, requests, tokens)
  ring_add(day, tokens, 0)
  if capped then ring_add(capped, requests, tokens) end
end

-- One HSET: `st`, plus the slots of rings that moved on and the capped app's ring header. A denial writes only
-- when the rings moved on, so later denials need not move them again.
if not denial or moved or line_changed then
  local fields = { 'st', state_pack(id, breaker_code, breaker_until, window, day) }
  ring_writes(window, fields)
  ring_writes(day, fields)
  if capped then ring_writes(capped, fields, app_field) end
  redis.call('HSET', LEDGER_KEY, unpack(fields))
end
if due then
  local next_turn = -1
  if pace and class == 'i' and app_finish and at == now then next_turn = floor(math.max(app_finish - virtual, 0) * pace) end
  return { 'queued', due, ahead + 1, string.format('%.17g', tag), denial[1], denial[2], denial[3], denial[5], next_turn }
end
if denial then return { 'denied', denial[1], denial[2], denial[3], denial[4], denial[5] } end
return { 'ok', id, epoch, window.head, day.head, probe, admit_at, 0, admit_at - now }
