-- promote: move due delayed jobs (scheduled runs and retries) to pending, a bounded chunk.
--
-- KEYS[1] delayed   ZSET item -> due time (ms)
-- KEYS[2] pending   LIST of ready items
-- ARGV[1] now (ms)  ARGV[2] most items to move (<= 1000: unpack limit)
-- Returns {moved, next due time in ms or -1 when nothing is delayed}.
-- Complexity: O(log D + K) for K moved out of D delayed.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
  redis.call('LPUSH', KEYS[2], unpack(due))
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then return {#due, math.floor(tonumber(nxt[2]))} end
return {#due, -1}
