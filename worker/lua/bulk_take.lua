-- One step of the backlog stager (worker/bulk/backlog.py), for the holder of the bulk lock only:
-- hand on what it would not stage, drop what it went through, take the next entries.
-- KEYS[1] the bulk lock (its value is the holder's token)
-- KEYS[2] the backlog's list (`leads` priority 9)   KEYS[3] the stager's holding list
-- KEYS[4] the list entries are handed on to (`leads` priority 6: the workers take them)
-- ARGV[1] the caller's lock token  ARGV[2] most entries to take from KEYS[2]
-- ARGV[3] how many entries at the tail of KEYS[3] were gone through (dropped first)
-- ARGV[4..] entries to LPUSH onto KEYS[4]
-- Entries move from the tail of KEYS[2] (the oldest) to the head of KEYS[3], so the holding
-- list's tail holds the entries taken first; a crash leaves them there for the next holder.
-- Returns the number of entries taken, or -1 when the caller does not hold the lock (nothing
-- is done then).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
for i = 4, #ARGV do
  redis.call('LPUSH', KEYS[4], ARGV[i])
end
local done = tonumber(ARGV[3])
if done > 0 then
  redis.call('LTRIM', KEYS[3], 0, -done - 1)
end
local want = tonumber(ARGV[2])
if want <= 0 then
  return 0
end
local items = redis.call('RPOP', KEYS[2], want)
if not items then
  return 0
end
redis.call('LPUSH', KEYS[3], unpack(items))
return #items
