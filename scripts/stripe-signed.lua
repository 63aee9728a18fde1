-- wrk script: POST a freshly signed Stripe event to the ingest endpoint on every request.
--
--   STRIPE_WEBHOOK_SECRET=whsec_... wrk -t2 -c64 -d10s --latency \
--       -s scripts/stripe-signed.lua http://127.0.0.1:8090/webhooks/stripe
--
-- Each request carries a unique event id `evt_load_<run>_<thread>_<n>` (<run>: LOAD_RUN_ID from
-- the environment, else the start time in seconds; <thread>: 1..threads; <n>: per-thread
-- counter), so the ingest's dedupe never drops one, and a header
--   Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>." .. body)>
-- exactly as Stripe signs: the key is the whole `whsec_...` string as bytes (not base64-decoded).
--
-- At the end it prints one JSON line to stdout, beginning with {"requests": (wrk's own text
-- report is printed before it):
--   {"requests":N,"seconds":S,"requests_per_sec":R,"p50_ms":..,"p90_ms":..,"p99_ms":..,
--    "max_ms":..,"non_2xx":N,"errors":{"connect":..,"read":..,"write":..,"timeout":..}}
-- non_2xx is wrk's summary.errors.status, i.e. responses with status >= 400 (wrk does not count
-- 3xx there). With LOAD_COUNT_STATUS=1 a response() callback also counts every status exactly
-- and the line gains "status":{"202":N,...}; that callback costs wrk some throughput.
--
-- SHA-256 and HMAC-SHA256 are pure Lua on LuaJIT's `bit` library. Loaded by plain LuaJIT (no
-- `wrk` global) the file only defines them and returns them as a table:
--   luajit -e 'local c = dofile("scripts/stripe-signed.lua"); print(c.sha256_hex("abc"))'
--   luajit scripts/stripe-signed.lua --self-test

local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local lshift, rshift, ror, tobit, tohex = bit.lshift, bit.rshift, bit.ror, bit.tobit, bit.tohex
local byte, char, rep, sub, concat = string.byte, string.char, string.rep, string.sub, table.concat
local floor = math.floor

---------------------------------------------------------------------------------------------
-- SHA-256 (FIPS 180-4). Words are LuaJIT bit-op numbers (signed 32-bit); every sum goes through
-- tobit, which reduces modulo 2^32 (sums of a few 32-bit values are exact in a double).

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
for i = 1, 64 do K[i] = tobit(K[i]) end

local H0 = {
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}
for i = 1, 8 do H0[i] = tobit(H0[i]) end

local W = {} -- message schedule, reused (one Lua state per wrk thread, so no sharing)

-- Compress W[1..16] into state H (in place).
local function compress(H)
  for j = 17, 64 do
    local w15, w2 = W[j - 15], W[j - 2]
    local s0 = bxor(ror(w15, 7), ror(w15, 18), rshift(w15, 3))
    local s1 = bxor(ror(w2, 17), ror(w2, 19), rshift(w2, 10))
    W[j] = tobit(W[j - 16] + s0 + W[j - 7] + s1)
  end
  local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
  for j = 1, 64 do
    local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
    local ch = bxor(band(e, f), band(bnot(e), g))
    local t1 = h + S1 + ch + K[j] + W[j]
    local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
    local maj = bxor(band(a, b), band(a, c), band(b, c))
    h, g, f, e = g, f, e, tobit(d + t1)
    d, c, b, a = c, b, a, tobit(t1 + S0 + maj)
  end
  H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
  H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
end

-- Load the 64-byte block of s starting at (1-based) position p into W[1..16].
local function load_block(s, p)
  for i = 1, 16 do
    local b1, b2, b3, b4 = byte(s, p, p + 3)
    W[i] = bor(lshift(b1, 24), lshift(b2, 16), lshift(b3, 8), b4)
    p = p + 4
  end
end

local function u32be(x)
  return char(band(rshift(x, 24), 255), band(rshift(x, 16), 255), band(rshift(x, 8), 255), band(x, 255))
end

