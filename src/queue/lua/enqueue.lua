-- enqueue: push one job that carries a dedupe key, a sequence key, an idempotency key, or
-- any of them.
--
-- KEYS[1] unique    STRING dedupe key -> first job id, with a TTL (unused without ARGV[2])
-- KEYS[2] pending   LIST of ready items
-- KEYS[3] delayed   ZSET item -> due time (ms)
-- KEYS[4] seq       LIST the job's sequence (see sequence.lua; unused without ARGV[5])
-- KEYS[5] stats     HASH counters; `waiting` counts jobs waiting behind a sequence head
-- KEYS[6] idem      STRING idempotency key -> "<outcome> <id> <state>" of the first request,
--                   with a TTL (unused without ARGV[6])
-- ARGV[1] job id    ARGV[2] dedupe TTL in ms or '' for none   ARGV[3] item
-- ARGV[4] due time (ms) or '' for now   ARGV[5] '1' when the job has a sequence key
-- ARGV[6] idempotency TTL in ms or '' for none
-- ARGV[7] the partition's key base `{tag}:`   ARGV[8] now (ms)
-- (lanes.lua is prepended: a job with a tenant or priority goes to its lane with a token.)
-- Every job that waits is indexed (`index`: id -> item) for lookup and cancel by id.
-- The checks and the push are one step. With a sequence, a job whose key has nothing out
-- becomes its head and is pushed as usual; otherwise it waits in the sequence list, and
-- settling the head moves it in.
-- Returns {1, id, state} when enqueued (state: pending, delayed or waiting), {0, first id,
-- 'duplicate'} when the dedupe key suppressed it, {2, id, state} when the idempotency key
-- was seen before: the first request's job and state, nothing done.
-- Complexity: O(1) (O(log D) for a delayed push).
B, NOW = ARGV[7], ARGV[8]
if ARGV[6] ~= '' then
  local prior = redis.call('GET', KEYS[6])
  if prior then
    local id, state = string.match(prior, '^%d+ (%S+) (%S+)$')
    return {2, id, state}
  end
end
local function answer(outcome, id, state)
  if ARGV[6] ~= '' then
    redis.call('SET', KEYS[6], outcome .. ' ' .. id .. ' ' .. state, 'PX', ARGV[6])
  end
  return {outcome, id, state}
end
if ARGV[2] ~= '' and not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return answer(0, redis.call('GET', KEYS[1]), 'duplicate')
end
if ARGV[5] == '1' then
  if redis.call('LLEN', KEYS[4]) > 0 then
    local due = ARGV[4]
    if due == '' then due = '0' end
    redis.call('RPUSH', KEYS[4], due .. ' ' .. ARGV[3])
    redis.call('HSET', B .. 'index', ARGV[1], ARGV[3])
    redis.call('HINCRBY', KEYS[5], 'waiting', 1)
    return answer(1, ARGV[1], 'waiting')
  end
  redis.call('RPUSH', KEYS[4], ARGV[1])
end
redis.call('HSET', B .. 'index', ARGV[1], ARGV[3])
if ARGV[4] == '' then
  ready(KEYS[2], ARGV[3], false, ARGV[8])
  return answer(1, ARGV[1], 'pending')
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return answer(1, ARGV[1], 'delayed')
