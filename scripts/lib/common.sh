# shellcheck shell=bash
# Helpers shared by the benchmark scripts (bench-vs-etcd.sh, bench-vs-redis.sh,
# cpu-per-op.sh, bench-growth.sh): sourced, never run.

# The 1-minute load average.
load1() { cut -d' ' -f1 /proc/loadavg; }

# secs DURATION: a humantime duration like 3s, 500ms, 1m as whole seconds, rounded up.
secs() {
  case "$1" in
    *ms) echo $(( (${1%ms} + 999) / 1000 )) ;;
    *s) echo "${1%s}" ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *) echo 60 ;;
  esac
}

# port_taken PORT: something accepts connections on 127.0.0.1:PORT.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_base OFFSET...: a base port whose base+OFFSET ports are all free, below the
# ephemeral range (32768 and up on Linux by default) that the bench's own connections use.
pick_base() {
  local base i ok
  for _ in $(seq 100); do
    base=$((12000 + RANDOM % 19000))
    ok=1
    for i in "$@"; do
      if port_taken $((base + i)); then ok=0; break; fi
    done
    [ "$ok" = 1 ] && { echo "$base"; return 0; }
  done
  return 1
}

# jq, installed from Debian's packages when missing. Uses the script's log().
need_jq() {
  if ! command -v jq >/dev/null 2>&1; then
    log "installing jq"
    apt-get update -qq && apt-get install -y -qq jq >/dev/null
  fi
}

# BIN: the shardkv binary to measure, as given, or a fresh release build (ROOT: the repo).
ensure_bin() {
  if [ -z "$BIN" ]; then
    log "building the release binary"
    cargo build --release -p shardkv >&2
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/shardkv"
  fi
  [ -x "$BIN" ] || { echo "no shardkv binary at $BIN" >&2; exit 1; }
}

# wait_for TENTHS CMD...: polls CMD until it succeeds, at most TENTHS tenths of a second.
wait_for() {
  local tenths=$1; shift
  for _ in $(seq "$tenths"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# stop_pid PID [TENTHS]: SIGTERM, a bounded wait (default 10 s: `up` gives its members 5 s
# before it kills them), then SIGKILL; reaps it. For the script's own children.
stop_pid() {
  local pid=$1 tenths=${2:-100}
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
