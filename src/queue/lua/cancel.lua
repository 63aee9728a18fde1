-- cancel: take job ARGV[1] out before it starts, so it never runs, and record it as
-- cancelled (lanes.lua and sequence.lua are prepended: `withdraw` does the taking).
--
-- KEYS[1] cancelled     HASH id -> item of cancelled jobs
-- KEYS[2] cancelled_at  ZSET id -> time of cancellation (ms); orders and trims `cancelled`
-- KEYS[3] stats         HASH counters (`cancelled`)
-- ARGV[1] id   ARGV[2] the partition's key base `{tag}:`   ARGV[3] now (ms)
-- ARGV[4] most cancelled records kept   ARGV[5] the queue's sequence key prefix
-- Returns 1 when the job was cancelled, 0 when it does not wait (running, finished, unknown).
-- Complexity: O(log n): one index lookup, a sorted-set removal for a delayed job, a set
-- insert for one in a list (fetch drops it when it comes up).
B, NOW = ARGV[2], ARGV[3]
local item = withdraw(ARGV[1], ARGV[5], ARGV[3])
if not item then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], item)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
  redis.call('HDEL', KEYS[1], unpack(old))
end
return 1
