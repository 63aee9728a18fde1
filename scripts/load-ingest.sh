#!/usr/bin/env bash
# Load test of the webhook ingest endpoint: signed Stripe events against `switchboard ingest`.
#
#   scripts/load-ingest.sh [--rate-free | --rate R] [--duration 10s] [--connections 64]
#                          [--threads 2] [--url http://127.0.0.1:8090]
#
# Default (--rate-free): wrk is closed-loop, every connection sends its next request as soon as
# the previous answer arrives, so the run measures the maximum throughput. --rate R spaces each
# connection's requests so the total is about R requests/s (latency at a steady load), e.g.
# `--rate 2000 --connections 8 --threads 1`.
#
# Steps: install wrk if missing; build the release binary (skip with SKIP_BUILD=1); start
# `switchboard ingest` on the URL's host:port with a private queue prefix `load-<random>` so the
# run's Redis keys are isolated; wait for /readyz; run wrk with scripts/stripe-signed.lua
# (unique event id and a valid Stripe-Signature per request); count the jobs in
# `{load-<random>:webhooks}:pending`; stop the server; delete the run's keys.
#
# stdout is exactly one JSON line: wrk's figures (see scripts/stripe-signed.lua) plus
#   "jobs_in_queue":N, "accepted_2xx":requests-non_2xx, "server_answered_202":N (the server's
#   own count, from /metrics), "jobs_equal_202":true|false, "queue_prefix":"load-<random>"
# Everything else (build output, wrk's text report, progress) goes to stderr.
#
# Environment: STRIPE_WEBHOOK_SECRET (default whsec_load_test_secret), REDIS_URL (default
# redis://127.0.0.1:6379; also passed to the server), SKIP_BUILD=1, SWITCHBOARD_BIN (default
# target/release/switchboard), LOAD_QUEUE (default webhooks), LOAD_COUNT_STATUS=1 (exact status
# counts from wrk, at some cost in wrk throughput).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=10s
rate=0
connections=64
threads=2
url=http://127.0.0.1:8090

usage() { sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --rate-free) rate=0; shift ;;
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --connections) connections=${2:?--connections needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --url) url=${2:?--url needs a value}; shift 2 ;;
    --duration=*) duration=${1#*=}; shift ;;
    --connections=*) connections=${1#*=}; shift ;;
    --threads=*) threads=${1#*=}; shift ;;
    --url=*) url=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "load-ingest: unknown argument: $1" >&2; usage; exit 2 ;;
  esac
done

log() { echo "load-ingest: $*" >&2; }

