-- ack_fetch: settle a batch of one worker's leased jobs and lease jobs for the slots the
-- batch frees, in one call (one round trip and one script run instead of two). The script
-- is lanes.lua and sequence.lua, then ack.lua as the function `settle` and fetch.lua as the
-- function `lease`, then this.
--
-- KEYS[1..10]  as ack.lua's          KEYS[11..16]   as fetch.lua's
-- ARGV[1..n-7] as ack.lua's          ARGV[n-6..n]   as fetch.lua's (n = #ARGV)
--
-- The settlements are written first: a job released unstarted ('x') may be leased again by
-- the same call. Returns {settled, skipped, leased}: ack.lua's counts, then fetch.lua's reply
-- (the leased items and `~<epoch>`, nothing, or -1 when the queue is paused).
-- ack.lua reads its part of ARGV in place (ACK_END, lanes.lua): copying its four arguments
-- per job into a table of its own cost about 2,300 Redis instructions per job
-- (scripts/script-cost.py).
local fetch_keys, fetch_args, n = {}, {}, #ARGV - 7
for i = 11, 16 do fetch_keys[i - 10] = KEYS[i] end
for i = 1, 7 do fetch_args[i] = ARGV[n + i] end
ACK_END = n
local counts = settle(KEYS, ARGV)
return {counts[1], counts[2], lease(fetch_keys, fetch_args)}
