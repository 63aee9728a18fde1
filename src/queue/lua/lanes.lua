-- lanes: shared by the scripts that make a job ready, serve one or settle one (prepended,
-- before sequence.lua).
--
-- A plain job (no tenant, normal priority) is an item in `pending`, as ever. A job with a
-- tenant or a priority waits in its lane `lane:<priority>:<tenant>` (tenant `_`: none), a
-- LIST served from the right, and leaves a token `~<ms>` in `pending`: tokens keep the
-- blocking fetch exact (one element per ready job) and are fungible: fetch serves each one
-- from the rings, by priority weight and tenant turn, not from the lane that pushed it.
-- `ring:<priority>` lists the tenants with work at that priority. A tenant at its
-- concurrency cap is taken out of its ring into `blocked` ("<priority> <tenant>"), one over
-- its rate into `throttled` (scored by when its next minute opens); a token that finds no
-- tenant allowed to run is parked (`stats.parked`) and released when one is let back in.
-- Complexity: O(1) per job.
local B = '' -- the partition's key base `{tag}:`, set from the script's ARGV
local NOW = '0' -- now (ms), set from the script's ARGV where tokens are released
-- Where ack.lua's arguments end in ARGV when a script carries others after them
-- (ack_fetch.lua); nil: at ARGV's end.
local ACK_END = nil
local PRIOS = {'high', 'normal', 'low'}

-- The tenant and priority an item carries (both nil for a plain job). The envelope keeps
-- `tn` and `pr` before `args`, so only its head is searched.
local function route(item)
  local sp = string.find(item, ' ', 1, true) or 0
  local stop = string.find(item, '"args":', sp, true) or #item
  local head = string.sub(item, sp, stop)
  return string.match(head, '"tn":"([^"]*)"'), string.match(head, '"pr":"(%a+)"')
end

-- Put tenant `tn` back in its ring at `pr` when its lane has work. Returns the lane's length.
local function reopen(pr, tn)
  local len = redis.call('LLEN', B .. 'lane:' .. pr .. ':' .. tn)
  if len > 0 then redis.call('LPUSH', B .. 'ring:' .. pr, tn) end
  return len
end

-- Release up to `k` parked tokens into `pending` (at the serving end). Complexity: O(k).
local function unpark(k)
  local parked = tonumber(redis.call('HGET', B .. 'stats', 'parked') or '0')
  k = math.min(parked, k)
  if k <= 0 then return end
  redis.call('HINCRBY', B .. 'stats', 'parked', -k)
  local tokens = {}
  for i = 1, k do tokens[i] = '~' .. NOW end
  redis.call('RPUSH', B .. 'pending', unpack(tokens))
end

-- Make an item ready: a plain job into `pending`, any other into its lane with a token.
-- `front`: it was next in line already (rescued, released, its sequence's turn), so it goes
-- to the serving end. Returns nothing. Complexity: O(1).
local function ready(pending, item, front, now)
  local tn, pr = route(item)
  if not tn and not pr then
    if front then redis.call('RPUSH', pending, item) else redis.call('LPUSH', pending, item) end
    return
  end
  pr = pr or 'normal'
  tn = tn or '_'
  local lane = B .. 'lane:' .. pr .. ':' .. tn
  local n
  if front then n = redis.call('RPUSH', lane, item) else n = redis.call('LPUSH', lane, item) end
  if n == 1 then
    local member = pr .. ' ' .. tn
    -- A blocked or throttled tenant is put back in its ring when it is let back in.
    if redis.call('SISMEMBER', B .. 'blocked', member) == 0
        and not redis.call('ZSCORE', B .. 'throttled', member) then
      redis.call('LPUSH', B .. 'ring:' .. pr, tn)
    end
  end
  local token = '~' .. now
  if front or pr == 'high' then
    redis.call('RPUSH', pending, token)
  else
    redis.call('LPUSH', pending, token)
  end
end

-- What `let_go` learns once per script call: whether leased jobs are counted per tenant (a
-- cap is configured, so fetch counts them), whether any tenant is blocked, how many tokens
-- are parked.
local counted, any_blocked, parked_now

-- `n` jobs of tenant `tn` stopped holding a lease: count them off, let the tenant back into
-- the rings it was blocked from, and release one parked token per freed slot while the
-- tenant has work waiting (its tokens were parked while it was at its cap).
local function learn()
  if counted == nil then
    counted = redis.call('EXISTS', B .. 'tenant_running') == 1
    any_blocked = redis.call('SCARD', B .. 'blocked') > 0
    parked_now = tonumber(redis.call('HGET', B .. 'stats', 'parked') or '0')
  end
end

-- Whether `let_go` has anything to do in this script call: leased jobs are counted per
-- tenant, a tenant is blocked or a token parked. When not, a settling script need not read
-- the tenant of each job it settles (`let_go` would do nothing with it).
local function tenants_matter()
  learn()
  return counted or any_blocked or parked_now > 0
end

local function let_go(tn, n)
  if tn == nil or tn == '' or tn == '_' then return end
  local running = B .. 'tenant_running'
  learn()
  if counted and redis.call('HINCRBY', running, tn, -n) <= 0 then
    redis.call('HDEL', running, tn)
  end
  if any_blocked then
    for _, pr in ipairs(PRIOS) do
      if redis.call('SREM', B .. 'blocked', pr .. ' ' .. tn) == 1 then reopen(pr, tn) end
    end
  end
  if parked_now > 0 then
    local waiting = 0
    for _, pr in ipairs(PRIOS) do
      waiting = waiting + redis.call('LLEN', B .. 'lane:' .. pr .. ':' .. tn)
    end
    local k = math.min(n, waiting, parked_now)
    unpark(k)
    parked_now = parked_now - math.max(k, 0)
  end
end

-- The tenant of a leased item, for `let_go` (nil for none).
local function tenant_of(item)
  local tn = route(item)
  return tn
end