url=${url%/}
# host:port the server listens on, taken from the URL (http://host:port[/...]).
hostport=${url#*://}
hostport=${hostport%%/*}
[[ $hostport == *:* ]] || hostport="$hostport:80"

# Redis: redis://[user:password@]host[:port][/db], default 127.0.0.1:6379 db 0.
redis_host=127.0.0.1 redis_port=6379 redis_db=0
if [[ -n ${REDIS_URL:-} ]]; then
  if [[ $REDIS_URL =~ ^rediss?://(([^@/]*)@)?([^:/@]+)(:([0-9]+))?(/([0-9]+))?/?$ ]]; then
    redis_host=${BASH_REMATCH[3]}
    redis_port=${BASH_REMATCH[5]:-6379}
    redis_db=${BASH_REMATCH[7]:-0}
    auth=${BASH_REMATCH[2]}
    if [[ -n $auth ]]; then export REDISCLI_AUTH=${auth#*:}; fi
  else
    log "cannot parse REDIS_URL=$REDIS_URL; using 127.0.0.1:6379"
  fi
fi
rcli() { redis-cli -h "$redis_host" -p "$redis_port" -n "$redis_db" "$@"; }

# --- tools -------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  sudo=
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq wrk >&2
fi
for tool in wrk curl redis-cli; do
  command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done
if [[ $(rcli ping 2>/dev/null) != PONG ]]; then
  log "no Redis answering at $redis_host:$redis_port"
  exit 1
fi

export STRIPE_WEBHOOK_SECRET=${STRIPE_WEBHOOK_SECRET:-whsec_load_test_secret}

# --- build -------------------------------------------------------------------------------
bin=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-target}/release/switchboard}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building $bin"
  cargo build --release --bin switchboard >&2
fi
[[ -x $bin ]] || { log "$bin not found (build it, or set SWITCHBOARD_BIN)"; exit 1; }

# --- run ---------------------------------------------------------------------------------
run_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
prefix="load-$run_id"
queue=${LOAD_QUEUE:-webhooks}
pending_key="{$prefix:$queue}:pending"
server_log=$(mktemp -t load-ingest-server.XXXXXX)
wrk_out=$(mktemp -t load-ingest-wrk.XXXXXX)
server_pid=

stop_server() {
  [[ -n $server_pid ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "ingest did not stop within 10 s of SIGTERM; killing it"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

cleanup() {
  local rc=$?
  stop_server
  # `{` and `}` are literal in a SCAN pattern; the pattern also catches `load-<id>:queues`.
  rcli --scan --pattern "*$prefix*" 2>/dev/null | xargs -r -n 500 redis-cli -h "$redis_host" \
    -p "$redis_port" -n "$redis_db" unlink >/dev/null 2>&1 || true
  rm -f "$server_log" "$wrk_out"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting $bin ingest --listen $hostport (queue prefix $prefix)"
SWITCHBOARD_QUEUE__PREFIX=$prefix SWITCHBOARD_LOG=warn \
  "$bin" ingest --listen "$hostport" >"$server_log" 2>&1 &
server_pid=$!

ready=
for _ in $(seq 1 100); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    log "ingest exited before it was ready:"
    cat "$server_log" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 1 "$url/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ -z $ready ]]; then
  log "ingest not ready at $url/readyz after 10 s:"
  cat "$server_log" >&2
  exit 1
fi

log "wrk -t $threads -c $connections -d $duration --latency $url/webhooks/stripe"
if ! LOAD_RUN_ID=$run_id LOAD_RATE=$rate LOAD_CONNECTIONS=$connections wrk -t "$threads" -c "$connections" -d "$duration" --latency \
  -s scripts/stripe-signed.lua "$url/webhooks/stripe" >"$wrk_out"; then
  cat "$wrk_out" >&2
  log "wrk failed"
  exit 1
fi
grep -v '^{"requests":' "$wrk_out" >&2 || true
wrk_json=$(grep '^{"requests":' "$wrk_out" | tail -n 1)
[[ -n $wrk_json ]] || { log "wrk printed no JSON summary"; exit 1; }

# The server's own count of 202 answers (wrk misses answers that arrive after its deadline).
# Read it once it has settled: wrk has closed its connections, so in-flight requests end soon.
answered_202() {
  curl -fsS --max-time 2 "$url/metrics" 2>/dev/null |
    awk '/^switchboard_ingest_requests_total\{/ && /status="202"/ { n += $NF } END { printf "%d", n }'
}
server_202=$(answered_202)
for _ in $(seq 1 50); do
  sleep 0.2
  again=$(answered_202)
  [[ $again == "$server_202" ]] && break
  server_202=$again
done

# Stop first: a graceful shutdown finishes the requests still in flight when wrk stopped.
stop_server
if [[ -s $server_log ]]; then
  log "server log (warnings and errors, last 20 lines):"
  tail -n 20 "$server_log" >&2
fi

jobs=$(rcli llen "$pending_key")
[[ $jobs =~ ^[0-9]+$ ]] || { log "LLEN $pending_key answered: $jobs"; exit 1; }

requests=$(sed -E 's/.*"requests":([0-9]+).*/\1/' <<<"$wrk_json")
non_2xx=$(sed -E 's/.*"non_2xx":([0-9]+).*/\1/' <<<"$wrk_json")
accepted=$((requests - non_2xx))
if [[ $jobs -ne $server_202 ]]; then
  log "MISMATCH: the server answered 202 $server_202 times but $jobs jobs are in $pending_key"
fi
exact=$([[ $jobs -eq $server_202 ]] && echo true || echo false)

echo "${wrk_json%?},\"jobs_in_queue\":$jobs,\"accepted_2xx\":$accepted,\"server_answered_202\":$server_202,\"jobs_equal_202\":$exact,\"queue_prefix\":\"$prefix\"}"
