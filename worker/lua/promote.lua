-- Move due scheduled leads back onto the `leads` list (worker/schedule.py), bounded batch.
-- KEYS[1] schedule (zset: lead_id -> due epoch s)  KEYS[2] the `leads` list
-- KEYS[3] in_flight index (zset)  KEYS[4] retrying index (zset)
-- KEYS[5..7] the queue's lists for priorities 3, 6, 9 (KEYS[2] is priority 0): each message
-- goes back on the list of its own priority (worker/base/priority.py)
-- ARGV[1] now (epoch s)  ARGV[2] most entries to look at  ARGV[3] lead hash key prefix
-- ("<prefix>:lead:")  ARGV[4] kept-message key prefix ("<prefix>:lead-msg:"); leads are
-- addressed by name: one Redis node, as the whole ledger
-- A lead still in_flight under a live lease is pushed back to its lease end; a retrying one, or
-- one whose holder's lease ran out, has its kept message pushed and becomes queued
-- (lead_state.py TRANSITIONS "promote"); the entry of a lead in any other state, or with no
-- message kept, is dropped and nothing pushed (a lead delivered while a copy was held off
-- leaves the copy's entry for this: ledger.lua).
-- Returns the number of messages pushed.

-- #include list_for: kombu's list for a message's priority (worker/lua/lib/list_for.lua)
-- #include to_queued: the ledger's move to queued (worker/lua/lib/to_queued.lua)

local now = tonumber(ARGV[1])
local lists = {KEYS[2], KEYS[5], KEYS[6], KEYS[7]}
local indexes = {in_flight = KEYS[3], retrying = KEYS[4]}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local pushed = 0
for _, lead_id in ipairs(due) do
  local key = ARGV[3] .. lead_id
  local f = redis.call('HMGET', key, 'state', 'lease_until')
  local state, lease = f[1], tonumber(f[2] or '0') or 0
  local msg = redis.call('GET', ARGV[4] .. lead_id)
  if state == 'in_flight' and lease > now then
    redis.call('ZADD', KEYS[1], lease, lead_id)
  else
    if (state == 'retrying' or state == 'in_flight') and msg then
      redis.call('LPUSH', list_for(msg, lists), msg)
      to_queued(key, lead_id, state, indexes, {'updated_at', ARGV[1]})
      pushed = pushed + 1
    end
    redis.call('ZREM', KEYS[1], lead_id)
  end
end
return pushed
