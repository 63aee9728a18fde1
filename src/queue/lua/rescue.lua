-- rescue: return a dead worker's jobs to the queue.
--
-- KEYS[1] workers   ZSET worker id -> lease expiry (ms)
-- KEYS[2] leased    HASH id -> item held by that worker
-- KEYS[3] inbox     LIST that worker's landing zone
-- KEYS[4] pending   LIST of ready items
-- KEYS[5] stats     HASH counters (`running`, `rescued`)
-- ARGV[1] worker id ARGV[2] now (ms)
-- The expiry is checked again here, so a worker that heartbeated since the caller looked
-- keeps its jobs. Rescued jobs go to the head of pending: they were next in line already.
-- Returns the number of jobs re-queued, or -1 when the worker is alive.
-- Complexity: O(L) for the L jobs the worker held (bounded by its prefetch).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then return -1 end

local items = redis.call('HVALS', KEYS[2])
local n = #items
for i = 1, n, 500 do
  redis.call('RPUSH', KEYS[4], unpack(items, i, math.min(i + 499, n)))
end
redis.call('DEL', KEYS[2])
local moved = n
while redis.call('LMOVE', KEYS[3], KEYS[4], 'RIGHT', 'RIGHT') do moved = moved + 1 end
if n > 0 then redis.call('HINCRBY', KEYS[5], 'running', -n) end
if moved > 0 then redis.call('HINCRBY', KEYS[5], 'rescued', moved) end
redis.call('ZREM', KEYS[1], ARGV[1])
return moved
