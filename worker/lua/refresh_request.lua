-- Ask for a token refresh once per refused generation, fleet-wide (worker/auth/access.py).
-- KEYS[1] refresh-requested marker
-- ARGV[1] generation the caller saw refused, ARGV[2] marker TTL in ms
-- Returns 1 when this caller must send the refresh request, 0 when one for this generation
-- (or a later one) is already pending.
local pending = redis.call('GET', KEYS[1])
if pending and tonumber(pending) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
