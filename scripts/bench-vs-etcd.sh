#!/usr/bin/env bash
# shardkv against etcd, side by side, on this machine: 3 etcd members and a fresh
# `shardkv up` on loopback (each in its own temporary directory, fsync on as both default),
# every workload run on both alternately (etcd, shardkv, etcd, shardkv, ...) with the same
# closed loop (`shardkv bench --target etcd|shardkv`), then one table: the figure of each
# system, the ratio shardkv / etcd, and the 1-minute load average before and after each run.
#
# Workloads (256-byte values, keys drawn uniformly from 1000):
#   puts-256c      256 clients, puts only                      ops/s
#   lin-gets-256c  256 clients, linearizable gets only         ops/s  (of keys written first)
#   put-1c-p50     1 client, puts only                         p50 latency, ms
#   mixed-64c-p99  64 clients, 50% linearizable gets, 50% puts p99 latency (all ops), ms
#
# Usage: scripts/bench-vs-etcd.sh [--duration 3s] [--warmup 1s] [--repeats 1]
#          [--groups 1] [--sweep clients=1,4,16,64,256] [--out-dir DIR] [--bin PATH]
#          [--time-limit SECONDS] [--keep]
# Defaults make a smoke run (about 1 minute after the build); for figures worth quoting use
# e.g. --duration 10s --repeats 3 on an otherwise idle machine.
#
# Installs etcd from Debian's packages (etcd-server, etcd-client) and jq when missing, builds
# the release binary (`cargo build --release -p shardkv`, honouring CARGO_TARGET_DIR) unless
# --bin is given. Every process it starts is stopped on exit (also on Ctrl-C or an error);
# every wait and every bench run is bounded, and all the runs together by --time-limit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=3s
WARMUP=1s
REPEATS=1
GROUPS_N=1
SWEEP=
OUT_DIR=
BIN=
TIME_LIMIT=1800
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --groups) GROUPS_N=$2; shift 2 ;;
    --sweep) SWEEP=$2; shift 2 ;;
    --out-dir) OUT_DIR=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --time-limit) TIME_LIMIT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$REPEATS" in ''|*[!0-9]*|0) echo "--repeats must be a positive number" >&2; exit 2 ;; esac
case "$TIME_LIMIT" in ''|*[!0-9]*) echo "--time-limit must be seconds" >&2; exit 2 ;; esac

log() { echo "bench-vs-etcd: $*" >&2; }
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"

# --- what it needs ---------------------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  log "installing etcd from Debian's packages"
  apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
need_jq
ensure_bin
# --time-limit bounds what follows (the build above is cargo's business).
SECONDS=0

# --- processes, stopped on any exit ----------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-etcd.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 9 ports: 3 etcd client, 3 etcd peer, 3 shardkv members (and their admin ports, +1000).
BASE=$(pick_base 0 1 2 3 4 5 6 7 8 1006 1007 1008) || { echo "no 9 free consecutive ports found" >&2; exit 1; }

ETCD_CLUSTER=
ETCD_EPS=
for i in 1 2 3; do
  ETCD_CLUSTER+="${ETCD_CLUSTER:+,}e$i=http://127.0.0.1:$((BASE + 2 + i))"
  ETCD_EPS+="${ETCD_EPS:+,}127.0.0.1:$((BASE - 1 + i))"
done
for i in 1 2 3; do
  cport=$((BASE - 1 + i)); pport=$((BASE + 2 + i))
  etcd --name "e$i" --data-dir "$TMP/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$ETCD_CLUSTER" --initial-cluster-token "bench-$$" --initial-cluster-state new \
    >"$TMP/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
SKV_BASE=$((BASE + 6))
SKV_EPS="127.0.0.1:$SKV_BASE,127.0.0.1:$((SKV_BASE + 1)),127.0.0.1:$((SKV_BASE + 2))"
"$BIN" up --groups "$GROUPS_N" --base-port "$SKV_BASE" --data-dir "$TMP/shardkv" >"$TMP/up.log" 2>&1 &
PIDS+=($!)

log "waiting for etcd ($ETCD_EPS) and shardkv ($SKV_EPS, $GROUPS_N group(s))"
wait_for 300 etcdctl --endpoints "$ETCD_EPS" --command-timeout 2s endpoint health \
  || { tail -n 20 "$TMP"/etcd*.log >&2; echo "etcd did not become healthy" >&2; exit 1; }
wait_for 600 grep -q '^stop:' "$TMP/up.log" \
  || { tail -n 20 "$TMP/up.log" >&2; echo "shardkv up did not come up" >&2; exit 1; }

# --- runs ------------------------------------------------------------------------------
RUN_LIMIT=$(( $(secs "$DURATION") + $(secs "$WARMUP") + 60 ))

target_args() { # system
  if [ "$1" = etcd ]; then echo "--target etcd --endpoints $ETCD_EPS"; else echo "--endpoints $SKV_EPS"; fi
}

# bench SYSTEM ARGS...: one run, its JSON report on stdout.
bench() {
  local sys=$1; shift
  # shellcheck disable=SC2046
  timeout "$RUN_LIMIT" "$BIN" bench $(target_args "$sys") --value-size 256 --keys 1000 \
    --duration "$DURATION" --warmup "$WARMUP" -w json "$@"
}


