-- ledger_reserve_leave.lua (after ledger_lib.lua): a waiter that gives up (its task was cancelled while it
-- slept) takes its ticket out of the budget's waiting line now, instead of blocking the line until its due time
-- + grace. Idempotent: a ticket that is gone (admitted, expired, left before) changes nothing.
-- KEYS     <base>:ledger, <base>:line, <base>:line:exp, <base>:line:tickets   (<base> = <prefix>{<budget>})
-- ARGV     reservation id (the ticket's name: the id the waiter reserved with)
-- Replies  {'left'} | {'not_waiting'} | {'invalid', argument, reason}
-- When the line is then empty, the line's marker leaves `st` too, so callers that do not wait are admitted at
-- once; otherwise the marker stays as it is (it can only be later than needed: counting more, never less) until
-- the next waiting admission writes it again.
-- Redis cost: HGET (+ ZREM x2, HDEL, ZCARD, HGET, HSET when it held a ticket).

local keys_error = sibling_keys(':line', ':line:exp', ':line:tickets')
if keys_error then return keys_error end
local id = ARGV[1]
if not valid_name(id) then return { 'invalid', 'reservation_id', NAME_RULE } end
local member = redis.call('HGET', KEYS[4], id)
if not member then return { 'not_waiting' } end
redis.call('ZREM', KEYS[2], member)
redis.call('ZREM', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
if redis.call('ZCARD', KEYS[2]) == 0 then
  local state = redis.call('HGET', LEDGER_KEY, 'st')
  if state and #state > STATE_SIZE then redis.call('HSET', LEDGER_KEY, 'st', string.sub(state, 1, STATE_SIZE)) end
end
return { 'left' }
