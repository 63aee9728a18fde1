-- schedule_fire: handle one tick of a schedule for every scheduler instance at once. The
-- claim and the push are one step, so a tick enqueues exactly one job however many
-- instances see it.
--
-- KEYS[1] state    HASH last_tick (ms), last_fired_ms, last_job
-- KEYS[2] claim    STRING claim of this tick, with a TTL
-- KEYS[3] pending  LIST of ready items
-- ARGV[1] tick (ms)   ARGV[2] claim TTL (ms)   ARGV[3] item, or '' to only mark the tick handled
-- ARGV[4] job id      ARGV[5] now (ms)   ARGV[6] the partition's key base `{tag}:`
-- (lanes.lua is prepended: a job with a priority joins its lane; the job is indexed.)
-- last_tick only moves forward. Returns 1 when this call enqueued, else 0. Complexity: O(1).
local state, claim, pending = KEYS[1], KEYS[2], KEYS[3]
B, NOW = ARGV[6], ARGV[5]
local tick = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', state, 'last_tick') or '0')
if tick > last then redis.call('HSET', state, 'last_tick', ARGV[1]) end
if ARGV[3] == '' then return 0 end
if not redis.call('SET', claim, ARGV[4], 'NX', 'PX', ARGV[2]) then return 0 end
ready(pending, ARGV[3], false, ARGV[5])
redis.call('HSET', B .. 'index', ARGV[4], ARGV[3])
redis.call('HSET', state, 'last_fired_ms', ARGV[5], 'last_job', ARGV[4])
return 1
