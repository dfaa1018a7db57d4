-- Compare-and-set of the token record on its generation (worker/auth/token_store.py).
-- KEYS[1] token hash
-- ARGV[1] expected generation (0 = nothing stored), ARGV[2] "replace" | "update",
-- ARGV[3] "bump" | "keep" (bump: generation becomes expected + 1), ARGV[4..] field, value pairs
-- Returns {1, generation written} on success, {0, current generation} when stale.
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
if ARGV[2] == 'update' and current == 0 then
  return {0, current}
end
if ARGV[2] == 'replace' then
  redis.call('DEL', KEYS[1])
end
local generation = current
if ARGV[3] == 'bump' then generation = current + 1 end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'generation', tostring(generation))
return {1, generation}
