-- purge: withdraw the named jobs before they start (the operator's purge of a queue, by
-- kind or tenant, chosen by the caller from the index); lanes.lua and sequence.lua are
-- prepended. Purged jobs are counted (`stats.purged`), not recorded one by one: the caller
-- writes one audit entry.
--
-- KEYS[1] index   KEYS[2] delayed   KEYS[3] tomb   KEYS[4] stats   KEYS[5] pending
--   (declared for the cluster's slot check; the script reaches them through the base)
-- ARGV[1] the partition's key base `{tag}:`   ARGV[2] the queue's sequence key prefix
-- ARGV[3] now (ms)   ARGV[4..] ids
-- Returns the number withdrawn (ids that no longer wait are skipped).
-- Complexity: O(B log n) for B ids.
B, NOW = ARGV[1], ARGV[3]
local n = 0
for i = 4, #ARGV do
  if withdraw(ARGV[i], ARGV[2], ARGV[3]) then n = n + 1 end
end
if n > 0 then redis.call('HINCRBY', KEYS[4], 'purged', n) end
return n
