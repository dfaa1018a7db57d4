-- Store or remove one dead letter and keep the per-reason counters exact, atomically.
-- KEYS[1]  letters: hash lead id -> letter JSON
-- KEYS[2]  time index: sorted set lead id -> dead_at
-- KEYS[3]  counters: hash reason code -> number of letters with that code
-- KEYS[4]  reasons: hash lead id -> reason code (what the counters counted it under)
-- ARGV[1]  "put", "count" or "remove"
-- ARGV[2]  lead id
-- ARGV[3..5] for "put" only: letter JSON, reason code, dead_at
-- ARGV[4]  for "count": the reason code of a letter the ledger step already wrote with the
--          lead's move (worker/lua/ledger.lua's side entry): only the counters are kept here
-- Returns 1 when a letter was added (put) or deleted (remove), 0 when put replaced an existing
-- letter or remove found none; 1 for count.
local old = redis.call('HGET', KEYS[4], ARGV[2])
if old then
  if redis.call('HINCRBY', KEYS[3], old, -1) <= 0 then
    redis.call('HDEL', KEYS[3], old)
  end
end
if ARGV[1] == 'count' then
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[4])
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  return 1
end
if ARGV[1] == 'put' then
  local added = redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  return added
end
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('HDEL', KEYS[1], ARGV[2])
