-- Admit one intake request: check its credential, then take a slot from its rate limit (GCRA).
-- KEYS[1]  mode "key": the API key's record (hash: name, scope, revoked)
--          mode "sig": the webhook signature's replay marker (refused if already there)
-- KEYS[2]  GCRA state of this credential: the theoretical arrival time (TAT), in ms
-- ARGV[1]  mode: "key" or "sig" (or "none": rate limit only, the caller checked the secret)
-- ARGV[2]  now, ms since the epoch (the caller's clock)
-- ARGV[3]  emission interval T in ms (1000 / requests per second)
-- ARGV[4]  burst: how many requests may come at once
-- ARGV[5]  scope the route needs ("leads" or "form"), mode "key" only
-- ARGV[6]  replay window in ms, mode "sig" only
-- Returns {code, name, retry_after_ms}:
--   {1, name, 0}  admitted (one slot taken)      {0, '', 0}  unknown key
--   {2, name, 0}  key revoked                    {3, name, 0}  key not for this route
--   {4, name, w}  over the rate: retry in w ms   {5, '', 0}  signature already used
local mode = ARGV[1]
local now = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local name = ''
if mode == 'key' then
  local record = redis.call('HMGET', KEYS[1], 'name', 'scope', 'revoked')
  if not record[1] then
    return {0, '', 0}
  end
  name = record[1]
  if record[3] == '1' then
    return {2, name, 0}
  end
  if record[2] ~= ARGV[5] then
    return {3, name, 0}
  end
elseif mode == 'sig' then
  if redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[6])) == false then
    return {5, '', 0}
  end
end
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then
  tat = now
end
local allow_at = tat + interval - burst * interval
if now < allow_at then
  return {4, name, math.ceil(allow_at - now)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[2], string.format('%d', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, name, 0}
