-- One intake request in one atomic call: check the credential, take a slot from its rate limit
-- (GCRA), answer a repeated Idempotency-Key from the stored answer, else LPUSH each lead that
-- was not seen before and store the answer. Nothing is written unless the request is admitted.
-- KEYS[1]  mode "key": the API key's record (hash: name, scope, revoked)
--          mode "sig": the webhook signature's replay marker (refused if already there)
--          mode "none": unused (the caller checked the secret itself)
-- KEYS[2]  GCRA state of this credential: the theoretical arrival time (TAT), in ms
-- KEYS[3]  the queue list (`leads`, priority 0)
-- KEYS[4]  the stored answer for the request's Idempotency-Key ("" when none was given)
-- KEYS[5..7] the queue's lists for priorities 3, 6, 9: each message goes on the list of its
--          priority (worker/base/priority.py: consented leads first)
-- KEYS[8..] one "seen" marker per lead (`<prefix>:intake:seen:<lead_id>`)
-- ARGV[1]  mode: "key", "sig" or "none"
-- ARGV[2]  now, ms since the epoch (the caller's clock)
-- ARGV[3]  emission interval T in ms (1000 / requests per second)
-- ARGV[4]  burst: how many requests may come at once
-- ARGV[5]  scope the route needs ("leads" or "form"), mode "key" only
-- ARGV[6]  replay window in ms, mode "sig" only
-- ARGV[7]  TTL of the seen markers, seconds
-- ARGV[8]  TTL of the stored answer, seconds
-- ARGV[9]  the answer to store (JSON text)
-- ARGV[10..] the messages to LPUSH, ARGV[2 + i] for KEYS[i] (i >= 8)
-- Returns {code, name, retry_after_ms, stored_answer, pushed}:
--   code 1 admitted: stored_answer is "" (pushed = new leads) or the earlier answer (pushed 0)
--   code 0 unknown key, 2 revoked, 3 key not for this route, 4 over the rate (retry in
--   retry_after_ms), 5 signature already used: nothing written

-- #include list_for: kombu's list for a message's priority (worker/lua/lib/list_for.lua)

local mode = ARGV[1]
local now = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local name = ''
if mode == 'key' then
  local record = redis.call('HMGET', KEYS[1], 'name', 'scope', 'revoked')
  if not record[1] then
    return {0, '', 0, '', 0}
  end
  name = record[1]
  if record[3] == '1' then
    return {2, name, 0, '', 0}
  end
  if record[2] ~= ARGV[5] then
    return {3, name, 0, '', 0}
  end
elseif mode == 'sig' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {5, '', 0, '', 0}
  end
end
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then
  tat = now
end
local allow_at = tat + interval - burst * interval
if now < allow_at then
  return {4, name, math.ceil(allow_at - now), '', 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[2], string.format('%d', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
if mode == 'sig' then
  redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[6]))
end
if KEYS[4] ~= '' then
  local stored = redis.call('GET', KEYS[4])
  if stored then
    return {1, name, 0, stored, 0}
  end
end
local pushed = 0
local lists = {KEYS[3], KEYS[5], KEYS[6], KEYS[7]}
for i = 8, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', tonumber(ARGV[7])) then
    redis.call('LPUSH', list_for(ARGV[i + 2], lists), ARGV[i + 2])
    pushed = pushed + 1
  end
end
if KEYS[4] ~= '' and #KEYS > 7 then
  redis.call('SET', KEYS[4], ARGV[9], 'EX', tonumber(ARGV[8]))
end
return {1, name, 0, '', pushed}
