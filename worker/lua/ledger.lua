-- One step of a lead's ledger entry (worker/ledger/ledger.py), atomic: check, move, side writes.
-- KEYS[1] lead hash          KEYS[2] in_flight index (zset)  KEYS[3] retrying index (zset)
-- KEYS[4] schedule (zset: lead_id -> due epoch s)
-- KEYS[5] delivered per minute (hash: epoch minute -> count; worker/ledger/delivered.py)
-- KEYS[6] the `leads` list   KEYS[7] side hash (dead letters / parked entries, by lead_id)
-- KEYS[8] side zset (dead-letter index / parked resume times)
-- KEYS[9] the lead's kept message (a string key beside the hash, so the hash stays small);
--         kept without TTL while the lead is parked, dropped once it is settled
-- KEYS[10..12] the queue's lists for priorities 3, 6, 9 (KEYS[6] is priority 0): a message goes
--         back on the list of its own priority (worker/base/priority.py)
-- KEYS[13] outcome counters (hash: counter name -> count, shown by `leadsync status`)
-- KEYS[14] the lead's email lock (worker/delivery/email_lock.py; used when ARGV[15] is set)
-- ARGV[1] op (begin|deliver|retry|park|dead|promote|requeue|resume|replay|stage)
-- ARGV[2] lead_id  ARGV[3] now (epoch s)  ARGV[4] ttl_s of the lead hash
-- ARGV[5] states the op may start from, comma separated, "-" standing for "no entry"
--         (from worker/ledger/lead_state.py TRANSITIONS: the table is the source of truth)
-- ARGV[6] target state  ARGV[7] task id (begin)  ARGV[8] lease end (begin) / due time (retry)
-- ARGV[9] message to keep (begin) or to push (to queued; "" = the one kept in the hash)
-- ARGV[10] side value ("" none, "-" remove lead_id from the side hash and zset)
-- ARGV[11] side score  ARGV[12] expected updated_at ("" = no check)
-- ARGV[13] the epoch minute of `now`: a deliver move adds one to that field of KEYS[5]
-- ARGV[14] counters to add one to when the move is made, comma separated ("" none)
-- ARGV[15] email lock owner token ("" none): `begin` taking the lead also takes the lock
--          (SET NX PX ARGV[16]) if it is free; any other op releases it if that owner holds it
-- ARGV[16] the lock's lease in ms (begin)
-- ARGV[17..] field, value pairs to set on the lead hash
-- Returns {"taken", attempts, locked} | {"busy", lease_end} | {"settled", state} (begin;
--         locked 1 when the lock was taken too, 0 when another holder has it)
--         {"ok", target, released} | {"refused", current state, released} (other ops;
--         released 1 when the lock was this owner's and is deleted now)
-- The in_flight and retrying indexes hold a lead only while its state is in_flight or retrying
-- (every move keeps them so), so they are written only from or to those. The schedule holds a
-- retrying lead's due time, or an in_flight one's lease end (a copy was held off); `deliver`
-- leaves the latter to promote.lua, which drops the entry of a settled lead when it is due.

-- #include list_for: kombu's list for a message's priority (worker/lua/lib/list_for.lua)
-- #include to_queued: the move to queued (worker/lua/lib/to_queued.lua)

local key, lead_id, now = KEYS[1], ARGV[2], tonumber(ARGV[3])
local f = redis.call('HMGET', key, 'state', 'task_id', 'lease_until', 'attempts', 'first_seen',
                     'updated_at')
local state = f[1] or ''
local from = (state == '') and '-' or state
local allowed = false
for s in string.gmatch(ARGV[5], '[^,]+') do
  if s == from then allowed = true end
end
local op, target = ARGV[1], ARGV[6]
local open = (state == 'in_flight' or state == 'retrying')
local indexes = {in_flight = KEYS[2], retrying = KEYS[3]}

local function index(to)
  for i, s in ipairs({'in_flight', 'retrying'}) do
    if s == to then redis.call('ZADD', KEYS[1 + i], now, lead_id)
    elseif s == state then redis.call('ZREM', KEYS[1 + i], lead_id) end
  end
end

if op == 'begin' then
  if not allowed then return {'settled', state} end
  if state == 'in_flight' then
    local lease = tonumber(f[3] or '0') or 0
    if (f[2] or '') ~= ARGV[7] and lease > now then
      -- Someone else holds it: come back when the lease ends (dropped if it settles first).
      redis.call('ZADD', KEYS[4], lease, lead_id)
      return {'busy', tostring(lease)}
    end
  end
  redis.call('HSET', key, 'state', 'in_flight', 'task_id', ARGV[7], 'lease_until', ARGV[8],
             'updated_at', ARGV[3], 'first_seen', f[5] or ARGV[3])
  redis.call('SET', KEYS[9], ARGV[9], 'EX', ARGV[4])
  redis.call('EXPIRE', key, ARGV[4])
  index('in_flight')
  if open then redis.call('ZREM', KEYS[4], lead_id) end
  local locked = 0
  if ARGV[15] ~= '' and redis.call('SET', KEYS[14], ARGV[15], 'NX', 'PX', ARGV[16]) then
    locked = 1
  end
  return {'taken', f[4] or '0', locked}
end

local released = 0
if ARGV[15] ~= '' and redis.call('GET', KEYS[14]) == ARGV[15] then
  released = redis.call('DEL', KEYS[14])
end
if not allowed then return {'refused', state, released} end
if ARGV[12] ~= '' and (f[6] or '') ~= ARGV[12] then
  return {'refused', state, released}
end
local first_seen = f[5]
if op == 'replay' then  -- a fresh start: budget and errors reset
  redis.call('DEL', key)
  first_seen = false
end
local fields = {'updated_at', ARGV[3], 'first_seen', first_seen or ARGV[3]}
for i = 17, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
if target == 'queued' then
  to_queued(key, lead_id, state, indexes, fields)
else
  redis.call('HSET', key, 'state', target, unpack(fields))
  index(target)
end
if target == 'retrying' then
  redis.call('ZADD', KEYS[4], ARGV[8], lead_id)
elseif open and not (state == 'in_flight' and target == 'delivered') then
  -- A retry's due entry goes with it. A lead delivered from in_flight has an entry only when
  -- a copy was held off; promote.lua drops it when due (the lead is settled then): one
  -- command less on every delivery.
  redis.call('ZREM', KEYS[4], lead_id)
end
local keeps_message = true
if target == 'delivered' or target == 'dead_lettered' or target == 'parked'
   or target == 'staged' then
  redis.call('HDEL', key, 'lease_until')
  -- Settled leads keep no message; staged and parked ones keep theirs (resume pushes it).
  if target ~= 'staged' and target ~= 'parked' then
    redis.call('DEL', KEYS[9])
    keeps_message = false
  end
end
if target == 'delivered' then
  redis.call('HINCRBY', KEYS[5], ARGV[13], 1)  -- the delivered count, by minute
end
if target == 'queued' then
  local msg = ARGV[9]
  if msg == '' then msg = redis.call('GET', KEYS[9]) or '' end
  if msg ~= '' then
    redis.call('LPUSH', list_for(msg, {KEYS[6], KEYS[10], KEYS[11], KEYS[12]}), msg)
    redis.call('SET', KEYS[9], msg, 'EX', ARGV[4])
    keeps_message = false  -- its expiry was just set
  end
end
if ARGV[10] == '-' then
  redis.call('HDEL', KEYS[7], lead_id)
  redis.call('ZREM', KEYS[8], lead_id)
elseif ARGV[10] ~= '' then
  redis.call('HSET', KEYS[7], lead_id, ARGV[10])
  redis.call('ZADD', KEYS[8], ARGV[11], lead_id)
end
for name in string.gmatch(ARGV[14], '[^,]+') do
  redis.call('HINCRBY', KEYS[13], name, 1)
end
if target == 'parked' then
  -- A parked lead may wait longer than the TTL (no one re-authorizes for a week): its entry
  -- and message stay until resume, which sets the TTL again.
  redis.call('PERSIST', key)
  redis.call('PERSIST', KEYS[9])
else
  redis.call('EXPIRE', key, ARGV[4])
  if keeps_message then redis.call('EXPIRE', KEYS[9], ARGV[4]) end  -- no-op when there is none
end
return {'ok', target, released}
