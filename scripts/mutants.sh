#!/usr/bin/env bash
# Mutation check of the fuzzers: plants each known bug in a scratch copy of the tree, builds
# the fuzz binary, and runs the fuzzer(s) the mutant names on fresh seeds (a range CI never
# runs, from 1,000,000) until the first failure or the seed budget. Prints a table: mutant,
# fuzzer, seeds until found (or "not found in N"), wall time. A mutant the fuzzers do not
# find is a hole in the fuzzers (or, see docs/mutants.md, a bug that cannot do harm).
#
# Not run in CI: it builds once per mutant and may take tens of minutes.
#
# Usage: scripts/mutants.sh [--only NAME] [--seeds N] [--kv-seeds N] [--fuzzers LIST]
#                           [--baseline] [--rev REV] [--first SEED]
#   --only NAME     run only the mutant scripts/mutants/NAME.patch (repeatable)
#   --seeds N       Raft fuzz seed budget per mutant (default 10000)
#   --kv-seeds N    KV fuzz seed budget per mutant (default 1000; a KV seed costs ~40 Raft seeds)
#   --ctrl-seeds N  controller fuzz seed budget per mutant (default 10000)
#   --sharded-seeds N  sharded store fuzz seed budget per mutant (default 10000; ~12 ms a seed)
#   --fuzzers LIST  run these fuzzers (comma-separated: raft,kv,ctrl,sharded) for every mutant instead of
#                   the ones each mutant file names
#   --baseline      also run the unmodified code on the same seeds (must find nothing)
#   --rev REV       test the fuzzers of git revision REV instead of the working tree
#   --first SEED    first seed of the fresh range (default 1000000)
#
# Mutants are data: scripts/mutants/NAME.patch is a unified diff applied with `git apply`,
# with a header of `# fuzzers: raft kv` (which fuzzers should find it), `# plants: ...`, and
# optionally `# requires: PATH` (skipped while PATH is absent, e.g. crates/ctrl). A mutant
# that no longer applies (the code moved) fails the script, naming the mutant.
#
# Scratch state lives under $MUTANTS_DIR (default /tmp/shardkv-mutants): a pristine export,
# the mutated tree, and one CARGO_TARGET_DIR reused between runs so rebuilds are incremental.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${MUTANTS_DIR:-/tmp/shardkv-mutants}"
raft_seeds=10000
kv_seeds=1000
ctrl_seeds=10000
sharded_seeds=10000
first=1000000
baseline=0
rev=""
fuzzers_override=""
only=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) only+=("$2"); shift 2 ;;
    --seeds) raft_seeds="$2"; shift 2 ;;
    --kv-seeds) kv_seeds="$2"; shift 2 ;;
    --ctrl-seeds) ctrl_seeds="$2"; shift 2 ;;
    --sharded-seeds) sharded_seeds="$2"; shift 2 ;;
    --fuzzers) fuzzers_override="${2//,/ }"; shift 2 ;;
    --baseline) baseline=1; shift ;;
    --rev) rev="$2"; shift 2 ;;
    --first) first="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "mutants.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

base="$work/base"   # the code under test, unmodified
tree="$work/tree"   # base + one mutant; its files keep their mtimes when unchanged
export CARGO_TARGET_DIR="$work/target"
mkdir -p "$work" "$tree"

# Export the code under test (tracked files of the working tree, or of --rev).
rm -rf "$base" && mkdir -p "$base"
if [[ -n "$rev" ]]; then
  git -C "$repo" archive "$rev" | tar -xf - -C "$base"
