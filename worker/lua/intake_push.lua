-- Queue one intake request's leads atomically: each lead id at most once, the answer stored
-- with the push so a retried request (same Idempotency-Key) gets the same answer.
-- KEYS[1]  the queue list (`leads`)
-- KEYS[2]  the stored answer for the request's Idempotency-Key ("" means none was given)
-- KEYS[3..] one "seen" marker per lead (`<prefix>:intake:seen:<lead_id>`), same order as ARGV
-- ARGV[1]  TTL of the seen markers, seconds
-- ARGV[2]  TTL of the stored answer, seconds
-- ARGV[3]  the answer to store (JSON text), ignored when KEYS[2] is ""
-- ARGV[4..] the messages to LPUSH, one per seen marker
-- Returns {0, stored_answer} when the Idempotency-Key was answered before (nothing pushed),
--         {1, pushed} otherwise: pushed counts the leads that were new (the others were seen).
if KEYS[2] ~= '' then
  local stored = redis.call('GET', KEYS[2])
  if stored then
    return {0, stored}
  end
end
local pushed = 0
for i = 3, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', tonumber(ARGV[1])) then
    redis.call('LPUSH', KEYS[1], ARGV[i + 1])
    pushed = pushed + 1
  end
end
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[2]))
end
return {1, pushed}
