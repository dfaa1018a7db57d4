-- The ledger's move to `queued` (worker/ledger/lead_state.py), written once for ledger.lua
-- (promote, requeue, resume, replay) and promote.lua: the lead hash `key` gets state `queued`
-- with `fields` (name, value pairs: updated_at ...), keeps no lease, and leaves the index of
-- the state `from` it had (`indexes`: state -> in_flight / retrying index key). An index holds
-- a lead only while it is in that state, so no other index has it. Pushing the message, and the
-- schedule entry, are the caller's.
local function to_queued(key, lead_id, from, indexes, fields)
  redis.call('HSET', key, 'state', 'queued', unpack(fields))
  redis.call('HDEL', key, 'lease_until')
  if indexes[from] then redis.call('ZREM', indexes[from], lead_id) end
end
