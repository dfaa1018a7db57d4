-- kombu's list for a message (kombu/transport/redis.py `_put`): `lists` are the queue's lists for
-- priority steps 0, 3, 6, 9; properties.priority is clamped to 0..9, anything unreadable is 0.
local function list_for(msg, lists)
  local ok, m = pcall(cjson.decode, msg)
  local p = ok and type(m) == 'table' and type(m.properties) == 'table' and m.properties.priority
  if type(p) == 'string' and string.match(p, '^%s*[+-]?%d+%s*$') then p = tonumber(p) end
  if type(p) ~= 'number' or p ~= p then p = 0 end
  return lists[math.floor(math.min(math.max(p, 0), 9) / 3) + 1]
end
