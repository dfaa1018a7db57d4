-- The per-email lock's owner-only steps (worker/delivery/email_lock.py); taking it is a plain
-- `SET key token NX PX lease`, which needs no script.
-- KEYS[1]  the lock key (`<prefix>:email-lock:<hash of the address>`)
-- ARGV[1]  "extend" or "release"
-- ARGV[2]  the owner token the holder took the lock with
-- ARGV[3]  extend only: the new lease in ms (replaces the remaining one)
-- Returns 1 when the caller owned the lock (extended or deleted now), 0 when it did not (it
-- expired, or another holder took it since): nothing is changed then.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return 0
end
if ARGV[1] == 'release' then
  return redis.call('DEL', KEYS[1])
end
return redis.call('PEXPIRE', KEYS[1], ARGV[3])
