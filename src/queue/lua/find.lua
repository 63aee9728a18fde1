-- find: look for job ARGV[1] among the next ARGV[2] pending items (oldest first) and the
-- first ARGV[2] delayed items (soonest first), for the dashboard's job lookup by id.
--
-- KEYS[1] pending  LIST of items "<id> <json>"; the oldest is at the right end
-- KEYS[2] delayed  ZSET item -> due time (ms)
-- ARGV[1] id       the job id (the item starts with "<id> ")
-- ARGV[2] limit    most items read from each of the two structures
-- Returns {'pending', item, position (1 = next to run)}, {'delayed', item, due ms} or false.
-- Complexity: O(limit) whatever the backlog; items are compared by prefix, never decoded.
local pending, delayed, prefix, limit = KEYS[1], KEYS[2], ARGV[1] .. ' ', tonumber(ARGV[2])
local n, chunk = #prefix, 200

local read = 0
while read < limit do
  local items = redis.call('LRANGE', pending, -(read + chunk), -(read + 1))
  if #items == 0 then break end
  for i = #items, 1, -1 do
    if string.sub(items[i], 1, n) == prefix then
      return {'pending', items[i], read + (#items - i + 1)}
    end
  end
  read = read + #items
end

read = 0
while read < limit do
  local rows = redis.call('ZRANGE', delayed, read, read + chunk - 1, 'WITHSCORES')
  if #rows == 0 then break end
  for i = 1, #rows, 2 do
    if string.sub(rows[i], 1, n) == prefix then
      return {'delayed', rows[i], rows[i + 1]}
    end
  end
  read = read + #rows / 2
end
return false
