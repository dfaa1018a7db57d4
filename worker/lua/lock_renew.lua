-- Extend a lock's TTL only when it still holds the caller's owner token (worker/bulk/importer.py).
-- KEYS[1] the lock key
-- ARGV[1] the owner token  ARGV[2] the new TTL in ms
-- Returns 1 when extended, 0 when the lock is gone or held by another owner
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
