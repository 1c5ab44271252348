#!/usr/bin/env bash
# Runs every shardkv test: unit, doc, simulator scenarios, the fuzz seed range, storage
# crash tests, real-process tests. Installs what the tests need first.
# Usage: scripts/test.sh [extra cargo-nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

# `shardkv bench --target etcd`'s tests (crates/cli/tests/bench_etcd.rs) run a real etcd.
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "installing etcd (etcd-server, etcd-client)" >&2
  apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null
fi

# The Redis front end's tests (crates/cli/tests/redis_*.rs) run the real redis-cli and
# redis-benchmark against `shardkv up`.
if ! command -v redis-cli >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  echo "installing redis-tools (redis-cli, redis-benchmark)" >&2
  apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null
fi

# --workspace also runs the docs check (crates/cli/tests/docs_check.rs: every runnable block
# of README.md and docs/*.md against a fresh `shardkv up`) and the client-library example
# against one (examples/quickstart/tests/against_up.rs).
cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc
