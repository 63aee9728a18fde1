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
-- Every popped token is served from the rings: the fetch's tokens take the round's next slots
-- (8 high, 4 normal, 1 low of every 13, kept in `stats.turn`), each priority serves its slots
-- and what it cannot use falls to the others, high first. Within a priority the ring's next
-- tenants (one RPOP with a count) give up to 32 jobs each (their turn) and go to the back
-- (one LPUSH) while their lanes have more. A tenant at its cap or rate leaves the ring
-- (`blocked`, `throttled`); a token no tenant may use is parked. Items cancelled while they
-- waited (`tomb`) are dropped.
-- Returns the leased items followed by `~<epoch>` (the lease's epoch, see the end), nothing
-- when nothing was leased, or the integer -1 when the queue is paused (anything in the
-- inbox is handed back to the head of pending first).
-- Complexity: O(N) for N returned jobs, plus one step per tenant taken out of a ring;
-- independent of the backlog.
local pending, inbox, leased, stats, paused, workers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
B = ARGV[4]
local cap, rate, now = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
-- Most jobs one tenant gives per turn. A turn's fixed cost (the tenant's lane is cold in
-- memory: about 3-4 us of Redis time) is shared by its jobs, so a larger turn serves many
-- tenants cheaper (per job, with 1,000 tenants: 1.07 us at 8, 0.66 us at 32); a tenant's
-- wait grows by at most this many jobs per other tenant with work.
local TURN = 32

if redis.call('EXISTS', paused) == 1 then
  while redis.call('LMOVE', inbox, pending, 'RIGHT', 'RIGHT') do end
  return -1
end

local out, tokens = {}, 0
local byte = string.byte
-- Jobs and tokens are told apart by their first byte (`~`: a token).
local item = redis.call('RPOP', inbox)
while item do
  if byte(item, 1) == 126 then tokens = tokens + 1 else out[#out + 1] = item end
  item = redis.call('RPOP', inbox)
end

local want = tonumber(ARGV[1]) - #out - tokens
if want > 0 then
  local more = redis.call('RPOP', pending, want)
  if more then
    local n = #out
    for i = 1, #more do
      local x = more[i]
      if byte(x, 1) == 126 then tokens = tokens + 1 else
        n = n + 1
        out[n] = x
      end
    end
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
  -- How many jobs tenant `tn` may start now (at most `want`); 0 takes it out of the ring
  -- into `blocked` or `throttled`.
  local function room(pr, tn, want)
    if tn == '_' then return want end
    local mine = taken[tn] or 0
    if cap > 0 then
      running[tn] = running[tn] or tonumber(redis.call('HGET', tenant_running, tn) or '0')
      want = math.min(want, cap - running[tn] - mine)
      if want <= 0 then
        redis.call('SADD', B .. 'blocked', pr .. ' ' .. tn)
        return 0
      end
    end
    if rate > 0 then
      started[tn] = started[tn] or tonumber(redis.call('HGET', window, tn) or '0')
      want = math.min(want, rate - started[tn] - mine)
      if want <= 0 then
        redis.call('ZADD', B .. 'throttled', (minute + 1) * 60000, pr .. ' ' .. tn)
        return 0
      end
    end
    return want
  end
  -- Serve up to `need` tokens from priority `pr`: the ring's next tenants, taken from its
  -- serving end in one step, give a turn of up to TURN jobs each; those with work left go
  -- to the back in one step, a tenant with an empty lane or at a limit leaves. Returns the
  -- tokens used. Rings found empty stay empty while the script runs, so each is asked once.
  local drained = {}
  local function serve(pr, need)
    local used = 0
    local ring = B .. 'ring:' .. pr
    while used < need and not drained[pr] do
      local tenants = redis.call('RPOP', ring, math.ceil((need - used) / TURN))
      if not tenants then
        drained[pr] = true
        break
      end
      -- ceil(need / TURN) tenants: each gets a full turn but the last, which gets the rest.
      local back = {}
      for t = 1, #tenants do
        local tn = tenants[t]
        local n = room(pr, tn, math.min(TURN, need - used))
        if n > 0 then
          local lane = B .. 'lane:' .. pr .. ':' .. tn
          local got = redis.call('RPOP', lane, n)
          if got then
            -- A full turn may have left work in the lane; a short one emptied it.
            if #got == n and redis.call('LLEN', lane) > 0 then back[#back + 1] = tn end
            local mine = #got
            if tombs then
              mine = 0
              for k = 1, #got do
                if cancelled(got[k]) then dropped = dropped + 1 else
                  out[#out + 1] = got[k]
                  mine = mine + 1
                end
              end
            else
              local at = #out
              for k = 1, #got do out[at + k] = got[k] end
            end
            if tn ~= '_' then taken[tn] = (taken[tn] or 0) + mine end
            used = used + #got
          end
        end
      end
      if #back > 0 then redis.call('LPUSH', ring, unpack(back)) end
    end
    return used
  end
  -- This fetch's tokens take the round's next slots (of every 13: 8 high, 4 normal, 1 low,
  -- counted in `stats.turn`). The slots of a priority with no tenant waiting go to the first
  -- one that has some; each priority serves its slots, and what it cannot use (its tenants
  -- are at a limit) falls to the others, high first.
  local turn = redis.call('HINCRBY', stats, 'turn', tokens) - tokens
  local quota = {0, 0, 0}
  local full, rest = math.floor(tokens / 13), tokens % 13
  quota[1], quota[2], quota[3] = 8 * full, 4 * full, full
  for s = turn, turn + rest - 1 do
    local slot = s % 13
    if slot < 8 then quota[1] = quota[1] + 1 elseif slot < 12 then quota[2] = quota[2] + 1 else quota[3] = quota[3] + 1 end
  end
  local spare = 0
  for j = 1, 3 do
    if redis.call('EXISTS', B .. 'ring:' .. PRIOS[j]) == 0 then
      drained[PRIOS[j]] = true
      spare, quota[j] = spare + quota[j], 0
    end
  end
  for j = 1, 3 do
    if not drained[PRIOS[j]] then
      quota[j] = quota[j] + spare
      break
    end
  end
  local used = 0
  for j = 1, 3 do
    if quota[j] > 0 then used = used + serve(PRIOS[j], quota[j]) end
  end
  for j = 1, 3 do
    if used < tokens then used = used + serve(PRIOS[j], tokens - used) end
  end
  local idle = tokens - used
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

local fields, ids, match = {}, {}, string.match
for i = 1, #out do
  local x = out[i]
  local id = match(x, '^[^ ]+')
  ids[i] = id
  fields[2 * i - 1] = id
  fields[2 * i] = x
end
redis.call('HSET', leased, unpack(fields))
redis.call('HDEL', B .. 'index', unpack(ids))
redis.call('HINCRBY', stats, 'running', #out)
-- The lease's epoch, made the first time this worker leases after its lease hash was wiped
-- by a rescue (or ever): a job leased in the current epoch is in the lease hash until it is
-- settled, so the worker settles such jobs in one HDEL (ack.lua). Unique across failovers:
-- the worker's clock and a counter of the partition.
local ek = leased .. ':epoch'
local epoch = redis.call('GET', ek)
if not epoch then
  epoch = ARGV[7] .. ':' .. redis.call('INCR', B .. 'epochs')
  redis.call('SET', ek, epoch)
end
out[#out + 1] = '~' .. epoch
return out
