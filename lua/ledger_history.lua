-- ledger_history.lua (after ledger_lib.lua): the per-minute history of settled calls, per budget and per app.
-- KEYS[1]  <prefix>{<budget>}:ledger
-- ARGV[1]  minutes to look back (1..10080), ARGV[2] app name or '' for every app
-- Reply    a JSON array, oldest first, of the minutes with settled calls:
--          {start_ms, requests, tokens, input_tokens, output_tokens, apps = {<app> = {requests, tokens,
--          input_tokens, output_tokens}}} (budget totals = sum over apps; tokens = charged, input includes cache
--          writes, output is before burndown)
--          | {'invalid', argument, reason}
-- Redis cost: TIME + one HGETALL per minute looked back; for operators, not hot paths.

local minutes = int_arg(ARGV[1], 1, 10080)
if not minutes then return { 'invalid', 'minutes', 'must be an integer from 1 to 10080' } end
local only = ARGV[2] or ''
if only ~= '' and not valid_name(only) then return { 'invalid', 'app', NAME_RULE } end
local now_minute = floor(now_ms() / 60000)
local HISTORY_FIELDS = { r = 'requests', t = 'tokens', i = 'input_tokens', o = 'output_tokens' }
local rows = {}
for minute = now_minute - minutes + 1, now_minute do
  local stored = redis.call('HGETALL', budget_key(':hist:' .. minute))
  local row = { start_ms = minute * 60000, requests = 0, tokens = 0, input_tokens = 0, output_tokens = 0, apps = {} }
  for i = 1, #stored, 2 do
    local app, kind = string.match(stored[i], '^a:(.+):([rtio])$')
    if app and (only == '' or app == only) then
      local usage = row.apps[app] or { requests = 0, tokens = 0, input_tokens = 0, output_tokens = 0 }
      row.apps[app] = usage
      local name = HISTORY_FIELDS[kind]
      local value = tonumber(stored[i + 1])
      usage[name] = value
      row[name] = row[name] + value
    end
  end
  if row.requests > 0 then rows[#rows + 1] = row end
end
if #rows == 0 then return '[]' end
return cjson.encode(rows)
