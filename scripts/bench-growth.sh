#!/usr/bin/env bash
# What shardkv costs as the work grows, on this machine: fresh `shardkv up` clusters on
# loopback (3 members, data under a temporary /tmp/growth-* directory, deleted after each
# case), measured with `shardkv bench`, one markdown table per step with the 1-minute load
# average next to every figure. Every figure is measured --repeats times (default 2).
#
# Steps (--steps values,restart,snapshots,memory,groups; all by default):
#   values   puts/s and linearizable gets/s vs value size (256 B, 1, 4, 16, 64 KiB),
#            --clients sessions, 1000 keys filled with values of that size first; 1 group.
#            With --out-dir DIR, also one puts sweep (`shardkv bench --sweep value=...`)
#            whose CSV and SVG plots go to DIR.
#   restart  time from starting every member (`shardkv up` again on the stopped cluster's
#            directory) until each member answers /readyz (it knows a leader) and until it
#            has applied all the group had committed before the stop (the load is followed
#            by a wait until every member applied it), for four data shapes (1 group,
#            --restart-value values):
#              history   --big-mib of overwrites of 1000 keys, snapshots on (default
#                        --max-raft-state): a long history, a short tail, little live data
#              tail-S    S MiB of overwrites of 1000 keys with --max-raft-state off: the
#                        whole history is the log tail the restart replays (--tails-mib)
#              live      --big-mib of live data: distinct keys written once (bench --fill),
#                        snapshots on
#   snapshots  loading --big-mib / 2 of live data (bench --fill, --restart-value values)
#            with snapshots on (default --max-raft-state) and off, alternately: load time,
#            puts/s, leader elections in group 1 and snapshots saved while loading.
#   memory   VmRSS of each member with --memory-keys keys of 256 B (bench --fill), minus
#            the same member's RSS in the empty cluster, per key; also after a restart.
#   groups   puts/s and linearizable gets/s (256 clients, 256 B) with `shardkv up
#            --groups 1`, 2 and 4, a fresh cluster each time, alternating 1 2 4 1 2 4.
#
# Usage: scripts/bench-growth.sh [--quick] [--steps LIST] [--repeats 2] [--duration 5s]
#          [--clients 64] [--big-mib 1024] [--tails-mib 256,1024] [--restart-value 4096]
#          [--memory-keys 1000000] [--bin PATH] [--time-limit SECONDS] [--min-free-gib 15]
#          [--out-dir DIR] [--keep]
# --quick: small sizes (64 MiB, tails 16,64 MiB, 100000 keys, 2 s runs) to check the
# script in a few minutes. A full run takes 20-25 minutes on 2 CPUs.
#
# Builds the release binary (`cargo build --release -p shardkv`, honouring
# CARGO_TARGET_DIR) unless --bin is given; installs jq when missing. Every cluster it starts
# is stopped on exit (also on Ctrl-C or an error) and its data deleted; a watchdog stops
# the running cluster if the root filesystem's free space drops under --min-free-gib (15).
# Every bench run and every wait is bounded, and all the steps together by --time-limit
# (default 5400 s: a step that would start after it is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

STEPS=values,restart,snapshots,memory,groups
REPEATS=2
DURATION=5s
CLIENTS=64
BIG_MIB=1024
TAILS_MIB=256,1024
RESTART_VALUE=4096
MEMORY_KEYS=1000000
BIN=
TIME_LIMIT=5400
MIN_FREE_GIB=15
KEEP=0
QUICK=0
OUT_DIR=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --steps) STEPS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --big-mib) BIG_MIB=$2; shift 2 ;;
    --tails-mib) TAILS_MIB=$2; shift 2 ;;
    --restart-value) RESTART_VALUE=$2; shift 2 ;;
    --memory-keys) MEMORY_KEYS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --time-limit) TIME_LIMIT=$2; shift 2 ;;
    --min-free-gib) MIN_FREE_GIB=$2; shift 2 ;;
    --out-dir) OUT_DIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  BIG_MIB=64; TAILS_MIB=16,64; MEMORY_KEYS=100000; DURATION=2s
fi
for n in REPEATS CLIENTS BIG_MIB RESTART_VALUE MEMORY_KEYS TIME_LIMIT MIN_FREE_GIB; do
  case "${!n}" in ''|*[!0-9]*) echo "--$(echo "$n" | tr 'A-Z_' 'a-z-') must be a number" >&2; exit 2 ;; esac
