-- fetch: lease up to N ready jobs to one worker (lanes.lua is prepended).
--
-- KEYS[1] pending   LIST of plain items "<id> <json>" and lane tokens "~<ms>"; producers
--                   LPUSH, we pop from the right
-- KEYS[2] inbox     LIST this worker's landing zone for its blocking BLMOVE
-- KEYS[3] leased    HASH id -> item, the jobs this worker holds
-- KEYS[4] stats     HASH of counters; field `running` is kept equal to the leased total
-- KEYS[5] paused    STRING present while the queue is paused
-- KEYS[6] workers   ZSET worker id -> lease expiry (ms)
-- ARGV[1] N         most jobs to lease (the caller keeps it <= 1000: unpack limit)
-- ARGV[2] worker    this worker's id
-- ARGV[3] expiry    lease expiry in ms since the epoch
-- ARGV[4] base      the partition's key base `{tag}:` (index, tomb, lanes, rings, tenants)
-- ARGV[5] cap       most leased jobs per tenant, 0 for no cap
-- ARGV[6] rate      most starts per tenant per minute, 0 for no limit
-- ARGV[7] now (ms)
--
-- Every popped token is served from the rings: the round's slot (8 high, 4 normal, 1 low of
-- every 13, kept in `stats.turn`) picks the priority, falling back to the others when it has
-- no runnable tenant; the ring's next tenant gives up to 4 jobs (its turn) and goes to the
-- back while its lane has more. A tenant at its cap or rate leaves the ring (`blocked`, `throttled`); a
-- token no tenant may use is parked. Items cancelled while they waited (`tomb`) are dropped.
-- Returns the leased items, or the integer -1 when the queue is paused (anything in the
-- inbox is handed back to the head of pending first).
-- Complexity: O(N) for N returned jobs, plus one step per tenant taken out of a ring;
-- independent of the backlog.
local pending, inbox, leased, stats, paused, workers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
B = ARGV[4]
local cap, rate, now = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
-- Most jobs one tenant gives per turn: fewer ring steps per job, and a tenant's wait grows
-- by at most this many jobs per other tenant with work.
local TURN = 4

if redis.call('EXISTS', paused) == 1 then
  while redis.call('LMOVE', inbox, pending, 'RIGHT', 'RIGHT') do end
  return -1
end

