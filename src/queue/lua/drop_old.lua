-- drop_old: delete the named jobs from a dead (or expired) set, each only if it is still
-- there and entered it no later than the cutoff. The caller chose the ids by kind from items
-- it read a moment earlier; a job revived (or revived and dead again, with a new time) in
-- between is left alone.
--
-- KEYS[1] at     ZSET id -> time it entered the set (ms): dead_at or expired_at
-- KEYS[2] items  HASH id -> item: dead or expired
-- ARGV[1] cutoff (ms)   ARGV[2..] ids
-- Returns the number deleted. Complexity: O(B log M) for B ids, M the set's size.
local cutoff, n = tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  local at = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if at and tonumber(at) <= cutoff then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
