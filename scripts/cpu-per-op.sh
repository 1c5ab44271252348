#!/usr/bin/env bash
# Whole-cluster CPU per operation: a fresh 3-member `shardkv up` (one shard group) on
# loopback, then for each workload a `shardkv bench` run, and the CPU the three member
# processes used during that run (the sum of their utime + stime from /proc/<pid>/stat,
# before and after) divided by the operations that succeeded. Also ops/s and the 1-minute
# load average before and after each run, and the members' idle CPU (what ticks and
# heartbeats cost with no load), which is included in each run's figure.
#
# Workloads (256-byte values, keys drawn uniformly from 1000; each run is measured from its
# first operation: `--warmup 0s`, after a separate short warm-up run that is not counted):
#   puts       --clients C, puts only                  CPU µs per replicated write
#   lin-gets   --clients C, linearizable gets only     CPU µs per linearizable read
#
# Usage: scripts/cpu-per-op.sh [--bin PATH] [--duration 10s] [--clients 256]
#          [--repeats 1] [--workloads puts,lin-gets] [--time-limit SECONDS] [--keep]
# Builds the release binary (`cargo build --release -p shardkv`, honouring CARGO_TARGET_DIR)
# unless --bin is given. Prints one table row per run; the same rows go to stderr as they
# finish. Everything it starts is stopped on exit; every wait and run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BIN=
DURATION=10s
CLIENTS=256
REPEATS=1
WORKLOADS=puts,lin-gets
TIME_LIMIT=1800
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --time-limit) TIME_LIMIT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$CLIENTS" "$REPEATS"; do
  case "$n" in ''|*[!0-9]*|0) echo "--clients and --repeats must be positive numbers" >&2; exit 2 ;; esac
done
case "$TIME_LIMIT" in ''|*[!0-9]*) echo "--time-limit must be seconds" >&2; exit 2 ;; esac

log() { echo "cpu-per-op: $*" >&2; }
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"

need_jq
ensure_bin
SECONDS=0
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cpu-per-op.XXXXXX")
UP_PID=
cleanup() {
  if [ -n "$UP_PID" ]; then
    kill -TERM "$UP_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BASE=$(pick_base 0 1 2 1000 1001 1002) || { echo "no 3 free consecutive ports found" >&2; exit 1; }
EPS="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))"

"$BIN" up --groups 1 --base-port "$BASE" --data-dir "$TMP/data" >"$TMP/up.log" 2>&1 &
UP_PID=$!
log "waiting for shardkv up ($EPS)"
for _ in $(seq 1200); do
  grep -q '^stop:' "$TMP/up.log" && break
  kill -0 "$UP_PID" 2>/dev/null || break
  sleep 0.1
done
grep -q '^stop:' "$TMP/up.log" || { tail -n 20 "$TMP/up.log" >&2; echo "shardkv up did not come up" >&2; exit 1; }

# The member processes: `up`'s children.
read -r -a MEMBERS <<<"$(cat /proc/"$UP_PID"/task/*/children)"
[ "${#MEMBERS[@]}" = 3 ] || { echo "expected 3 member processes, found: ${MEMBERS[*]}" >&2; exit 1; }
log "members: ${MEMBERS[*]}"

# The members' CPU so far, in clock ticks (utime + stime: fields 14 and 15 of
# /proc/<pid>/stat, counted after the `(comm)` field, which may hold spaces).
cluster_ticks() {
  local pid total=0 rest
  for pid in "${MEMBERS[@]}"; do
    rest=$(sed 's/^.*) //' "/proc/$pid/stat")
    # shellcheck disable=SC2086
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
RUN_LIMIT=$(( $(secs "$DURATION") + 60 ))

bench() {
  timeout "$RUN_LIMIT" "$BIN" bench --endpoints "$EPS" --value-size 256 --keys 1000 -w json "$@"
}

log "filling the keys the reads read"
filled=0
for _ in 1 2 3; do
  if bench --clients 32 --key-prefix kv- --ops 5000 --warmup 0s --duration 60s \
    >"$TMP/fill.json" 2>"$TMP/fill.err"; then filled=1; break; fi
  log "filling failed, trying again: $(tail -n 1 "$TMP/fill.err")"
done
[ "$filled" = 1 ] || { echo "cannot fill the keys: $(tail -n 3 "$TMP/fill.err")" >&2; exit 1; }

# Idle: what the cluster costs with no load (ticks, heartbeats), µs of CPU per second.
t0=$(cluster_ticks); sleep 2; t1=$(cluster_ticks)
IDLE=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", d / hz * 1e6 / 2 }')

workload_args() {
  case "$1" in
    puts) echo "--clients $CLIENTS" ;;
    lin-gets) echo "--clients $CLIENTS --read-ratio 1 --key-prefix kv-" ;;
    *) echo "unknown workload $1 (puts, lin-gets)" >&2; return 1 ;;
  esac
}

ROWS=()
IFS=',' read -r -a WLS <<<"$WORKLOADS"
for r in $(seq "$REPEATS"); do
  for w in "${WLS[@]}"; do
    if [ "$SECONDS" -gt "$TIME_LIMIT" ]; then log "--time-limit reached"; break 2; fi
    args=$(workload_args "$w")
    # shellcheck disable=SC2086
    bench $args --duration 1s --warmup 0s >/dev/null 2>&1 || true # warm-up, not counted
    before=$(load1)
    t0=$(cluster_ticks)
    # shellcheck disable=SC2086
    if ! bench $args --duration "$DURATION" --warmup 0s >"$TMP/run.json" 2>"$TMP/run.err"; then
      log "$w run $r failed: $(tail -n 1 "$TMP/run.err")"
      ROWS+=("$w|$r|$CLIENTS|failed|-|-|-|-|$before→$(load1)")
      continue
    fi
    t1=$(cluster_ticks)
    after=$(load1)
    ops=$(jq -r '.total.ops' "$TMP/run.json")
    rate=$(jq -r '.total.ops_per_s | round' "$TMP/run.json")
    errs=$(jq -r '[.errors[]] | add // 0' "$TMP/run.json")
    cpu_s=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    per_op=$(awk -v s="$cpu_s" -v n="$ops" 'BEGIN { if (n > 0) printf "%.1f", s * 1e6 / n; else print "-" }')
    row="$w|$r|$CLIENTS|$per_op|$rate|$ops|$cpu_s|$errs|$before→$after"
    log "${row//|/ | }"
    ROWS+=("$row")
  done
done

echo
echo "shardkv CPU per operation: 3 members (up --groups 1) on loopback, 256 B values, fsync on;"
echo "$(nproc) CPUs; $DURATION per run; CPU = sum of the members' utime+stime over the run;"
echo "idle members: $IDLE µs of CPU per second (included in every run); binary $BIN"
echo
echo "| workload | run | clients | CPU µs/op | ops/s | ops | cluster CPU s | errors | load 1m |"
echo "|---|---|---|---|---|---|---|---|---|"
for row in "${ROWS[@]}"; do echo "| ${row//|/ | } |"; done
