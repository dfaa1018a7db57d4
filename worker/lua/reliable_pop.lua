-- Take the oldest message from the first non-empty queue and record it as unacknowledged in the
-- same step, so a consumer killed between the two never leaves a message in neither place.
-- The unacked entry has kombu's own format (restore_visible brings it back after the
-- visibility timeout); entries that are not a message envelope are returned unrecorded (the
-- guard sets them aside).
-- KEYS[1]   kombu's unacked hash        KEYS[2]  kombu's unacked index (sorted set)
-- KEYS[3..] queue lists, in the order to try them
-- ARGV[1]   now, seconds since the epoch (kombu's index score)
-- Returns {queue, message} or false when every queue is empty.
for i = 3, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, msg = pcall(cjson.decode, item)
    if ok and type(msg) == 'table' and type(msg.properties) == 'table'
        and msg.body ~= nil and (msg.headers == nil or type(msg.headers) == 'table') then
      local info = msg.properties.delivery_info
      local tag = msg.properties.delivery_tag
      if type(info) == 'table' and (type(tag) == 'string' or type(tag) == 'number') then
        local exchange = info.exchange
        local routing_key = info.routing_key
        if type(exchange) ~= 'string' then exchange = '' end
        if type(routing_key) ~= 'string' then routing_key = '' end
        -- [payload, exchange, routing_key] with the payload kept byte for byte.
        redis.call('HSET', KEYS[1], tostring(tag),
                   '[' .. item .. ',' .. cjson.encode(exchange) .. ','
                   .. cjson.encode(routing_key) .. ']')
        redis.call('ZADD', KEYS[2], ARGV[1], tostring(tag))
      end
    end
    return {KEYS[i], item}
  end
end
return false
