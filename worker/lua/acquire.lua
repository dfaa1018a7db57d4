-- One request slot from the fleet-wide limiter: GCRA spacing plus the daily quota, atomically.
-- KEYS[1]  GCRA state: the theoretical arrival time (TAT) of the next request, in ms
-- KEYS[2]  today's request count (UTC date in the key name)
-- ARGV[1]  now, ms since the epoch (the caller's clock: time is passed in, never read here)
-- ARGV[2]  emission interval T in ms (1000 / requests per second)
-- ARGV[3]  quota limit for this caller (daily quota, minus the reserve for lead calls)
-- ARGV[4]  TTL of the quota key in seconds
-- Returns {granted, retry_after_ms, used_today}:
--   { 1, 0, n}  granted; n counts this request
--   { 0, w, n}  no slot yet; try again in w ms (nothing counted)
--   {-1, 0, n}  today's quota is spent (nothing counted)
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local state = redis.call('MGET', KEYS[2], KEYS[1])
local used = tonumber(state[1] or '0')
if used >= limit then
  return {-1, 0, used}
end
local tat = tonumber(state[2] or '0')
if tat > now then
  return {0, math.ceil(tat - now), used}
end
-- %.3f, not tostring: Lua prints 14 significant digits, which would round the TAT of an
-- epoch-ms clock to 0.1 ms (and sometimes down, a hair under T).
redis.call('SET', KEYS[1], string.format('%.3f', now + interval), 'PX', math.ceil(interval) + 1000)
used = redis.call('INCR', KEYS[2])
if used == 1 then  -- the day's first request made the key: it lives two days
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
end
return {1, 0, used}
