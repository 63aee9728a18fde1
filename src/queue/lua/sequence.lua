-- sequence: shared by the scripts that settle a job (prepended to ack and rescue).
--
-- A sequence key holds the jobs that must run one at a time, in enqueue order:
-- `seq:<key>` is a LIST whose first element is the id of the job that is out (pending,
-- delayed, leased or being retried), followed by the waiting successors as
-- "<due ms> <item>" (due 0: ready at once). Only the head is ever in pending or delayed.
--
-- advance(seq, id, pending, delayed, stats, now): `id` finished for good (completed, dead,
-- expired). When it is the head, the next successor becomes the head and goes to the front
-- of pending (it has waited its turn) or to delayed when its time has not come. A job that
-- is not the head (a dead job revived after the sequence moved on) changes nothing.
-- Complexity: O(1).
local function advance(seq, id, pending, delayed, stats, now)
  if redis.call('LINDEX', seq, 0) ~= id then return end
  redis.call('LPOP', seq)
  local nxt = redis.call('LINDEX', seq, 0)
  if not nxt then return end
  local sp = string.find(nxt, ' ', 1, true)
  local due = tonumber(string.sub(nxt, 1, sp - 1))
  local item = string.sub(nxt, sp + 1)
  local idsp = string.find(item, ' ', 1, true)
  redis.call('LSET', seq, 0, string.sub(item, 1, idsp - 1))
  redis.call('HINCRBY', stats, 'waiting', -1)
  if due > tonumber(now) then
    redis.call('ZADD', delayed, due, item)
  else
    redis.call('RPUSH', pending, item)
  end
end
