-- Resume parked leads of one reason, a batch per call (worker/ledger/parking.py): for each lead,
-- in one step, its kept message goes back onto the queue list its priority names and the lead
-- leaves the parking lot; a crash between calls leaves every lead either parked or queued, once.
-- KEYS[1] parked entries (hash lead_id -> entry JSON)
-- KEYS[2] this reason's parked index (zset lead_id -> resume_at)
-- KEYS[3] in_flight index (zset)  KEYS[4] retrying index (zset)  KEYS[5] schedule (zset)
-- KEYS[6..9] the queue's lists for kombu's priority steps 0, 3, 6, 9 (worker/base/priority.py)
-- ARGV[1] now (epoch s)  ARGV[2] ttl_s of the lead hash and kept message
-- ARGV[3] most leads to take (due mode)  ARGV[4] due leads to skip first (due mode)
-- ARGV[5] lead hash key prefix ("<prefix>:lead:")
-- ARGV[6] kept-message key prefix ("<prefix>:lead-msg:")
-- ARGV[7] states resume may start from, comma separated, "-" for no entry
--         (worker/ledger/lead_state.py TRANSITIONS["resume"]: the table is the source of truth)
-- ARGV[8..] optional lead_id, message pairs: resume exactly these (given mode), pushing the
--         given message when none is kept; without them, the due leads of KEYS[2] (due mode)
-- The move is the ledger's "resume" (worker/lua/ledger.lua, target queued) for each lead.
-- A message goes to the list kombu's `_put` would choose (lib/list_for.lua, shared with the
-- ledger, the promoter and the intake).
-- Returns {resumed, dropped (settled meanwhile: stale entry removed), examined,
--          lead ids left parked because no message was kept or given...}

-- #include list_for: kombu's list for a message's priority (worker/lua/lib/list_for.lua)

local now, ttl = ARGV[1], ARGV[2]
local sources = {}
for s in string.gmatch(ARGV[7], '[^,]+') do sources[s] = true end
local lists = {KEYS[6], KEYS[7], KEYS[8], KEYS[9]}

local resumed, dropped, missing = 0, 0, {}
local function resume(lead_id, given)
  if redis.call('HEXISTS', KEYS[1], lead_id) == 0 then  -- resumed by another run meanwhile
    redis.call('ZREM', KEYS[2], lead_id)
    return
  end
  local key, mkey = ARGV[5] .. lead_id, ARGV[6] .. lead_id
  local state = redis.call('HGET', key, 'state') or ''
  if not sources[(state == '') and '-' or state] then  -- settled by a copy: a stale entry
    redis.call('HDEL', KEYS[1], lead_id)
    redis.call('ZREM', KEYS[2], lead_id)
    dropped = dropped + 1
    return
  end
  local msg = redis.call('GET', mkey)
  if not msg or msg == '' then msg = given end
  if not msg or msg == '' then
    missing[#missing + 1] = lead_id
    return
  end
  redis.call('LPUSH', list_for(msg, lists), msg)
  redis.call('HSETNX', key, 'first_seen', now)
  redis.call('HSET', key, 'state', 'queued', 'updated_at', now)
  redis.call('HDEL', key, 'lease_until')
  redis.call('ZREM', KEYS[3], lead_id)
  redis.call('ZREM', KEYS[4], lead_id)
  redis.call('ZREM', KEYS[5], lead_id)
  redis.call('SET', mkey, msg, 'EX', ttl)
  redis.call('EXPIRE', key, ttl)
  redis.call('HDEL', KEYS[1], lead_id)
  redis.call('ZREM', KEYS[2], lead_id)
  resumed = resumed + 1
end

local examined = 0
if #ARGV > 7 then
  for i = 8, #ARGV, 2 do
    resume(ARGV[i], ARGV[i + 1])
    examined = examined + 1
  end
else
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', tonumber(ARGV[4]),
                         tonumber(ARGV[3]))
  for _, lead_id in ipairs(due) do
    resume(lead_id, nil)
    examined = examined + 1
  end
end
local reply = {resumed, dropped, examined}
for _, lead_id in ipairs(missing) do reply[#reply + 1] = lead_id end
return reply
