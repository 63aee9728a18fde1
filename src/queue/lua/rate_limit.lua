-- rate_limit: take one request slot from a sliding-window limit shared by every process.
--
-- KEYS[1] window    ZSET member -> request time (ms) of the requests inside the window
-- ARGV[1] now (ms)  ARGV[2] limit (requests per window)  ARGV[3] window (ms)
-- ARGV[4] member    a unique name for this request
-- Returns 0 when the slot is granted, else the ms until the oldest request leaves the
-- window. Complexity: O(log L + E) for L = limit and E expired entries removed.
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
