-- sequence: shared by the scripts that settle or withdraw a job (prepended to them, after
-- lanes.lua).
--
-- A sequence key holds the jobs that must run one at a time, in enqueue order:
-- `seq:<key>` is a LIST whose first element is the id of the job that is out (pending,
-- delayed, leased or being retried), followed by the waiting successors as
-- "<due ms> <item>" (due 0: ready at once). Only the head is ever ready or delayed.
--
-- advance(seq, id, pending, delayed, stats, now): `id` finished for good (completed, dead,
-- expired, cancelled). When it is the head, the next successor becomes the head and is made
-- ready at the front (it has waited its turn) or goes to delayed when its time has not come.
-- Successors cancelled while they waited (in `tomb`) are dropped on the way. A job that is
-- not the head (a dead job revived after the sequence moved on) changes nothing.
-- Complexity: O(1) plus one step per cancelled successor skipped.
local function advance(seq, id, pending, delayed, stats, now)
  if redis.call('LINDEX', seq, 0) ~= id then return end
  redis.call('LPOP', seq)
  while true do
    local nxt = redis.call('LINDEX', seq, 0)
    if not nxt then return end
    local sp = string.find(nxt, ' ', 1, true)
    local due = tonumber(string.sub(nxt, 1, sp - 1))
    local item = string.sub(nxt, sp + 1)
    local idsp = string.find(item, ' ', 1, true)
    local nid = string.sub(item, 1, idsp - 1)
    if redis.call('SREM', B .. 'tomb', nid) == 1 then
      redis.call('LPOP', seq)
    else
      redis.call('LSET', seq, 0, nid)
      redis.call('HINCRBY', stats, 'waiting', -1)
      if due > tonumber(now) then
        redis.call('ZADD', delayed, due, item)
      else
        ready(pending, item, true, now)
      end
      return
    end
  end
end

-- withdraw(id, seqs, now): take job `id` out before it starts, wherever it waits (its index
-- entry says it waits): delayed ones leave `delayed` (O(log n)); ones in a list (pending, a
-- lane, a worker's inbox, behind their sequence) are marked in `tomb` and dropped when they
-- come up. A withdrawn sequence head lets its successor in. Returns the item, or nil when
-- the job does not wait (running, finished, unknown). Complexity: O(log n).
local function withdraw(id, seqs, now)
  local item = redis.call('HGET', B .. 'index', id)
  if not item then return nil end
  redis.call('HDEL', B .. 'index', id)
  local json = string.sub(item, #id + 2)
  local args_at = string.find(json, '"args":', 1, true) or #json
  local sq = string.match(string.sub(json, 1, args_at), '"sq":"([^"]*)"')
  local pending, delayed, stats = B .. 'pending', B .. 'delayed', B .. 'stats'
  if redis.call('ZREM', delayed, item) == 1 then
    if sq then advance(seqs .. sq, id, pending, delayed, stats, now) end
    return item
  end
  redis.call('SADD', B .. 'tomb', id)
  if sq and redis.call('LINDEX', seqs .. sq, 0) ~= id then
    redis.call('HINCRBY', stats, 'waiting', -1)
    return item
  end
  redis.call('HINCRBY', stats, 'tomb', 1)
  if sq then advance(seqs .. sq, id, pending, delayed, stats, now) end
  return item
end