done
[ "$REPEATS" -ge 1 ] || { echo "--repeats must be at least 1" >&2; exit 2; }

log() { echo "bench-growth: $*" >&2; }
# shellcheck source=scripts/lib/common.sh
. "$(dirname "$0")/lib/common.sh"

# --- what it needs ---------------------------------------------------------------------
need_jq
command -v curl >/dev/null 2>&1 || { echo "curl is needed" >&2; exit 1; }
ensure_bin
SECONDS=0

# --- the cluster, stopped and deleted on any exit --------------------------------------
TMP=$(mktemp -d /tmp/growth-XXXXXX)
UP_PID=
WATCH_PID=
stop_cluster() {
  [ -n "$UP_PID" ] || return 0
  kill -TERM "$UP_PID" 2>/dev/null || true
  # `up` gives its members 5 s to stop, then kills them.
  for _ in $(seq 300); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$UP_PID" 2>/dev/null || true
  wait "$UP_PID" 2>/dev/null || true
  UP_PID=
  rm -f "$TMP/up.pid"
}
POLLERS=()
cleanup() {
  local p
  for p in "${POLLERS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_cluster
  if [ -n "$WATCH_PID" ]; then kill "$WATCH_PID" 2>/dev/null || true; wait "$WATCH_PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_gib() { df -P -B1G / | awk 'NR == 2 { print $4 }'; }

# The watchdog: stops the running cluster (its `up`, which stops the members) when the
# disk gets too full; the step then fails and the script goes on to delete the data.
(
  while sleep 2; do
    if [ "$(free_gib)" -lt "$MIN_FREE_GIB" ] && [ -s "$TMP/up.pid" ]; then
      echo "bench-growth: free space under $MIN_FREE_GIB GiB: stopping the cluster" >&2
      kill -TERM "$(cat "$TMP/up.pid")" 2>/dev/null || true
    fi
  done
) &
WATCH_PID=$!


# start_cluster DIR GROUPS [UP ARGS...]: `shardkv up` on DIR (fresh or stopped before, on
# the same ports), returns once it printed its endpoints. Sets UP_PID, BASE, EPS.
BASE=
EPS=
start_cluster() {
  local dir=$1 groups=$2; shift 2
  [ -n "$BASE" ] || BASE=$(pick_base 0 1 2 1000 1001 1002) || { echo "no free ports found" >&2; return 1; }
  EPS="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2))"
  mkdir -p "$dir"
  : >"$dir.up.log"
  "$BIN" up --groups "$groups" --base-port "$BASE" --data-dir "$dir" "$@" >>"$dir.up.log" 2>&1 &
  UP_PID=$!
  echo "$UP_PID" >"$TMP/up.pid"
}
wait_up() { # DIR: waits (at most 10 min: a restart may replay a long log) for `up` to be ready
  local dir=$1
  for _ in $(seq 6000); do
    grep -q '^stop:' "$dir.up.log" && return 0
    kill -0 "$UP_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$dir.up.log" >&2
  echo "shardkv up did not come up (see above)" >&2
  return 1
}
fresh_cluster() { # NAME GROUPS [UP ARGS...]: three tries (a port may be taken meanwhile)
  local name=$1; shift
  for _ in 1 2 3; do
    BASE=
    start_cluster "$TMP/$name" "$@"
    wait_up "$TMP/$name" && return 0
    drop_cluster "$name"
  done
  return 1
}
drop_cluster() { # NAME: stops the cluster and deletes its data
  stop_cluster
  rm -rf "${TMP:?}/$1" "$TMP/$1.up.log"
}

RUN_LIMIT=$(( $(secs "$DURATION") + 60 ))

# bench ARGS...: one bounded run against the running cluster, its JSON report on stdout.
bench() {
  timeout "$RUN_LIMIT" "$BIN" bench --endpoints "$EPS" -w json "$@"
}
# fill PREFIX KEYS VALUE_SIZE: writes each key once (bounded by 30 min).
fill() {
  timeout 1900 "$BIN" bench --endpoints "$EPS" -w json --fill --key-prefix "$1" --keys "$2" \
    --value-size "$3" --clients 256 --warmup 0s --duration 30m
}
# overwrite OPS VALUE_SIZE: OPS puts over 1000 keys (bounded by 30 min).
overwrite() {
  timeout 1900 "$BIN" bench --endpoints "$EPS" -w json --key-prefix ow- --keys 1000 \
    --ops "$1" --value-size "$2" --clients 256 --warmup 0s --duration 30m
}
errors() { jq -r '[(.errors // {})[]] | add // 0' "$1"; }
# summary JSON: "ops/s (p99 ms)" of the writes or reads (KIND) of a report.
summary() {
  jq -r --arg k "$2" '.[$k] as $x | if ($x.ops // 0) == 0 then "-" else
    "\($x.ops_per_s | round) (p99 \($x.latency_us.p99 / 1000 * 10 | round / 10) ms)" end' "$1"
}
mib_per_s() { # JSON KIND VALUE_SIZE
  jq -r --arg k "$2" --argjson v "$3" '(.[$k].ops_per_s // 0) * $v / 1048576 * 10 | round / 10' "$1"
}
over_time() { [ "$SECONDS" -gt "$TIME_LIMIT" ]; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# Member i's pid: the child of `up` running `server --id i`.
member_pid() {
  local pid
  for pid in $(pgrep -P "$UP_PID"); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--id $1 "; then
      echo "$pid"; return 0
    fi
  done
  return 1
}
# MiB member i has written to storage since it started (/proc/PID/io write_bytes).
written_mib() { awk '/^write_bytes:/ { printf "%.0f", $2 / 1048576 }' "/proc/$(member_pid "$1")/io"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$(member_pid "$1")/status"; }
admin() { echo "http://127.0.0.1:$((BASE + $1 - 1 + 1000))"; }
# Member i's own row of every group it hosts, as "gid value" lines (value: a status field);
# a few tries (a busy member may not answer /status within its bound).
member_field() { # i FIELD [TRIES (5)]
  local out
  for _ in $(seq "${3:-5}"); do
    if out=$(curl -s -m 3 "$(admin "$1")/status" \
      | jq -r --argjson m "$1" --arg f "$2" '.groups[] | .gid as $g | .members[] | select(.id == $m) | "\($g) \(.[$f])"') \
      && [ -n "$out" ]; then
      echo "$out"; return 0
    fi
    sleep 0.5
  done
  return 1
}
# Whether member i has applied, in every group, at least what TARGETS ("gid index" lines) say.
caught_up() { # i TARGETS
  local now_applied
  now_applied=$(member_field "$1" applied 1 2>/dev/null) || return 1
  [ -n "$now_applied" ] || return 1
  awk 'NR == FNR { want[$1] = $2; next } { have[$1] = $2 }
       END { for (g in want) if (!(g in have) || have[g] + 0 < want[g] + 0) exit 1 }' \
    <(echo "$2") <(echo "$now_applied")
}

# --- step: values ----------------------------------------------------------------------
VALUE_SIZES=(256 1024 4096 16384 65536)
step_values() {
  local r v rows=() f
  fresh_cluster values 1
  for v in "${VALUE_SIZES[@]}"; do
    log "values: filling 1000 keys with $v B values"
    fill "v$v-" 1000 "$v" >"$TMP/fill.json"
  done
  for r in $(seq "$REPEATS"); do
    for v in "${VALUE_SIZES[@]}"; do
      over_time && break 2
      log "values: run $r, $v B, puts then gets"
      local lp lg
      lp=$(load1)
      bench --clients "$CLIENTS" --keys 1000 --key-prefix "v$v-" --value-size "$v" \
        --duration "$DURATION" >"$TMP/p.json" || echo '{}' >"$TMP/p.json"
      lg=$(load1)
      bench --clients "$CLIENTS" --keys 1000 --key-prefix "v$v-" --value-size "$v" \
        --duration "$DURATION" --read-ratio 1 >"$TMP/g.json" || echo '{}' >"$TMP/g.json"
      f="$v|$r|$(summary "$TMP/p.json" writes)|$(mib_per_s "$TMP/p.json" writes "$v")|$lp"
      f+="|$(summary "$TMP/g.json" reads)|$(mib_per_s "$TMP/g.json" reads "$v")|$lg→$(load1)"
      f+="|$(( $(errors "$TMP/p.json") + $(errors "$TMP/g.json") ))"
      rows+=("$f")
    done
  done
  if [ -n "$OUT_DIR" ] && ! over_time; then
    log "values: puts sweep, plots in $OUT_DIR"
    mkdir -p "$OUT_DIR"
    timeout $(( RUN_LIMIT * ${#VALUE_SIZES[@]} )) "$BIN" bench --endpoints "$EPS" \
      --sweep "value=$(IFS=,; echo "${VALUE_SIZES[*]}")" --clients "$CLIENTS" --keys 1000 \
      --duration "$DURATION" --out-dir "$OUT_DIR" >/dev/null || log "values: the sweep failed"
  fi
  drop_cluster values
  echo
  echo "### Throughput vs value size ($CLIENTS clients, 1000 keys, $DURATION per run, shardkv up --groups 1)"
  echo
  echo "| value B | run | puts/s | puts MiB/s | load | lin. gets/s | gets MiB/s | load | errors |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for f in "${rows[@]}"; do echo "| ${f//|/ | } |"; done
}

# --- step: restart ---------------------------------------------------------------------
# restart_case NAME "DESCRIPTION" LOAD_CMD... : a fresh cluster with up args from
# CASE_UP_ARGS, loaded by LOAD_CMD, then stopped and restarted --repeats times.
CASE_UP_ARGS=()
RESTART_ROWS=()
restart_case() {
  local name=$1 what=$2; shift 2
  local need=$(( BIG_MIB * 3 * 3 / 1024 + MIN_FREE_GIB + 1 ))
  if [ "$(free_gib)" -lt "$need" ]; then
    log "restart $name: skipped, needs $need GiB free, $(free_gib) GiB are"
    RESTART_ROWS+=("$name|$what|-|skipped: disk|-|-|-|-|-")
    return 0
  fi
  fresh_cluster "$name" 1 "${CASE_UP_ARGS[@]}"
  log "restart $name: loading ($what)"
  local t0 took
  t0=$(now)
  if ! "$@" >"$TMP/load.json"; then
    log "restart $name: loading failed"; drop_cluster "$name"
    RESTART_ROWS+=("$name|$what|-|load failed|-|-|-|-|-")
    return 0
  fi
  took=$(since "$t0")
  local i targets settle written state snap disk elections
  # Restarts measure recovery, not a follower's lag: first let every member apply what the
  # group committed (a member that fell behind during the load catches up here).
  t0=$(now)
  if targets=$(wait_settled 300); then settle=$(since "$t0"); else settle="not within 300"; fi
  written=$(written_mib 1 || echo '?')
  state=$( (member_field 1 raft_state_bytes || true) | awk '$1 == 1 { printf "%.0f", $2 / 1048576 }')
  snap=$( (member_field 1 snapshot_index || true) | awk '$1 == 1 { print $2 }')
  elections=$(cat "$TMP/$name"/n[123].log | grep -c 'gid=1 .*role=Leader' || true)
  stop_cluster
  disk=$(du -sm "$TMP/$name/n1" | cut -f1)
  log "restart $name: loaded in ${took}s, $elections leader election(s) in group 1, members settled in ${settle}s; member 1: group 1 log since snapshot $state MiB, snapshot index $snap, $disk MiB on disk, $written MiB written"
  local r ld
  for r in $(seq "$REPEATS"); do
    ld=$(load1)
    t0=$(now)
    start_cluster "$TMP/$name" 1 "${CASE_UP_ARGS[@]}"
    local pollers=() ready=() applied=()
    for i in 1 2 3; do
      poll_member "$i" "$t0" "$targets" >"$TMP/poll-$i" &
      pollers+=($!)
      POLLERS+=($!)
    done
    for i in "${pollers[@]}"; do wait "$i" || true; done
    for i in 1 2 3; do read -r "ready[$i]" "applied[$i]" <"$TMP/poll-$i" || true; done
    RESTART_ROWS+=("$name|$what|$r|${ready[1]:--} / ${ready[2]:--} / ${ready[3]:--} s|${applied[1]:--} / ${applied[2]:--} / ${applied[3]:--} s|$state MiB, snapshot at $snap|$disk MiB|$written MiB in ${took}s, $elections elections, settled in ${settle}s|$ld→$(load1)")
    wait_up "$TMP/$name" || true
    stop_cluster
  done
  drop_cluster "$name"
}
# poll_member i T0 TARGETS: prints the seconds since T0 at which member i first answered
# /readyz with 200 and first had applied TARGETS ("-" if not within 10 minutes). A request
# to a member still recovering waits in its listen backlog (the admin port is bound before
# the storage is read, served after), so the time is when it is first served.
poll_member() {
  local i=$1 t0=$2 want=$3 up_at='' caught_at=''
  for _ in $(seq 6000); do
    if [ -z "$up_at" ] && [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$(admin "$i")/readyz")" = 200 ]; then
      up_at=$(since "$t0")
    fi
    if [ -z "$caught_at" ] && caught_up "$i" "$want"; then caught_at=$(since "$t0"); fi
    [ -n "$up_at" ] && [ -n "$caught_at" ] && break
    awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a > 600) }' && break
    sleep 0.05
  done
  echo "${up_at:--} ${caught_at:--}"
}
# wait_settled SECONDS: waits until, in every group, every member has applied the highest
# commit index any member reports; prints that index per group ("gid index" lines).
wait_settled() {
  local deadline=$(( SECONDS + $1 )) rows i
  while [ "$SECONDS" -le "$deadline" ]; do
    rows=$(for i in 1 2 3; do member_field "$i" commit 1 | sed "s/^/$i c /"; member_field "$i" applied 1 | sed "s/^/$i a /"; done 2>/dev/null || true)
    if echo "$rows" | awk '$2 == "c" { if ($4 > c[$3]) c[$3] = $4 } $2 == "a" { n[$3]++; if (!($3 in a) || $4 < a[$3]) a[$3] = $4 }
        END { if (length(c) == 0) exit 1; for (g in c) if (n[g] < 3 || a[g] < c[g]) exit 1 }'; then
      echo "$rows" | awk '$2 == "c" { if ($4 > c[$3]) c[$3] = $4 } END { for (g in c) print g, c[g] }'
      return 0
    fi
    sleep 0.5
  done
  return 1
}
step_restart() {
  local big_ops=$(( BIG_MIB * 1048576 / RESTART_VALUE )) t
  CASE_UP_ARGS=()
  restart_case history "$BIG_MIB MiB overwriting 1000 keys, snapshots on" overwrite "$big_ops" "$RESTART_VALUE"
  for t in ${TAILS_MIB//,/ }; do
    over_time && break
    CASE_UP_ARGS=(--max-raft-state off)
    restart_case "tail-$t" "$t MiB overwriting 1000 keys, snapshots off" \
      overwrite $(( t * 1048576 / RESTART_VALUE )) "$RESTART_VALUE"
  done
  CASE_UP_ARGS=()
  over_time || restart_case live "$BIG_MIB MiB of live data ($big_ops keys), snapshots on" \
    fill live- "$big_ops" "$RESTART_VALUE"
  echo
  echo "### Restart time ($RESTART_VALUE B values, shardkv up --groups 1; members n1 / n2 / n3, from starting them)"
  echo
  echo "| case | data | run | /readyz 200 | applied all the group had committed | n1's group-1 log tail | n1 data dir | n1 wrote while loading | load |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for f in "${RESTART_ROWS[@]}"; do echo "| ${f//|/ | } |"; done
}

# --- step: snapshots -----------------------------------------------------------------
step_snapshots() {
  local keys=$(( BIG_MIB * 1048576 / 2 / RESTART_VALUE )) r mode rows=() ld took el saved
  for r in $(seq "$REPEATS"); do
    for mode in on off; do
      over_time && break 2
      local args=()
      [ "$mode" = off ] && args=(--max-raft-state off)
      # The node's debug lines include "snapshot saved".
      RUST_LOG=info,shardkv_server::node=debug fresh_cluster "snap-$mode" 1 "${args[@]}"
      log "snapshots $mode: run $r, loading $keys keys of $RESTART_VALUE B"
      ld=$(load1)
      fill live- "$keys" "$RESTART_VALUE" >"$TMP/fill.json" || echo '{}' >"$TMP/fill.json"
      took=$(jq -r '(.measured_s // 0) * 10 | round / 10' "$TMP/fill.json")
      el=$(cat "$TMP/snap-$mode"/n[123].log | grep -c 'gid=1 .*role=Leader' || true)
      saved=$(cat "$TMP/snap-$mode"/n[123].log | grep -c 'gid=1 .*snapshot saved' || true)
      rows+=("$mode|$r|${took}s|$(jq -r '(.writes.ops_per_s // 0) | round' "$TMP/fill.json")|$el|$saved|$ld→$(load1)|$(errors "$TMP/fill.json")")
      drop_cluster "snap-$mode"
    done
  done
  echo
  echo "### Loading $(( BIG_MIB / 2 )) MiB of live data ($keys keys × $RESTART_VALUE B, 256 clients), snapshots on and off"
  echo
  echo "| snapshots | run | load time | puts/s | group-1 leader elections | snapshots saved (3 members) | load | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  for f in "${rows[@]}"; do echo "| ${f//|/ | } |"; done
}

# --- step: memory ----------------------------------------------------------------------
step_memory() {
  local r i rows=() before=() after=() restarted=() ld
  for r in $(seq "$REPEATS"); do
    over_time && break
    fresh_cluster memory 1
    for i in 1 2 3; do before[i]=$(rss_kib "$i"); done
    ld=$(load1)
    log "memory: run $r, filling $MEMORY_KEYS keys of 256 B"
    fill m- "$MEMORY_KEYS" 256 >"$TMP/fill.json" || log "memory: the fill failed"
    local loaded
    loaded=$(jq -r '.writes.ops // 0' "$TMP/fill.json")
    for i in 1 2 3; do after[i]=$(rss_kib "$i"); done
    stop_cluster
    start_cluster "$TMP/memory" 1
    wait_up "$TMP/memory"
    for i in 1 2 3; do restarted[i]=$(rss_kib "$i"); done
    for i in 1 2 3; do
      rows+=("$r|n$i|$loaded|$(( before[i] / 1024 ))|$(( after[i] / 1024 ))|$(awk -v a="${after[i]}" -v b="${before[i]}" -v k="$loaded" 'BEGIN { printf "%.0f", (a - b) * 1024 / k }')|$(( restarted[i] / 1024 ))|$(awk -v a="${restarted[i]}" -v b="${before[i]}" -v k="$loaded" 'BEGIN { printf "%.0f", (a - b) * 1024 / k }')|$ld→$(load1)")
    done
    drop_cluster memory
  done
  echo
  echo "### Memory per key ($MEMORY_KEYS keys of 256 B, keys of 10 bytes, shardkv up --groups 1)"
  echo
  echo "| run | member | keys | RSS empty MiB | RSS loaded MiB | B/key | RSS after restart MiB | B/key | load |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for f in "${rows[@]}"; do echo "| ${f//|/ | } |"; done
}

# --- step: groups ----------------------------------------------------------------------
step_groups() {
  local r g rows=() lp lg
  for r in $(seq "$REPEATS"); do
    for g in 1 2 4; do
      over_time && break 2
      fresh_cluster "groups-$g" "$g"
      fill g- 1000 256 >"$TMP/fill.json"
      log "groups: run $r, $g group(s)"
      lp=$(load1)
      bench --clients 256 --value-size 256 --duration "$DURATION" >"$TMP/p.json" || echo '{}' >"$TMP/p.json"
      lg=$(load1)
      bench --clients 256 --key-prefix g- --keys 1000 --read-ratio 1 --duration "$DURATION" \
        >"$TMP/g.json" || echo '{}' >"$TMP/g.json"
      rows+=("$g|$r|$(summary "$TMP/p.json" writes)|$lp|$(summary "$TMP/g.json" reads)|$lg→$(load1)|$(( $(errors "$TMP/p.json") + $(errors "$TMP/g.json") ))")
      drop_cluster "groups-$g"
    done
  done
  echo
  echo "### Sharded cluster: 1, 2 and 4 groups (256 clients, 256 B, $DURATION per run, fresh cluster each)"
  echo
  echo "| groups | run | puts/s | load | lin. gets/s | load | errors |"
  echo "|---|---|---|---|---|---|---|"
  for f in "${rows[@]}"; do echo "| ${f//|/ | } |"; done
}

echo "bench-growth: $(nproc) CPUs, $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, $(free_gib) GiB free on /; $(date -u +%FT%TZ); load $(load1)"
for step in ${STEPS//,/ }; do
  if over_time; then log "time limit reached: skipping $step"; continue; fi
  case "$step" in
    values) step_values ;;
    restart) step_restart ;;
    snapshots) step_snapshots ;;
    memory) step_memory ;;
    groups) step_groups ;;
    *) echo "unknown step: $step" >&2; exit 2 ;;
  esac
done
echo
echo "bench-growth: done in ${SECONDS}s; load $(load1)"
