#!/usr/bin/env bash
# shardkv's Redis Cluster front end against a local Redis 7, side by side, on this machine,
# measured by Redis's own `redis-benchmark`: one Redis on loopback with `appendonly yes`,
# `appendfsync always` (one durable copy, no replication; its own temporary directory) and
# a fresh `shardkv up` (3 members, 2 shard groups, every write on a majority before it is
# answered). Each workload runs on both alternately (Redis, shardkv, Redis, shardkv, ...),
# then one table: the requests/s of each, the ratio shardkv / Redis, and the 1-minute load
# average before and after each run.
#
# Workloads, as the issue states them: `redis-benchmark -t set,get -c 50 -n 200000 -d 256`,
# without pipelining and with `-P 16`; `--cluster` for shardkv, plain for the single Redis.
# redis-benchmark runs SET then GET in one invocation; each gives one row.
#
# Usage: scripts/bench-vs-redis.sh [--requests 200000] [--clients 50] [--repeats 1]
#          [--bin PATH] [--time-limit SECONDS] [--keep]
# --requests is redis-benchmark's -n, per test and run: it sets how long a run takes.
#
# Installs redis-server and redis-tools from Debian's packages when missing, builds the
# release binary (`cargo build --release -p shardkv`, honouring CARGO_TARGET_DIR) unless
# --bin is given. Every process it starts is stopped on exit (also on Ctrl-C or an error);
# every wait and every benchmark run is bounded, and all the runs together by --time-limit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REQUESTS=200000
CLIENTS=50
VALUE_BYTES=256
REPEATS=1
BIN=
TIME_LIMIT=3600
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --requests|-n) REQUESTS=$2; shift 2 ;;
    --clients|-c) CLIENTS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --time-limit) TIME_LIMIT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in REQUESTS CLIENTS REPEATS; do
  case "${!n}" in ''|*[!0-9]*|0) echo "--${n,,} must be a positive number" >&2; exit 2 ;; esac
done
case "$TIME_LIMIT" in ''|*[!0-9]*) echo "--time-limit must be seconds" >&2; exit 2 ;; esac

log() { echo "bench-vs-redis: $*" >&2; }
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"

# --- what it needs ---------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  log "installing redis-server and redis-tools from Debian's packages"
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
ensure_bin
# --time-limit bounds what follows (the build above is cargo's business).
SECONDS=0

# --- processes, stopped on any exit ----------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-redis.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Redis on BASE; shardkv's members on BASE+1..3, their admin ports +1000 and their RESP
# ports +2000 (`up`'s defaults).
BASE=$(pick_base 0 1 2 3 1001 1002 1003 2001 2002 2003) \
  || { echo "no free ports found for Redis and shardkv" >&2; exit 1; }
REDIS_PORT=$BASE
mkdir "$TMP/redis"
# No RDB snapshots: the append-only file, fsynced before every reply, is the one durable copy.
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP/redis" \
  --appendonly yes --appendfsync always --save "" --daemonize no \
  --logfile "$TMP/redis.log" &
PIDS+=($!)
"$BIN" up --base-port $((BASE + 1)) --data-dir "$TMP/shardkv" >"$TMP/up.log" 2>&1 &
PIDS+=($!)

log "waiting for Redis (port $REDIS_PORT) and shardkv up (base port $((BASE + 1)))"
wait_for 300 redis-cli -p "$REDIS_PORT" ping \
  || { tail -n 20 "$TMP/redis.log" >&2; echo "Redis did not start" >&2; exit 1; }
wait_for 600 grep -q '^stop:' "$TMP/up.log" \
  || { tail -n 20 "$TMP/up.log" >&2; echo "shardkv up did not come up" >&2; exit 1; }
# up prints `redis:  redis-cli -c -p PORT`.
SKV_PORT=$(sed -n 's/^redis:.*-p \([0-9][0-9]*\).*/\1/p' "$TMP/up.log" | head -n1)
[ -n "$SKV_PORT" ] || { cat "$TMP/up.log" >&2; echo "shardkv up printed no redis: line" >&2; exit 1; }
# redis-benchmark --cluster needs every slot served, and it cannot follow a slot to a node
# it did not know as a master when it started (it skips masters without slots): wait until
# every slot is served and the masters have not changed for 5 s. Right after an election
# the servers hand each group's leadership to its preferred member (crates/host
# leader_preference), which moves slots between processes.
masters() { # the slot ranges of each node, one line per master with slots
  redis-cli -p "$SKV_PORT" cluster nodes | awk 'NF > 8 { $4 = $5 = $6 = ""; print }' | sort
}
settled() {
  local now last="" same=0
  for _ in $(seq 600); do
    now=$(masters 2>/dev/null || true)
    if [ -n "$now" ] && [ "$now" = "$last" ] \
      && redis-cli -p "$SKV_PORT" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
      same=$((same + 1))
      [ "$same" -ge 10 ] && return 0
    else
      same=0
    fi
    last=$now
    sleep 0.5
  done
  return 1
}
settled || { redis-cli -p "$SKV_PORT" cluster nodes >&2 || true; echo "shardkv's slot masters did not settle" >&2; exit 1; }

