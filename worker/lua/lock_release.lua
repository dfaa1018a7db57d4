-- Release a lock only when it still holds the caller's owner token (worker/bulk/importer.py).
-- KEYS[1] the lock key
-- ARGV[1] the owner token written when the lock was taken
-- Returns 1 when released, 0 when the lock is gone or held by another owner
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