else
  (cd "$repo" && git ls-files -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$base"
fi

# Makes $tree equal to $base, touching only files that differ, so that cargo rebuilds
# exactly what the previous mutant changed (a restored file gets a fresh mtime).
reset_tree() {
  (cd "$base" && find . -type f) | while read -r f; do
    if ! cmp -s "$base/$f" "$tree/$f"; then
      mkdir -p "$(dirname "$tree/$f")"
      cp "$base/$f" "$tree/$f"
    fi
  done
  (cd "$tree" && find . -type f) | while read -r f; do
    [[ -e "$base/$f" ]] || rm -f "$tree/$f"
  done
}

header() { # file key -> value of "# key: value"
  sed -n "s/^# $2: //p" "$1" | head -1
}

build() {
  (cd "$tree" && cargo build -q --release -p shardkv-sim --bin fuzz) >"$work/build.log" 2>&1
}

# run_fuzzer NAME FUZZER -> appends a row to the table
rows=()
run_fuzzer() {
  local name="$1" fuzzer="$2" n flag out start secs found
  case "$fuzzer" in
    kv) n="$kv_seeds"; flag="--kv" ;;
    ctrl) n="$ctrl_seeds"; flag="--ctrl" ;;
    sharded) n="$sharded_seeds"; flag="--sharded" ;;
    *) n="$raft_seeds"; flag="" ;;
  esac
  start=$(date +%s.%N)
  set +e
  out=$("$CARGO_TARGET_DIR/release/fuzz" $flag --seeds "$first..$((first + n))" 2>"$work/$name-$fuzzer.stderr")
  set -e
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  found=$(echo "$out" | sed -n 's/^fuzz: FAILED seed \([0-9]*\) after \([0-9]*\) seeds.*/\2 (seed \1)/p')
  if [[ -z "$found" ]]; then
    if echo "$out" | grep -q "passed"; then found="not found in $n"; else found="ERROR (see $work/$name-$fuzzer.stderr)"; fi
  else
    # The first lines of the failure, for the log.
    grep -m1 -A1 panicked "$work/$name-$fuzzer.stderr" | tail -1 | cut -c1-160 | sed "s/^/  $name\/$fuzzer: /" >&2 || true
  fi
  printf -v row "%-34s %-6s %-26s %7.1f s" "$name" "$fuzzer" "$found" "$secs"
  rows+=("$row")
  echo "$row" >&2
}

mutants=()
if [[ ${#only[@]} -gt 0 ]]; then
  for m in "${only[@]}"; do mutants+=("$repo/scripts/mutants/$m.patch"); done
else
  mutants=("$repo"/scripts/mutants/*.patch)
fi

if [[ "$baseline" == 1 ]]; then
  reset_tree
  echo "== baseline (unmodified): building" >&2
  build || { cat "$work/build.log" >&2; echo "mutants.sh: baseline does not build" >&2; exit 1; }
  for f in raft kv ctrl sharded; do run_fuzzer baseline "$f"; done
fi

for patch in "${mutants[@]}"; do
  name="$(basename "$patch" .patch)"
  [[ -f "$patch" ]] || { echo "mutants.sh: no mutant $name ($patch)" >&2; exit 1; }
  requires="$(header "$patch" requires)"
  if [[ -n "$requires" && ! -e "$base/$requires" ]]; then
    printf -v row "%-34s %-6s %-26s" "$name" "-" "skipped: no $requires"
    rows+=("$row"); echo "$row" >&2
    continue
  fi
  if ! grep -q '^+++ ' "$patch"; then
    echo "mutants.sh: mutant $name holds no diff (a placeholder): write it" >&2
    exit 1
  fi
  reset_tree
  if ! (cd "$tree" && git apply "$patch"); then
    echo "mutants.sh: mutant $name no longer applies (the code moved): re-make $patch" >&2
    exit 1
  fi
  echo "== $name: building" >&2
  if ! build; then
    cat "$work/build.log" >&2
    echo "mutants.sh: mutant $name does not build" >&2
    exit 1
  fi
  fuzzers="${fuzzers_override:-$(header "$patch" fuzzers)}"
  for f in $fuzzers; do run_fuzzer "$name" "$f"; done
done
reset_tree

echo
echo "seeds from $first; raft budget $raft_seeds, kv budget $kv_seeds, ctrl budget $ctrl_seeds, sharded budget $sharded_seeds; $(uptime | sed 's/.*load/load/')"
printf "%-34s %-6s %-26s %9s\n" mutant fuzzer "seeds until found" "wall"
for r in "${rows[@]}"; do echo "$r"; done
