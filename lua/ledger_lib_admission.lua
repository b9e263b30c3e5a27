-- ledger_lib_admission.lua (after ledger_lib.lua; sent with ledger_reserve.lua and ledger_reserve_many.lua): the
-- everyday admission, shared by the single admission and the batch.
--
-- The everyday admission: breaker closed, both rings still in the bucket of the previous call, and every limit
-- has room (usage and amounts are integers, so `usage + amount > limit x share` is the same test as the full
-- check's against floor(limit x share)). The caller has checked what else it needs: a `st` of exactly
-- STATE_SIZE (no waiting line), no app caps, no in-flight limit. It works on the unpacked numbers of `st`
-- (STATE_FORMAT) without the functions from `helpers(...)`, and holds the call as `ring_add` does on both rings:
-- the head bucket's counters and the totals grow, and an empty ring's `low` moves up to its head. Any other call
-- takes ledger_reserve.lua's full path; both decide alike.
-- Returns the next `st` and the reservation's sequence number, or nil when the call needs the full path.
-- It captures nothing (every captured local would cost an allocation on every call): the formats are literals
-- (STATE_FORMAT), the breaker's closed code is 0 (CLOSED).
local function everyday_admission(st, bucket, day_bucket, requests, tokens, rpm, tpm, tpd, share)
  local seq, code, deadline, w_head, w_requests, w_tokens, w_head_requests, w_head_tokens, w_low,
    d_head, d_tokens, d_unused, d_head_tokens, d_head_unused, d_low = struct.unpack('<ddddddddddddddd', st)
  if code ~= 0 or w_head ~= bucket or d_head ~= day_bucket
      or (rpm > 0 and w_requests + requests > rpm * share) or (tpm > 0 and w_tokens + tokens > tpm * share)
      or (tpd > 0 and d_tokens + tokens > tpd * share) then
    return nil
  end
  if w_requests == 0 and w_tokens == 0 then w_low = w_head end
  if d_tokens == 0 and d_unused == 0 then d_low = d_head end
  return struct.pack('<ddddddddddddddd', seq + 1, code, deadline,
    w_head, w_requests + requests, w_tokens + tokens, w_head_requests + requests, w_head_tokens + tokens, w_low,
    d_head, d_tokens + tokens, d_unused, d_head_tokens + tokens, d_head_unused, d_low), seq + 1
end
