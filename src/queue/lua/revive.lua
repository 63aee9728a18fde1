-- revive: move jobs from the dead set back to pending (failed retry).
--
-- KEYS[1] dead      HASH id -> dead item
-- KEYS[2] dead_at   ZSET id -> death time (ms)
-- KEYS[3] pending   LIST of ready items
-- ARGV pairs: id, fresh item (attempts reset by the caller)
-- An id no longer in the dead set (forgotten or revived meanwhile) is skipped.
-- Returns the number revived. Complexity: O(B log M) for B pairs.
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('LPUSH', KEYS[3], ARGV[i + 1])
    n = n + 1
  end
end
return n
