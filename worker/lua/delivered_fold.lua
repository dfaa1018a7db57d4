-- Fold the per-minute delivered counts that left the recent window into the running total, and
-- answer both counts, in one atomic step (worker/ledger/delivered.py). The `deliver` move
-- (ledger.lua) adds one to the field of its epoch minute; `leadsync status` and the reconcile
-- beat task run this, so the hash keeps about an hour of fields.
-- KEYS[1] delivered per minute (hash: epoch minute -> count)
-- KEYS[2] outcome counters (hash: its field `delivered` is the folded total)
-- KEYS[3] the sorted set versions before this kept (one member per delivery for an hour, up
--         to ~100 MB): nothing writes it now, it is unlinked (freed off Redis's main thread)
-- ARGV[1] the first epoch minute inside the window: fields before it are folded
-- Returns {recent, total}: recent is the sum of the fields left (the window's minutes, and any
--         ahead of this clock), total the folded total plus recent.
local first = tonumber(ARGV[1])
local raw = redis.call('HGETALL', KEYS[1])
local old, folded, recent = {}, 0, 0
for i = 1, #raw, 2 do
  local count = tonumber(raw[i + 1]) or 0
  if (tonumber(raw[i]) or first - 1) < first then
    old[#old + 1] = raw[i]
    folded = folded + count
  else
    recent = recent + count
  end
end
for i = 1, #old, 1000 do  -- unpack's stack is bounded: a week without a fold is 10,080 fields
  redis.call('HDEL', KEYS[1], unpack(old, i, math.min(i + 999, #old)))
end
local total
if folded ~= 0 then
  total = redis.call('HINCRBY', KEYS[2], 'delivered', folded)
else
  total = tonumber(redis.call('HGET', KEYS[2], 'delivered') or '0') or 0
end
redis.call('UNLINK', KEYS[3])
return {recent, total + recent}
