-- revive: move jobs from the dead set back to their line (failed retry); lanes.lua is
-- prepended.
--
-- KEYS[1] dead      HASH id -> dead item
-- KEYS[2] dead_at   ZSET id -> death time (ms)
-- KEYS[3] pending   LIST of ready items and lane tokens
-- ARGV[1] the partition's key base `{tag}:`   ARGV[2] now (ms)
-- ARGV[3..] pairs: id, fresh item (attempts reset by the caller)
-- An id no longer in the dead set (forgotten or revived meanwhile) is skipped.
-- Returns the number revived. Complexity: O(B log M) for B pairs.
B, NOW = ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV, 2 do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    ready(KEYS[3], ARGV[i + 1], false, ARGV[2])
    redis.call('HSET', B .. 'index', ARGV[i], ARGV[i + 1])
    n = n + 1
  end
end
return n
