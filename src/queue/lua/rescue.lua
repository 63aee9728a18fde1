-- rescue: return a dead worker's jobs to the queue, setting aside the ones that keep
-- killing their workers.
--
-- KEYS[1] workers   ZSET worker id -> lease expiry (ms)
-- KEYS[2] leased    HASH id -> item held by that worker
-- KEYS[3] inbox     LIST that worker's landing zone
-- KEYS[4] pending   LIST of ready items
-- KEYS[5] stats     HASH counters (`running`, `rescued`, `dead`)
-- KEYS[6] dead      HASH id -> item of jobs that failed for good
-- KEYS[7] dead_at   ZSET id -> time of death (ms)
-- KEYS[8] delayed   ZSET item -> due time (ms)
-- ARGV[1] worker id ARGV[2] now (ms)
-- ARGV[3] rescues allowed per job, or '' for a worker's own orderly hand-back (no counting)
-- ARGV[4] the queue's sequence key prefix (`{prefix:queue}:seq:`)
-- ARGV[5] the partition's key base `{tag}:` (lanes.lua is prepended)
-- The expiry is checked again here, so a worker that heartbeated since the caller looked
-- keeps its jobs. Each leased job's rescue count (`resc`, the first field of its envelope
-- JSON) grows by one; a job past the limit goes to the dead set marked `lost`, the others
-- to the head of their line (pending or their lane), indexed again: they were next in line
-- already. Each frees its tenant's slot. A job set aside that heads a
-- sequence (`"sq"` in its envelope, before `"args"`) lets the sequence's next job in. Jobs
-- still in the inbox had not started and go back uncounted. The lease's epoch (`<leased>:epoch`)
-- goes with the lease hash.
-- Returns the number of jobs re-queued or set aside, or -1 when the worker is alive.
-- Complexity: O(L) for the L jobs the worker held (bounded by its prefetch).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then return -1 end
local limit = tonumber(ARGV[3])
B, NOW = ARGV[5], ARGV[2]

local leased = redis.call('HGETALL', KEYS[2])
local back, died, freed = {}, 0, {}
for i = 1, #leased, 2 do
  local id, item = leased[i], leased[i + 1]
  local tn = tenant_of(item)
  if tn then freed[tn] = (freed[tn] or 0) + 1 end
  if not limit then
    back[#back + 1] = item
  else
    local sp = string.find(item, ' ', 1, true)
    local head, json = string.sub(item, 1, sp), string.sub(item, sp + 1)
    local n, rest = string.match(json, '^{"resc":(%d+),(.*)$')
    if n then n = tonumber(n) + 1 else n, rest = 1, string.sub(json, 2) end
    if n > limit then
      redis.call('HSET', KEYS[6], id, head .. '{"resc":' .. n .. ',"lost":true,' .. rest)
      redis.call('ZADD', KEYS[7], ARGV[2], id)
      died = died + 1
      local args_at = string.find(rest, '"args":', 1, true) or #rest
      local sq = string.match(string.sub(rest, 1, args_at), '"sq":"([^"]*)"')
      if sq then advance(ARGV[4] .. sq, id, KEYS[4], KEYS[8], KEYS[5], ARGV[2]) end
    else
      back[#back + 1] = head .. '{"resc":' .. n .. ',' .. rest
    end
  end
end
local plain, indexed = {}, {}
for i = 1, #back do
  local item = back[i]
  local sp = string.find(item, ' ', 1, true)
  indexed[#indexed + 1] = string.sub(item, 1, sp - 1)
  indexed[#indexed + 1] = item
  local tn, pr = route(item)
  if tn or pr then ready(KEYS[4], item, true, ARGV[2]) else plain[#plain + 1] = item end
end
for i = 1, #plain, 500 do
  redis.call('RPUSH', KEYS[4], unpack(plain, i, math.min(i + 499, #plain)))
end
for i = 1, #indexed, 1000 do
  redis.call('HSET', B .. 'index', unpack(indexed, i, math.min(i + 999, #indexed)))
end
local n = #leased / 2
-- The lease hash and its epoch go together: jobs leased before this point can no longer be
-- settled in one step by the worker (fetch.lua, ack.lua), should it be alive after all.
redis.call('DEL', KEYS[2], KEYS[2] .. ':epoch')
for tn, count in pairs(freed) do let_go(tn, count) end
local moved = n
while redis.call('LMOVE', KEYS[3], KEYS[4], 'RIGHT', 'RIGHT') do moved = moved + 1 end
if n > 0 then redis.call('HINCRBY', KEYS[5], 'running', -n) end
if moved - died > 0 then redis.call('HINCRBY', KEYS[5], 'rescued', moved - died) end
if died > 0 then redis.call('HINCRBY', KEYS[5], 'dead', died) end
redis.call('ZREM', KEYS[1], ARGV[1])
return moved
