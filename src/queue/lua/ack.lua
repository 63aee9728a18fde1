-- ack: settle a batch of one worker's leased jobs.
--
-- KEYS[1] leased     HASH id -> item held by the worker
-- KEYS[2] stats      HASH counters: running, processed, failed, retried, dead, expired
-- KEYS[3] completed  ZSET id -> finish time (ms), trimmed to ARGV[2] members
-- KEYS[4] delayed    ZSET item -> due time (ms)
-- KEYS[5] dead       HASH id -> item with its last error
-- KEYS[6] dead_at    ZSET id -> death time (ms), trimmed to ARGV[3] members
-- KEYS[7] pending    LIST of ready items
-- KEYS[8] throughput HASH minute number -> jobs completed in that minute
-- KEYS[9] expired    HASH id -> item of jobs that expired unstarted
-- KEYS[10] expired_at ZSET id -> expiry time (ms), trimmed to ARGV[3] members
-- ARGV[1] now (ms)   ARGV[2] completed cap   ARGV[3] dead cap
-- ARGV[4] the partition's key base `{tag}:` (index, done, tenants; lanes.lua is prepended)
-- ARGV[5] the lease's epoch the 'C' ops were leased in (fetch.lua), or ''
-- ARGV[6..] groups of four: op, id, score, item
--   op 'c' completed; the item slot holds "<id> <finish ms> <kind> <tenant>", kept for
--   browsing in `done`, a LIST newest first, capped like `completed` (within a tenth)
--   op 'C' completed, leased in epoch ARGV[5] and with no sequence: while that epoch is the
--   lease's, these jobs are all in the lease hash (only a rescue takes jobs out of it, and it
--   ends the epoch), so one HDEL settles them; otherwise each is settled like 'c'
--   op 'r' retry: item (rewritten, attempt counted) goes to delayed at score
--   op 's' snooze: item goes to delayed at score, no failure counted
--   op 'f' failed for good: item (with its error) goes to the dead set
--   op 'x' release unstarted: item goes back to the head of its line (pending or lane)
--   A job that goes back to delayed or its line is indexed again (lookup, cancel); every
--   settled job of a tenant frees one of the tenant's slots (let_go).
--   op 'e' expired before it started: item goes to the expired set, never runs
--   For 'c', 'f' and 'e' the score slot holds the job's sequence key (`seq:<key>`) or '': a job
--   that settles for good lets the next job of its sequence in (advance, sequence.lua).
-- A job whose lease is gone (a rescuer already re-queued it) is skipped: the re-queued copy
-- runs again, which is what at-least-once means.
-- Returns {settled, skipped}. Complexity: O(B log M) for B ops, M the size of a sorted set.
local leased, stats, completed, delayed, dead, dead_at, pending =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now = ARGV[1]
B, NOW = ARGV[4], now
local index = B .. 'index'
local done, meta, freed, failed, retried, died, expired, settled, skipped = {}, {}, {}, 0, 0, 0, 0, 0, 0
-- Settled jobs are counted off their tenants only where that frees something (a cap, a
-- blocked tenant, a parked token): otherwise no tenant is read.
local track = tenants_matter()

-- 'C' ops of the lease's current epoch: one HDEL for all. All there: all settle. None: this
-- batch was written before (an ack retried after its answer was lost): all are skipped.
-- Some (a failover lost part of the lease hash): `running` stays exact, and all are recorded
-- as completed (the lost ones run again, as at-least-once allows).
local argv, nargs = ARGV, ACK_END or #ARGV
local fast, batch = nil, 0
if argv[5] ~= '' and redis.call('GET', leased .. ':epoch') == argv[5] then
  local ids = {}
  for i = 6, nargs, 4 do
    if argv[i] == 'C' then
      batch = batch + 1
      ids[batch] = argv[i + 1]
    end
  end
  if batch > 0 then fast = redis.call('HDEL', leased, unpack(ids)) end
end

-- Record a completion: `id` into `completed`, its entry (`item`, "<id> <ms> <kind>
-- <tenant>") into `done`, and, where tenants matter, a freed slot of its tenant (the entry
-- ends in the separator when it has none).
local nd, nm = 0, 0
local function completion(id, item)
  done[nd + 1] = now
  done[nd + 2] = id
  nd = nd + 2
  if item ~= '' then
    nm = nm + 1
    meta[nm] = item
    if track and string.byte(item, -1) ~= 32 then
      local tn = string.match(item, '^%S+ %S+ %S+ (%S+)$')
      if tn then freed[tn] = (freed[tn] or 0) + 1 end
    end
  end