local out, tokens = {}, 0
local function take(x)
  if string.byte(x, 1) == 126 then tokens = tokens + 1 else out[#out + 1] = x end
end
local item = redis.call('RPOP', inbox)
while item do
  take(item)
  item = redis.call('RPOP', inbox)
end

local want = tonumber(ARGV[1]) - #out - tokens
if want > 0 then
  local more = redis.call('RPOP', pending, want)
  if more then
    for i = 1, #more do take(more[i]) end
  end
end

local tomb = B .. 'tomb'
local tombs = redis.call('SCARD', tomb) > 0
local dropped = 0
local function cancelled(x)
  return tombs and redis.call('SREM', tomb, string.sub(x, 1, string.find(x, ' ', 1, true) - 1)) == 1
end
if tombs and #out > 0 then
  local kept = {}
  for i = 1, #out do
    if cancelled(out[i]) then dropped = dropped + 1 else kept[#kept + 1] = out[i] end
  end
  out = kept
end

if tokens > 0 then
  local minute = math.floor(now / 60000)
  local window = B .. 'trate:' .. minute
  local tenant_running = B .. 'tenant_running'
  local taken, running, started = {}, {}, {}
  local function allowed(pr, tn)
    if tn == '_' then return true end
    if cap > 0 then
      running[tn] = running[tn] or tonumber(redis.call('HGET', tenant_running, tn) or '0')
      if running[tn] + (taken[tn] or 0) >= cap then
        redis.call('SADD', B .. 'blocked', pr .. ' ' .. tn)
        return false
      end
    end
    if rate > 0 then
      started[tn] = started[tn] or tonumber(redis.call('HGET', window, tn) or '0')
      if started[tn] + (taken[tn] or 0) >= rate then
        redis.call('ZADD', B .. 'throttled', (minute + 1) * 60000, pr .. ' ' .. tn)
        return false
      end
    end
    return true
  end
  -- The next tenant of priority `pr` that may run gives up to `want` jobs (its turn): the
  -- items it gave (cancelled ones dropped) and how many tokens they used; nil when no tenant
  -- of that priority may run.
  local function serve(pr, want)
    local ring = B .. 'ring:' .. pr
    while true do
      -- The ring's next tenant moves to its back in one step; it leaves the ring (from the
      -- back, where it now is) when it may not run or its lane is empty.
      local tn = redis.call('LMOVE', ring, ring, 'RIGHT', 'LEFT')
      if not tn then return nil end
      local got
      if allowed(pr, tn) then
        local room = want
        if tn ~= '_' then
          local mine = taken[tn] or 0
          if cap > 0 then room = math.min(room, cap - running[tn] - mine) end
          if rate > 0 then room = math.min(room, rate - started[tn] - mine) end
        end
        local lane = B .. 'lane:' .. pr .. ':' .. tn
        got = redis.call('RPOP', lane, room)
        if got and redis.call('LLEN', lane) == 0 then redis.call('LPOP', ring) end
      end
      if not got then
        redis.call('LPOP', ring)
      else
        local items = {}
        for k = 1, #got do
          if cancelled(got[k]) then dropped = dropped + 1 else items[#items + 1] = got[k] end
        end
        if tn ~= '_' then taken[tn] = (taken[tn] or 0) + #items end
        return items, #got
      end
    end
  end
  local turn = redis.call('HINCRBY', stats, 'turn', tokens) - tokens
  local idle, used = 0, 0
  while used < tokens do
    -- The round's slot (0-7 high, 8-11 normal, 12 low) picks the priority; a turn takes at
    -- most TURN jobs and never runs past the slot's share.
    local slot = (turn + used) % 13
    local first, share = 3, 1
    if slot < 8 then first, share = 1, 8 - slot elseif slot < 12 then first, share = 2, 12 - slot end
    local want = math.min(TURN, tokens - used, share)
    local items, n
    for j = 0, 2 do
      items, n = serve(PRIOS[(first - 1 + j) % 3 + 1], want)
      if items then break end
    end
    if not items then
      idle = tokens - used
      break
    end
    for k = 1, #items do out[#out + 1] = items[k] end
    used = used + n
  end
  -- Leased jobs per tenant are counted only where a cap asks for them (the ack script
  -- counts them off under the same setting).
  for tn, n in pairs(taken) do
    if cap > 0 then redis.call('HINCRBY', tenant_running, tn, n) end
    if rate > 0 then redis.call('HINCRBY', window, tn, n) end
  end
  if rate > 0 and next(taken) then redis.call('EXPIRE', window, 120) end
  -- A token nobody may use waits for a tenant to be let back in; with nobody held back it
  -- is a leftover (its job was purged) and goes.
  if idle > 0 and (redis.call('SCARD', B .. 'blocked') > 0 or redis.call('ZCARD', B .. 'throttled') > 0) then
    redis.call('HINCRBY', stats, 'parked', idle)
  end
end
if dropped > 0 then redis.call('HINCRBY', stats, 'tomb', -dropped) end

redis.call('ZADD', workers, ARGV[3], ARGV[2])
if #out == 0 then return out end

local fields, ids = {}, {}
for i = 1, #out do
  local sp = string.find(out[i], ' ', 1, true)
  local id = string.sub(out[i], 1, sp - 1)
  ids[i] = id
  fields[2 * i - 1] = id
  fields[2 * i] = out[i]
end
redis.call('HSET', leased, unpack(fields))
redis.call('HDEL', B .. 'index', unpack(ids))
redis.call('HINCRBY', stats, 'running', #out)
return out
