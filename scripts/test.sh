#!/usr/bin/env bash
# The test command (README "Tests"): installs and starts what the tests need — the local
# Kafka-protocol broker (Tansu) on 127.0.0.1 — then runs every test of the workspace in the release
# profile (the one `cargo sluice` builds, so the two share one build). Stops the broker on exit.
#
#   scripts/test.sh             everything, including real-mode tests against the local broker
#   SLUICE_DURABLE=1 scripts/test.sh   also builds the durable (SQLite) broker and runs the
#                                      kill -9 + restart test (a 16-25 min one-time build)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install the Rust toolchain (https://rustup.rs) first" >&2
  exit 2
fi

stop_brokers() { scripts/broker.sh stop >/dev/null 2>&1 || true; scripts/broker.sh stop --durable >/dev/null 2>&1 || true; }
trap stop_brokers EXIT INT TERM

scripts/broker.sh install
scripts/broker.sh start
export SLUICE_BROKERS="${SLUICE_BROKERS:-127.0.0.1:19092}"
if [ "${SLUICE_DURABLE:-0}" = "1" ]; then
  scripts/broker.sh install --durable
  scripts/broker.sh start --durable
  export SLUICE_DURABLE_BROKERS="${SLUICE_DURABLE_BROKERS:-127.0.0.1:19093}"
fi

cargo test --workspace --release --no-fail-fast "$@"
