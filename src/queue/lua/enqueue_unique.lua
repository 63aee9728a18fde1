-- enqueue_unique: push a job unless its dedupe key is taken; key and push are one step.
--
-- KEYS[1] unique    STRING dedupe key -> first job id, with a TTL
-- KEYS[2] pending   LIST of ready items
-- KEYS[3] delayed   ZSET item -> due time (ms)
-- ARGV[1] job id    ARGV[2] TTL in ms   ARGV[3] item   ARGV[4] due time (ms) or '' for now
-- Returns {1, id} when pushed, {0, first id} when suppressed. Complexity: O(1) (O(log D)
-- for a delayed push).
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[1])}
end
if ARGV[4] == '' then
  redis.call('LPUSH', KEYS[2], ARGV[3])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
end
return {1, ARGV[1]}
