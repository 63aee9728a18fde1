-- fetch: lease up to N ready jobs to one worker.
--
-- KEYS[1] pending   LIST of items "<id> <json>"; producers LPUSH, we pop from the right
-- KEYS[2] inbox     LIST this worker's landing zone for its blocking BLMOVE
-- KEYS[3] leased    HASH id -> item, the jobs this worker holds
-- KEYS[4] stats     HASH of counters; field `running` is kept equal to the leased total
-- KEYS[5] paused    STRING present while the queue is paused
-- KEYS[6] workers   ZSET worker id -> lease expiry (ms)
-- ARGV[1] N         most jobs to lease (the caller keeps it <= 1000: unpack limit)
-- ARGV[2] worker    this worker's id
-- ARGV[3] expiry    lease expiry in ms since the epoch
--
-- Returns the leased items, or the integer -1 when the queue is paused (anything in the
-- inbox is handed back to the head of pending first).
-- Complexity: O(N) for N returned jobs, independent of the backlog.
local pending, inbox, leased, stats, paused, workers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

if redis.call('EXISTS', paused) == 1 then
  while redis.call('LMOVE', inbox, pending, 'RIGHT', 'RIGHT') do end
  return -1
end

local out = {}
local item = redis.call('RPOP', inbox)
while item do
  out[#out + 1] = item
  item = redis.call('RPOP', inbox)
end

local want = tonumber(ARGV[1]) - #out
if want > 0 then
  local more = redis.call('RPOP', pending, want)
  if more then
    for i = 1, #more do out[#out + 1] = more[i] end
  end
end

redis.call('ZADD', workers, ARGV[3], ARGV[2])
if #out == 0 then return out end

local fields = {}
for i = 1, #out do
  local sp = string.find(out[i], ' ', 1, true)
  fields[2 * i - 1] = string.sub(out[i], 1, sp - 1)
  fields[2 * i] = out[i]
end
redis.call('HSET', leased, unpack(fields))
redis.call('HINCRBY', stats, 'running', #out)
return out