# --- runs ------------------------------------------------------------------------------
# A generous bound per run: 200 requests/s at the least.
RUN_LIMIT=$(( REQUESTS / 100 + 120 ))

# bench SYSTEM PIPELINE: one redis-benchmark run (SET then GET); prints "SET_RPS GET_RPS
# ERRORS", a figure "failed" when the run did not finish.
bench() {
  local sys=$1 pipeline=$2 args out
  args=(-h 127.0.0.1 -t set,get -c "$CLIENTS" -n "$REQUESTS" -d "$VALUE_BYTES" --csv)
  if [ "$pipeline" != 1 ]; then args+=(-P "$pipeline"); fi
  if [ "$sys" = redis ]; then args+=(-p "$REDIS_PORT"); else args+=(--cluster -p "$SKV_PORT"); fi
  out=$TMP/run
  if ! timeout "$RUN_LIMIT" redis-benchmark "${args[@]}" >"$out.csv" 2>"$out.err"; then
    log "redis-benchmark on $sys failed: $(tail -n 3 "$out.err" | tr '\n' ' ')"
    echo "failed failed 0"
    return
  fi
  # CSV lines: "test","rps","avg_latency_ms",...; cluster mode prints its node list first.
  local set get errors
  set=$(awk -F'"' '$2 == "SET" { printf "%.0f", $4 }' "$out.csv")
  get=$(awk -F'"' '$2 == "GET" { printf "%.0f", $4 }' "$out.csv")
  errors=$(grep -ci 'error' "$out.err" || true)
  echo "${set:-failed} ${get:-failed} $errors"
}

ROWS=()
stopped=0
for r in $(seq "$REPEATS"); do
  for pipeline in 1 16; do
    if [ "$SECONDS" -gt "$TIME_LIMIT" ]; then stopped=1; break 2; fi
    declare -A set=() get=() load=()
    for sys in redis shardkv; do
      before=$(load1)
      log "run $r/$REPEATS -P $pipeline on $sys"
      read -r s g errs < <(bench "$sys" "$pipeline")
      if [ "$errs" != 0 ]; then s+=" ($errs error lines)"; g+=" ($errs error lines)"; fi
      set[$sys]=$s
      get[$sys]=$g
      load[$sys]="$before→$(load1)"
    done
    name="-P $pipeline"
    [ "$pipeline" = 1 ] && name="no pipeline"
    for t in SET GET; do
      if [ "$t" = SET ]; then a=${set[shardkv]}; b=${set[redis]}; else a=${get[shardkv]}; b=${get[redis]}; fi
      ratio=$(awk -v a="${a%% *}" -v b="${b%% *}" \
        'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f×", a / b; else print "-" }')
      ROWS+=("$t, $name|$r|$b|$a|$ratio|${load[redis]}|${load[shardkv]}")
    done
  done
done

# --- the table -------------------------------------------------------------------------
echo
echo "shardkv (Redis Cluster front end, redis-benchmark --cluster) vs $(redis-server --version | awk '{print $3}' | tr -d 'v=') (appendonly yes, appendfsync always), loopback;"
echo "shardkv up: 3 members, 2 shard groups, every write on a majority and fsynced before its reply;"
echo "redis-benchmark -t set,get -c $CLIENTS -n $REQUESTS -d $VALUE_BYTES; $(nproc) CPUs; ratio = shardkv / Redis"
echo
echo "| workload | run | Redis req/s | shardkv req/s | ratio | load Redis run | load shardkv run |"
echo "|---|---|---|---|---|---|---|"
for row in "${ROWS[@]}"; do echo "| ${row//|/ | } |"; done
if [ "$stopped" = 1 ]; then echo "(stopped early: --time-limit $TIME_LIMIT s reached)"; fi