# The keys the read workloads read: 5000 puts over 1000 keys (all but ~0.7% written).
for sys in etcd shardkv; do
  log "filling $sys"
  # shellcheck disable=SC2046
  timeout "$RUN_LIMIT" "$BIN" bench $(target_args "$sys") --clients 32 --keys 1000 \
    --key-prefix kv- --ops 5000 --warmup 0s --duration 60s -w json >"$TMP/fill-$sys.json"
done

WORKLOADS=(puts-256c lin-gets-256c put-1c-p50 mixed-64c-p99)
workload_args() {
  case "$1" in
    puts-256c) echo "--clients 256" ;;
    lin-gets-256c) echo "--clients 256 --read-ratio 1 --key-prefix kv-" ;;
    put-1c-p50) echo "--clients 1" ;;
    mixed-64c-p99) echo "--clients 64 --read-ratio 0.5 --key-prefix kv-" ;;
  esac
}
workload_figure() { # workload: the jq expression of its figure
  case "$1" in
    puts-256c) echo '.writes.ops_per_s | round' ;;
    lin-gets-256c) echo '.reads.ops_per_s | round' ;;
    put-1c-p50) echo '(.writes.latency_us.p50 // 0) / 1000 * 100 | round / 100' ;;
    mixed-64c-p99) echo '(.total.latency_us.p99 // 0) / 1000 * 100 | round / 100' ;;
  esac
}
workload_unit() { case "$1" in *-p50|*-p99) echo ms ;; *) echo ops/s ;; esac; }

ROWS=()
stopped=0
for r in $(seq "$REPEATS"); do
  for w in "${WORKLOADS[@]}"; do
    if [ "$SECONDS" -gt "$TIME_LIMIT" ]; then stopped=1; break 2; fi
    declare -A fig=() load=()
    for sys in etcd shardkv; do
      before=$(load1)
      log "run $r/$REPEATS $w on $sys"
      # shellcheck disable=SC2046
      if bench "$sys" $(workload_args "$w") >"$TMP/run.json"; then
        fig[$sys]=$(jq -r "$(workload_figure "$w")" "$TMP/run.json")
        errs=$(jq -r '[.errors[]] | add // 0' "$TMP/run.json")
        if [ "$errs" != 0 ]; then fig[$sys]+=" ($errs errors)"; fi
      else
        fig[$sys]="failed"
      fi
      load[$sys]="$before→$(load1)"
    done
    ratio=$(awk -v a="${fig[shardkv]%% *}" -v b="${fig[etcd]%% *}" \
      'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f×", a / b; else print "-" }')
    ROWS+=("$w|$r|${fig[etcd]} $(workload_unit "$w")|${fig[shardkv]} $(workload_unit "$w")|$ratio|${load[etcd]}|${load[shardkv]}")
  done
done

if [ -n "$SWEEP" ] && [ "$stopped" = 0 ] && [ "$SECONDS" -le "$TIME_LIMIT" ]; then
  OUT_DIR=${OUT_DIR:-$ROOT/bench-vs-etcd-out}
  dim=${SWEEP%%=*}
  log "sweep $SWEEP on etcd, then on shardkv (plots in $OUT_DIR/shardkv)"
  # A sweep runs one bench per value: bound it by the number of values.
  points=$(echo "${SWEEP#*=}" | tr ',' '\n' | grep -c .)
  RUN_LIMIT=$(( RUN_LIMIT * points ))
  bench etcd --sweep "$SWEEP" --clients 64 --key-prefix kv- --out-dir "$OUT_DIR/etcd" >/dev/null
  bench shardkv --sweep "$SWEEP" --clients 64 --key-prefix kv- --out-dir "$OUT_DIR/shardkv" \
    --compare-csv "$OUT_DIR/etcd/sweep-$dim.csv" >/dev/null
fi

# --- the table -------------------------------------------------------------------------
echo
echo "shardkv vs etcd $(etcd --version | head -n1 | awk '{print $3}'), 3 members each on loopback, 256 B values, fsync on;"
echo "$(nproc) CPUs; $DURATION measured after $WARMUP warmup per run; shardkv up --groups $GROUPS_N; ratio = shardkv / etcd"
echo
echo "| workload | run | etcd | shardkv | ratio | load etcd run | load shardkv run |"
echo "|---|---|---|---|---|---|---|"
for row in "${ROWS[@]}"; do echo "| ${row//|/ | } |"; done
if [ "$stopped" = 1 ]; then echo "(stopped early: --time-limit $TIME_LIMIT s reached)"; fi
if [ -n "$SWEEP" ] && [ -n "$OUT_DIR" ]; then
  echo
  echo "sweep: $OUT_DIR/etcd/sweep-$dim.csv, $OUT_DIR/shardkv/sweep-$dim.csv;"
  echo "both systems: $OUT_DIR/shardkv/sweep-$dim-throughput.svg, $OUT_DIR/shardkv/sweep-$dim-latency.svg"
fi
