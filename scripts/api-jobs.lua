-- wrk script: POST noop jobs to the app's enqueue API, one per request or API_BATCH (> 1) per
-- request to /api/v1/jobs/batch.
--
--   API_KEY=sbk_... API_BATCH=100 wrk -t2 -c32 -d10s --latency -s scripts/api-jobs.lua \
--       http://127.0.0.1:8091/api/v1/jobs/batch
--
-- At the end it prints one JSON line beginning with {"requests": (after wrk's own report):
--   {"requests":N,"jobs":N*batch,"seconds":S,"requests_per_sec":R,"jobs_per_sec":J,
--    "p50_ms":..,"p99_ms":..,"max_ms":..,"non_2xx":N,"errors":{...}}

local batch = tonumber(os.getenv("API_BATCH") or "1")
local job = '{"kind":"noop","args":{}}'

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("API_KEY"), "set API_KEY")
if batch > 1 then
  local jobs = {}
  for i = 1, batch do jobs[i] = job end
  wrk.body = '{"jobs":[' .. table.concat(jobs, ",") .. ']}'
else
  wrk.body = job
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"jobs":%d,"batch":%d,"seconds":%.3f,"requests_per_sec":%.1f,"jobs_per_sec":%.1f,' ..
    '"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"non_2xx":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
    summary.requests, summary.requests * batch, batch, secs, summary.requests / secs,
    summary.requests * batch / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