-- Hash msg starting from state `init` that has already absorbed `prefix_len` bytes (a multiple
-- of 64; 0 with H0 for a plain hash). Returns a new state table (8 words).
local function sha256_words(init, prefix_len, msg)
  local H = { init[1], init[2], init[3], init[4], init[5], init[6], init[7], init[8] }
  local n = #msg
  local p = 1
  while p + 63 <= n do
    load_block(msg, p)
    compress(H)
    p = p + 64
  end
  local rem = n - p + 1 -- 0..63 bytes left
  local total = prefix_len + n -- bytes; bit length = total * 8 as 64-bit big-endian
  local tail = sub(msg, p) .. "\128" .. rep("\0", (55 - rem) % 64)
    .. u32be(floor(total / 0x20000000)) .. u32be(tobit((total % 0x20000000) * 8))
  for q = 1, #tail, 64 do
    load_block(tail, q)
    compress(H)
  end
  return H
end

local function words_hex(H)
  return concat({ tohex(H[1], 8), tohex(H[2], 8), tohex(H[3], 8), tohex(H[4], 8),
                  tohex(H[5], 8), tohex(H[6], 8), tohex(H[7], 8), tohex(H[8], 8) })
end

local function words_bin(H)
  return u32be(H[1]) .. u32be(H[2]) .. u32be(H[3]) .. u32be(H[4])
    .. u32be(H[5]) .. u32be(H[6]) .. u32be(H[7]) .. u32be(H[8])
end

local function sha256_hex(msg)
  return words_hex(sha256_words(H0, 0, msg))
end

---------------------------------------------------------------------------------------------
-- HMAC-SHA256 (RFC 2104). hmac_key precomputes the states after the ipad and opad blocks, so a
-- MAC costs the inner hash of the message plus a single outer compression.

