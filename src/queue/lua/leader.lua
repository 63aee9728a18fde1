-- leader: take, keep or give up the maintenance leader lease.
--
-- KEYS[1] leader  STRING holder token, with a TTL (the lease)
-- ARGV[1] token   ARGV[2] lease (ms)   ARGV[3] 'hold' (take or renew) or 'release'
-- Returns 1 when the caller holds the lease afterwards, else 0. Complexity: O(1).
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == 'release' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
