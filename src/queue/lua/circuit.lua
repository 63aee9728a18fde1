-- circuit: the fleet-wide circuit of one provider (SMTP, SMS gateway, Cal.com, Stripe, the
-- database), shared by every worker on every host.
--
-- KEYS[1] circuit   HASH failures (consecutive transient failures), open_until (ms),
--                   opened (times it opened), last_error
-- KEYS[2] names     SET of circuit names under the prefix (what operators list)
-- ARGV[1] op        'check' or 'record'
-- ARGV[2] now (ms)  ARGV[3] name
-- check:  ARGV[4] open for (ms). Returns {wait_ms, failures}: wait_ms > 0 while the circuit
--         is open (the caller snoozes that long, no attempt used). When an open circuit's
--         time is up, the first caller becomes the probe (the circuit re-arms for everyone
--         else) and gets {0, -1}; {0, n} is a closed circuit with n failures counted.
-- record: ARGV[4] 'ok' or 'fail'  ARGV[5] failures that open it  ARGV[6] open for (ms)
--         ARGV[7] the failure's error text. A success closes the circuit (deletes it); a
--         failure counts, and the one that reaches the threshold opens it.
--         Returns 1 when this call opened the circuit, else 0.
-- Complexity: O(1).
local key, now = KEYS[1], tonumber(ARGV[2])
if ARGV[1] == 'check' then
  local state = redis.call('HMGET', key, 'failures', 'open_until')
  local failures, open_until = tonumber(state[1] or '0'), tonumber(state[2] or '0')
  if open_until == 0 then return {0, failures} end
  if open_until > now then return {open_until - now, failures} end
  redis.call('HSET', key, 'open_until', now + tonumber(ARGV[4]))
  return {0, -1}
end
if ARGV[4] == 'ok' then
  redis.call('DEL', key)
  return 0
end
redis.call('SADD', KEYS[2], ARGV[3])
local failures = redis.call('HINCRBY', key, 'failures', 1)
redis.call('HSET', key, 'last_error', ARGV[7])
local open_until = tonumber(redis.call('HGET', key, 'open_until') or '0')
if failures >= tonumber(ARGV[5]) and open_until <= now then
  redis.call('HSET', key, 'open_until', now + tonumber(ARGV[6]))
  redis.call('HINCRBY', key, 'opened', 1)
  return 1
end
return 0
