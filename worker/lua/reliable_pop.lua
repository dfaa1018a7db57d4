-- Take the oldest message from the first non-empty queue and record it as unacknowledged in the
-- same step, so a consumer killed between the two never leaves a message in neither place.
-- KEYS[1]   kombu's unacked hash        KEYS[2]  kombu's unacked index (sorted set)
-- KEYS[3..] queue lists, in the order to try them
-- ARGV[1]   now, seconds since the epoch (kombu's index score)
-- ARGV[2]   one character per queue key, '1' to record its messages, '0' not to (kombu records
--           nothing for a no_ack consumer, such as the reply queue of a `celery inspect` ping)
-- ARGV[3..] delivery tags acknowledged since the last pop: their unacked entries are deleted
--           first (the message before its index entry, as worker/broker/fetch.py's ack)
-- Returns {queue, message, recorded} (recorded 1 when the unacked entry was written here), or
-- false when every queue is empty.
-- The unacked entry has kombu's own format (restore_visible brings it back after the visibility
-- timeout). Entries that are not a message envelope are returned unrecorded (the guard sets them
-- aside); so are delivery tags other than strings and integers, which kombu then records itself
-- (Lua could not spell such a number exactly as Python does, and ack would miss the entry).
if #ARGV > 2 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 3))
  redis.call('ZREM', KEYS[2], unpack(ARGV, 3))
end
for i = 3, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local recorded = 0
    local ok, msg = pcall(cjson.decode, item)
    if string.sub(ARGV[2], i - 2, i - 2) == '1' and ok and type(msg) == 'table'
        and type(msg.properties) == 'table' and msg.body ~= nil
        and (msg.headers == nil or type(msg.headers) == 'table') then
      local info = msg.properties.delivery_info
      local tag = msg.properties.delivery_tag
      if type(tag) == 'number' and tag == math.floor(tag) and math.abs(tag) < 2^53 then
        tag = string.format('%d', tag)
      end
      if type(info) == 'table' and type(tag) == 'string' then
        local exchange = info.exchange
        local routing_key = info.routing_key
        if type(exchange) ~= 'string' then exchange = '' end
        if type(routing_key) ~= 'string' then routing_key = '' end
        -- [payload, exchange, routing_key] with the payload kept byte for byte.
        redis.call('HSET', KEYS[1], tag,
                   '[' .. item .. ',' .. cjson.encode(exchange) .. ','
                   .. cjson.encode(routing_key) .. ']')
        redis.call('ZADD', KEYS[2], ARGV[1], tag)
        recorded = 1
      end
    end
    return {KEYS[i], item, recorded}
  end
end
return false
