-- Count the leads an import delivered as `imported`, each once (worker/bulk/settle.py; their
-- `deliver` steps counted them delivered, by the minute: ledger.lua): a delivered lead
-- counts while its ledger hash still holds the task id its `begin` wrote, which this removes
-- (a settled lead needs it no more), so a settle repeated after a crash counts nobody twice
-- and a crash between the ledger steps and this count leaves the leads to the repeat.
-- KEYS[1] the stats hash   KEYS[2..] the leads' ledger hashes
-- ARGV[1], ARGV[2] ... the counters to add the count to (imported)
-- Returns the number of leads counted now.
local n = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'state') == 'delivered' then
    n = n + redis.call('HDEL', KEYS[i], 'task_id')
  end
end
if n > 0 then
  for _, name in ipairs(ARGV) do
    redis.call('HINCRBY', KEYS[1], name, n)
  end
end
return n
