-- promote: move due delayed jobs (scheduled runs and retries) to their line (pending or
-- their lane), a bounded chunk, and let tenants whose rate window opened back into their
-- rings (lanes.lua is prepended).
--
-- KEYS[1] delayed   ZSET item -> due time (ms)
-- KEYS[2] pending   LIST of ready items and lane tokens
-- ARGV[1] now (ms)  ARGV[2] most items to move (<= 1000: unpack limit)
-- ARGV[3] the partition's key base `{tag}:`   ARGV[4] the tenant rate per minute (0: none)
-- Returns {moved, next due time in ms or -1 when nothing is delayed or throttled}.
-- Complexity: O(log D + K) for K moved out of D delayed, plus O(T) for T tenants let back.
B, NOW = ARGV[3], ARGV[1]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
  local plain = {}
  for i = 1, #due do
    local tn, pr = route(due[i])
    if tn or pr then ready(KEYS[2], due[i], false, ARGV[1]) else plain[#plain + 1] = due[i] end
  end
  if #plain > 0 then redis.call('LPUSH', KEYS[2], unpack(plain)) end
end
local throttled = B .. 'throttled'
local opened = redis.call('ZRANGEBYSCORE', throttled, '-inf', ARGV[1], 'LIMIT', 0, 1000)
if #opened > 0 then
  redis.call('ZREM', throttled, unpack(opened))
  local rate = math.max(tonumber(ARGV[4]), 1)
  for i = 1, #opened do
    local pr, tn = string.match(opened[i], '^(%S+) (.+)$')
    unpark(math.min(reopen(pr, tn), rate))
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local soon = -1
if nxt[2] then soon = math.floor(tonumber(nxt[2])) end
local held = redis.call('ZRANGE', throttled, 0, 0, 'WITHSCORES')
if held[2] and (soon < 0 or tonumber(held[2]) < soon) then soon = math.floor(tonumber(held[2])) end
return {#due, soon}
