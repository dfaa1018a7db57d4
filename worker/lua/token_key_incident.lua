-- Record a token-key failure; say whether it opened a new incident (worker/auth/token_key.py).
-- KEYS[1] incidents hash
-- ARGV[1] field (key fingerprint, or clear:<fingerprint>), ARGV[2] now (epoch s),
-- ARGV[3] reason (no secret), ARGV[4] quiet s, ARGV[5] expiry s
-- Returns 1 when this call opened the incident (first failure, or first after a quiet spell),
-- else 0. Fields: <f> = first failure, <f>:last = latest failure, <f>:reason.
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':last') or '0')
local opened = 0
if tonumber(ARGV[2]) - last > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  opened = 1
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':last', ARGV[2], ARGV[1] .. ':reason', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return opened
