#!/usr/bin/env bash
# Load test of the app's enqueue API: noop jobs through POST /api/v1/jobs (one per request) and
# POST /api/v1/jobs/batch (100 per request) from 32 keep-alive connections.
#
#   scripts/load-api.sh [--duration 10s] [--connections 32] [--threads 2] [--batch 100]
#
# Starts the release binary's `ingest` role (which serves the API) on 127.0.0.1:8091 under a
# private key prefix, makes an API key with a rate no run reaches, runs wrk with
# scripts/api-jobs.lua for single jobs and then for batches, checks that the queue holds as
# many jobs as were accepted, stops the server and deletes the run's keys. stdout: one JSON
# line per run (see scripts/api-jobs.lua) plus "jobs_in_queue"; the rest goes to stderr.
# Environment: SWITCHBOARD_BIN (default ${CARGO_TARGET_DIR:-target}/release/switchboard),
# REDIS_URL (default redis://127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration=10s connections=32 threads=2 batch=100
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration=${2:?}; shift 2 ;;
    --connections) connections=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --batch) batch=${2:?}; shift 2 ;;
    *) echo "load-api: unknown argument: $1 (see the top of $0)" >&2; exit 2 ;;
  esac
done
log() { echo "load-api: $*" >&2; }
for tool in wrk curl redis-cli; do
  command -v "$tool" >/dev/null || { log "$tool is required: apt-get install wrk curl redis-tools"; exit 1; }
done
bin=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-target}/release/switchboard}
[[ -x $bin ]] || { log "$bin not found: cargo build --release (or set SWITCHBOARD_BIN)"; exit 1; }
url=http://127.0.0.1:8091
prefix="loadapi-$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
export SWITCHBOARD_QUEUE__PREFIX=$prefix SWITCHBOARD_LOG=warn
server_log=$(mktemp -t load-api.XXXXXX)
server_pid=
cleanup() {
  local rc=$?
  if [[ -n $server_pid ]]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  redis-cli --scan --pattern "*$prefix*" | xargs -r -n 500 redis-cli unlink >/dev/null 2>&1 || true
  rm -f "$server_log"
  exit "$rc"
}
trap cleanup EXIT
key=$("$bin" keys create --name load --scope '*' --rate-per-minute 4000000000 2>/dev/null)
"$bin" ingest --listen 127.0.0.1:8091 >"$server_log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null --max-time 1 "$url/readyz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "$url/readyz" || { log "server not ready:"; cat "$server_log" >&2; exit 1; }
pending() { redis-cli llen "{$prefix:maintenance}:pending"; }
for b in 1 "$batch"; do
  path=/api/v1/jobs
  [[ $b -gt 1 ]] && path=/api/v1/jobs/batch
  before=$(pending)
  out=$(API_KEY=$key API_BATCH=$b wrk -t "$threads" -c "$connections" -d "$duration" --latency -s scripts/api-jobs.lua "$url$path")
  grep -v '^{"requests":' <<<"$out" >&2 || true
  line=$(grep '^{"requests":' <<<"$out" | tail -n 1)
  # Let the requests still in flight when wrk stopped finish before counting.
  sleep 1
  queued=$(( $(pending) - before ))
  echo "${line%\}},\"jobs_in_queue\":$queued}"
done
