-- swap: replace or remove one exact item where it sits, only if it is still there (the
-- erasure's compare-and-swap: a job a worker took meanwhile is left alone and reported).
--
-- KEYS[1] key      the structure holding the item: a LIST (pending, seq:<key>), a ZSET
--                  (delayed), a HASH (dead, expired) or a STRING (result:<id>)
-- KEYS[2] index    for a HASH: the ZSET ordering it (dead_at, expired_at), from which a
--                  removed field goes too; else KEYS[1] again (unused)
-- ARGV[1] type     'list', 'zset', 'hash' or 'string'
-- ARGV[2] old      the exact item (for a LIST of a sequence: "<due> <item>")
-- ARGV[3] new      the item to put in its place; '' removes it
-- ARGV[4] field    for a HASH: the field (job id); else ''
-- A job waiting in a LIST or the ZSET also has its item in the partition's `index` (HASH
-- id -> item, found from KEYS[1]'s hash tag): it is swapped or removed there too, in step.
-- Returns 1 when swapped or removed, 0 when the old item is no longer there.
-- A job removed from a lane is emptied in place and marked in `tomb` instead (its token
-- stays in pending until fetch drops both).
-- Complexity: LIST O(N) (LPOS scans for the item; LSET keeps its position, LREM removes
-- it), ZSET O(log N) (same score), HASH and STRING O(1) (a STRING keeps its TTL).
local key, index, kind, old, new, field = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function sync()
  local base = string.match(key, '^(.-}:)')
  if not base then return end
  local o, n = old, new
  local rest = string.match(o, '^%S+ (.*)$')
  if rest and string.sub(rest, 1, 1) ~= '{' then
    -- a sequence's successor, "<due> <item>"
    o = rest
    if n ~= '' then n = string.match(n, '^%S+ (.*)$') or n end
  end
  local id = string.match(o, '^(%S+) ')
  if id and redis.call('HGET', base .. 'index', id) == o then
    if n == '' then
      redis.call('HDEL', base .. 'index', id)
    else
      redis.call('HSET', base .. 'index', id, n)
    end
  end
end

if kind == 'list' then
  local at = redis.call('LPOS', key, old)
  if not at then return 0 end
  local base = string.match(key, '^(.-}:)lane:')
  if new == '' and base then
    -- A lane's job keeps a token in pending: the item is emptied where it sits and marked
    -- withdrawn, so fetch drops it with its token and the depth stays right.
    local id = string.match(old, '^(%S+) ')
    redis.call('LSET', key, at, id .. ' {}')
    redis.call('SADD', base .. 'tomb', id)
    redis.call('HINCRBY', base .. 'stats', 'tomb', 1)
  elseif new == '' then
    redis.call('LREM', key, 1, old)
  else
    redis.call('LSET', key, at, new)
  end
  sync()
  return 1
elseif kind == 'zset' then
  local score = redis.call('ZSCORE', key, old)
  if not score then return 0 end
  redis.call('ZREM', key, old)
  if new ~= '' then redis.call('ZADD', key, score, new) end
  sync()
  return 1
elseif kind == 'hash' then
  if redis.call('HGET', key, field) ~= old then return 0 end
  if new == '' then
    redis.call('HDEL', key, field)
    redis.call('ZREM', index, field)
  else
    redis.call('HSET', key, field, new)
  end
  return 1
elseif kind == 'string' then
  if redis.call('GET', key) ~= old then return 0 end
  if new == '' then
    redis.call('DEL', key)
  else
    redis.call('SET', key, new, 'KEEPTTL')
  end
  return 1
end
return redis.error_reply('swap: unknown type ' .. tostring(kind))
