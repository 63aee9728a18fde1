-- cancel: take job ARGV[1] out of pending or delayed before it starts, so it never runs,
-- and record it as cancelled.
--
-- KEYS[1] pending       LIST of items "<id> <json>"; the oldest is at the right end
-- KEYS[2] delayed       ZSET item -> due time (ms)
-- KEYS[3] cancelled     HASH id -> item of cancelled jobs
-- KEYS[4] cancelled_at  ZSET id -> time of cancellation (ms); orders and trims `cancelled`
-- KEYS[5] stats         HASH counters (`cancelled`)
-- ARGV[1] id   ARGV[2] most items read from each of pending and delayed   ARGV[3] now (ms)
-- ARGV[4] most cancelled records kept   ARGV[5] the queue's sequence key prefix
-- A cancelled job that heads a sequence (`"sq"` in its envelope, before `"args"`) lets the
-- sequence's next job in, as a finished one does.
-- Returns 1 when the job was cancelled, 0 when it is in neither place.
-- Complexity: O(limit) to find the job (as `find`), O(1) to record it.
local pending, delayed, prefix, limit = KEYS[1], KEYS[2], ARGV[1] .. ' ', tonumber(ARGV[2])
local n, chunk = #prefix, 200
local found

local read = 0
while not found and read < limit do
  local items = redis.call('LRANGE', pending, -(read + chunk), -(read + 1))
  if #items == 0 then break end
  for i = #items, 1, -1 do
    if string.sub(items[i], 1, n) == prefix then
      found = items[i]
      redis.call('LREM', pending, -1, found)
      break
    end
  end
  read = read + #items
end

read = 0
while not found and read < limit do
  local rows = redis.call('ZRANGE', delayed, read, read + chunk - 1)
  if #rows == 0 then break end
  for i = 1, #rows do
    if string.sub(rows[i], 1, n) == prefix then
      found = rows[i]
      redis.call('ZREM', delayed, found)
      break
    end
  end
  read = read + #rows
end

if not found then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], found)
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('ZRANGE', KEYS[4], 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, excess - 1)
  redis.call('HDEL', KEYS[3], unpack(old))
end
local json = string.sub(found, n + 1)
local args_at = string.find(json, '"args":', 1, true) or #json
local sq = string.match(string.sub(json, 1, args_at), '"sq":"([^"]*)"')
if sq then advance(ARGV[5] .. sq, ARGV[1], pending, delayed, KEYS[5], ARGV[3]) end
return 1
