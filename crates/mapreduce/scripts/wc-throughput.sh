#!/usr/bin/env bash
# Word-count throughput of `shardkv mr` in MB/s of input: generates 16 files of FILE_SIZE
# (default 3MiB, ~50 MB in all) of pseudo-text, then for each worker count runs a coordinator plus that many workers
# on loopback, REPEAT times, timing from coordinator start to its exit (--linger 0s).
# Also times the sequential reference run once. A benchmark, not a test.
#
# usage: crates/mapreduce/scripts/wc-throughput.sh [SHARDKV_BINARY] [WORKER_COUNTS] [REPEAT]
#   e.g. crates/mapreduce/scripts/wc-throughput.sh target/release/shardkv "1 2" 3
set -euo pipefail
bin=$(realpath "${1:-target/release/shardkv}")
counts=${2:-"1 2"}
repeat=${3:-3}
work=$(mktemp -d /tmp/mr-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin" mr gen-text --dir in --files 16 --size "${FILE_SIZE:-3MiB}" --seed 7 >/dev/null
bytes=$(cat in/*.txt | wc -c)
echo "input: $(ls in | wc -l) files, $bytes bytes; $(nproc) cores"
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }
start=$(date +%s.%N)
RUST_LOG=warn "$bin" mr sequential --app wc --out seq-out in/*.txt
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
echo "sequential: ${secs}s $(mbps "$secs") MB/s"
for n in $counts; do
  for run in $(seq "$repeat"); do
    rm -rf out && mkdir out
    start=$(date +%s.%N)
    RUST_LOG=warn timeout 600 "$bin" mr coordinator --listen 127.0.0.1:0 --addr-file out/addr \
      --linger 0s in/*.txt &
    coordinator=$!
    for _ in $(seq "$n"); do
      RUST_LOG=warn timeout 600 "$bin" mr worker --app wc --dir out --coordinator-file out/addr &
    done
    wait "$coordinator"
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    wait
    if ! cmp -s <(cat out/mr-out-* | sort) <(sort seq-out); then
      echo "output differs from sequential!" >&2
      exit 1
    fi
    echo "workers=$n run=$run: ${secs}s $(mbps "$secs") MB/s"
  done
done