local function hmac_key(key)
  if #key > 64 then key = words_bin(sha256_words(H0, 0, key)) end
  key = key .. rep("\0", 64 - #key)
  local ipad, opad = {}, {}
  for i = 1, 64 do
    local k = byte(key, i)
    ipad[i] = char(bxor(k, 0x36))
    opad[i] = char(bxor(k, 0x5c))
  end
  local inner = { H0[1], H0[2], H0[3], H0[4], H0[5], H0[6], H0[7], H0[8] }
  local outer = { H0[1], H0[2], H0[3], H0[4], H0[5], H0[6], H0[7], H0[8] }
  load_block(concat(ipad), 1); compress(inner)
  load_block(concat(opad), 1); compress(outer)
  return { inner = inner, outer = outer }
end

local OUTER_BITS = (64 + 32) * 8 -- opad block + inner digest

local function hmac_hex_ctx(ctx, msg)
  local ih = sha256_words(ctx.inner, 64, msg)
  -- The outer message after the opad block is the 32-byte inner digest: one padded block.
  for i = 1, 8 do W[i] = ih[i] end
  W[9] = tobit(0x80000000)
  for i = 10, 15 do W[i] = 0 end
  W[16] = OUTER_BITS
  local H = { ctx.outer[1], ctx.outer[2], ctx.outer[3], ctx.outer[4],
              ctx.outer[5], ctx.outer[6], ctx.outer[7], ctx.outer[8] }
  compress(H)
  return words_hex(H)
end

local function hmac_sha256_hex(key, msg)
  return hmac_hex_ctx(hmac_key(key), msg)
end

-- The Stripe-Signature header value for body signed at unix time t.
local function stripe_signature(ctx, t, body)
  return "t=" .. t .. ",v1=" .. hmac_hex_ctx(ctx, t .. "." .. body)
end

local crypto = {
  sha256_hex = sha256_hex,
  hmac_sha256_hex = hmac_sha256_hex,
  hmac_key = hmac_key,
  hmac_hex_ctx = hmac_hex_ctx,
  stripe_signature = stripe_signature,
}

---------------------------------------------------------------------------------------------
-- Plain LuaJIT: return the functions (and run the built-in known-answer tests if asked).

if wrk == nil then
  if arg and arg[1] == "--self-test" then
    local cases = {
      { sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
      { sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
      { sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
      -- RFC 4231 test cases 1, 2 and 6 (key longer than the block).
      { hmac_sha256_hex(rep("\11", 20), "Hi There"),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
      { hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
      { hmac_sha256_hex(rep("\170", 131), "Test Using Larger Than Block-Size Key - Hash Key First"),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    }
    local failed = 0
    for i, c in ipairs(cases) do
      local ok = c[1] == c[2]
      if not ok then failed = failed + 1 end
      print(string.format("%s case %d: %s", ok and "ok  " or "FAIL", i, c[1]))
    end
    if failed > 0 then os.exit(1) end
  end
  return crypto
end

---------------------------------------------------------------------------------------------
-- wrk callbacks. setup() and done() run in wrk's main Lua state; init() and request() run in
-- each thread's own state (a separate copy of this script).

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
  thread:set("run_id", os.getenv("LOAD_RUN_ID") or tostring(os.time()))
end

local ctx, prefix, counter, path, headers

function init(args)
  local secret = os.getenv("STRIPE_WEBHOOK_SECRET")
  if secret == nil or secret == "" then
    io.stderr:write("stripe-signed.lua: STRIPE_WEBHOOK_SECRET is not set\n")
    os.exit(2)
  end
  ctx = hmac_key(secret)
  prefix = '{"id":"evt_load_' .. tostring(run_id) .. "_" .. tostring(thread_id) .. "_"
  counter = 0
  path = wrk.path
  headers = { ["Content-Type"] = "application/json" }
  wrk.method = "POST"
end

function request()
  counter = counter + 1
  local t = tostring(os.time())
  local body = prefix .. counter .. '","object":"event","type":"invoice.paid","created":' .. t
    .. ',"data":{"object":{"id":"in_load","object":"invoice"}}}'
  headers["Stripe-Signature"] = stripe_signature(ctx, t, body)
  return wrk.format("POST", path, headers, body)
end

-- Fixed-rate mode: LOAD_RATE requests/s spread over LOAD_CONNECTIONS connections; each
-- connection waits connections/rate seconds between requests (wrk's latency excludes the
-- wait). The achieved rate is a little below LOAD_RATE by the answer time; it is reported.
local rate = tonumber(os.getenv("LOAD_RATE") or "")
local conns = tonumber(os.getenv("LOAD_CONNECTIONS") or "")
if rate and rate > 0 and conns and conns > 0 then
  local pause_ms = conns * 1000 / rate
  function delay()
    return pause_ms
  end
end

if os.getenv("LOAD_COUNT_STATUS") == "1" then
  statuses = {}
  function response(status, _headers, _body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

local function ms(us)
  return string.format("%.3f", us / 1000)
end

function done(summary, latency, _requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local fields = {
    string.format('"requests":%d', summary.requests),
    string.format('"seconds":%.3f', seconds),
    string.format('"requests_per_sec":%.1f', seconds > 0 and summary.requests / seconds or 0),
    '"p50_ms":' .. ms(latency:percentile(50)),
    '"p90_ms":' .. ms(latency:percentile(90)),
    '"p99_ms":' .. ms(latency:percentile(99)),
    '"max_ms":' .. ms(latency.max),
    string.format('"non_2xx":%d', e.status),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}',
      e.connect, e.read, e.write, e.timeout),
  }
  if os.getenv("LOAD_COUNT_STATUS") == "1" then
    local total = {}
    for _, thread in ipairs(threads) do
      local s = thread:get("statuses")
      if type(s) == "table" then
        for code, n in pairs(s) do total[code] = (total[code] or 0) + n end
      end
    end
    local codes = {}
    for code in pairs(total) do codes[#codes + 1] = code end
    table.sort(codes)
    local parts = {}
    for _, code in ipairs(codes) do parts[#parts + 1] = string.format('"%d":%d', code, total[code]) end
    fields[#fields + 1] = '"status":{' .. concat(parts, ",") .. "}"
  end
  io.write("{" .. concat(fields, ",") .. "}\n")
  io.flush()
end