end

-- Settle one op that the fast HDEL did not: its lease is taken one by one.
local function settle_one(op, id, score, item)
  if redis.call('HDEL', leased, id) ~= 1 then
    skipped = skipped + 1
    return
  end
  settled = settled + 1
  if op == 'c' or op == 'C' then
    completion(id, item)
    if score ~= '' then advance(score, id, pending, delayed, stats, now) end
    return
  end
  if track then
    local tn = tenant_of(item)
    if tn then freed[tn] = (freed[tn] or 0) + 1 end
  end
  if op == 'r' then
    redis.call('ZADD', delayed, score, item)
    redis.call('HSET', index, id, item)
    retried = retried + 1
    failed = failed + 1
  elseif op == 's' then
    redis.call('ZADD', delayed, score, item)
    redis.call('HSET', index, id, item)
  elseif op == 'f' then
    redis.call('HSET', dead, id, item)
    redis.call('ZADD', dead_at, now, id)
    failed = failed + 1
    died = died + 1
    if score ~= '' then advance(score, id, pending, delayed, stats, now) end
  elseif op == 'x' then
    ready(pending, item, true, now)
    redis.call('HSET', index, id, item)
  elseif op == 'e' then
    redis.call('HSET', KEYS[9], id, item)
    redis.call('ZADD', KEYS[10], now, id)
    expired = expired + 1
    if score ~= '' then advance(score, id, pending, delayed, stats, now) end
  end
end

-- A 'C' op settled by the HDEL above is recorded in place (the common case, kept lean: it
-- has no sequence); every other op goes through `settle_one`.
for i = 6, nargs, 4 do
  local op = argv[i]
  if op == 'C' and fast then
    if fast > 0 then
      -- `completion`, written out: a function call per job costs more than its body.
      settled = settled + 1
      done[nd + 1] = now
      done[nd + 2] = argv[i + 1]
      nd = nd + 2
      local item = argv[i + 3]
      if item ~= '' then
        nm = nm + 1
        meta[nm] = item
        if track and string.byte(item, -1) ~= 32 then
          local tn = string.match(item, '^%S+ %S+ %S+ (%S+)$')
          if tn then freed[tn] = (freed[tn] or 0) + 1 end
        end
      end
    else
      skipped = skipped + 1
    end
  else
    settle_one(op, argv[i + 1], argv[i + 2], argv[i + 3])
  end
end

if fast and fast > 0 and fast < batch then
  settled, skipped = settled - (batch - fast), skipped + (batch - fast)
end
if settled > 0 then redis.call('HINCRBY', stats, 'running', -settled) end
for tn, n in pairs(freed) do let_go(tn, n) end
if nd > 0 then
  redis.call('ZADD', completed, unpack(done))
  if nm > 0 then
    local cap = tonumber(ARGV[2])
    -- Trimmed in steps of a tenth of the cap, not on every batch.
    if redis.call('LPUSH', B .. 'done', unpack(meta)) > cap + math.ceil(cap / 10) then
      redis.call('LTRIM', B .. 'done', 0, cap - 1)
    end
  end
  redis.call('HINCRBY', stats, 'processed', nd / 2)
  redis.call('HINCRBY', KEYS[8], math.floor(tonumber(now) / 60000), nd / 2)
  local extra = redis.call('ZCARD', completed) - tonumber(ARGV[2])
  if extra > 0 then redis.call('ZREMRANGEBYRANK', completed, 0, extra - 1) end
end
if failed > 0 then redis.call('HINCRBY', stats, 'failed', failed) end
if retried > 0 then redis.call('HINCRBY', stats, 'retried', retried) end
if died > 0 then
  redis.call('HINCRBY', stats, 'dead', died)
  local extra = redis.call('ZCARD', dead_at) - tonumber(ARGV[3])
  if extra > 0 then
    local oldest = redis.call('ZRANGE', dead_at, 0, extra - 1)
    redis.call('ZREM', dead_at, unpack(oldest))
    redis.call('HDEL', dead, unpack(oldest))
  end
end
if expired > 0 then
  redis.call('HINCRBY', stats, 'expired', expired)
  local extra = redis.call('ZCARD', KEYS[10]) - tonumber(ARGV[3])
  if extra > 0 then
    local oldest = redis.call('ZRANGE', KEYS[10], 0, extra - 1)
    redis.call('ZREM', KEYS[10], unpack(oldest))
    redis.call('HDEL', KEYS[9], unpack(oldest))
  end
end
return {settled, skipped}
