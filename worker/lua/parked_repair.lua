-- Put parked leads back in the per-reason index their entry names, one SCAN page per call
-- (worker/ledger/parking.py's recount: after an upgrade from the single index, or lost keys).
-- KEYS[1] parked entries (hash lead_id -> entry JSON)
-- KEYS[2] the single index of older versions (zset lead_id -> resume_at, every reason)
-- KEYS[3..] the per-reason indexes (zset lead_id -> resume_at), in ARGV[4]'s order
-- ARGV[1] what to page through: "entries" (HSCAN KEYS[1]) or the 1-based position of one of
--         the indexes in KEYS (ZSCAN that key)
-- ARGV[2] SCAN cursor  ARGV[3] SCAN COUNT hint
-- ARGV[4] the reasons of KEYS[3..], comma separated; an entry whose reason is unknown or
--         unreadable goes to the first (it resumes as soon as sending is possible)
-- Each lead seen ends up in exactly the index of its entry's reason, scored by its resume_at,
-- or, without an entry, in none: atomic per page, so concurrent parks and resumes (each one
-- step that keeps the indexes exact) are never undone.
-- Returns {next cursor ("0" when done), index memberships changed}
local reasons = {}
local position = {}
for r in string.gmatch(ARGV[4], '[^,]+') do
  reasons[#reasons + 1] = r
  position[r] = #reasons
end

local changed = 0
local function place(lead_id, raw)
  local target, score = nil, 0
  if raw then
    local ok, entry = pcall(cjson.decode, raw)
    target = 1
    if ok and type(entry) == 'table' then
      target = position[entry.reason] or 1
      score = tonumber(entry.resume_at) or 0
    end
  end
  for i = 2, #KEYS do
    if target and i == target + 2 then
      local current = tonumber(redis.call('ZSCORE', KEYS[i], lead_id))
      if not current or math.abs(current - score) > 0.001 then  -- the ledger writes ms
        redis.call('ZADD', KEYS[i], score, lead_id)
        changed = changed + 1
      end
    else
      changed = changed + redis.call('ZREM', KEYS[i], lead_id)
    end
  end
end

local page
if ARGV[1] == 'entries' then
  page = redis.call('HSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
  local items = page[2]
  for i = 1, #items, 2 do place(items[i], items[i + 1]) end
else
  page = redis.call('ZSCAN', KEYS[tonumber(ARGV[1])], ARGV[2], 'COUNT', ARGV[3])
  local items = page[2]
  for i = 1, #items, 2 do place(items[i], redis.call('HGET', KEYS[1], items[i])) end
end
return {page[1], changed}
