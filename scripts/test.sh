#!/usr/bin/env bash
# Runs every test of the workspace: unit, storage, protocol, multi-process and real-client tests.
# The real-client tests (kcat, confluent-kafka) skip with a message when those clients are absent,
# unless RAFKA_REQUIRE_EXTERNAL_CLIENTS=1 (CI sets it; scripts/install-test-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

# The rolling-upgrade test (broker/tests/upgrade.rs) starts the upgrade baseline's rafka-node:
# built once and kept (scripts/baseline.sh); without it that test skips, or fails in CI.
if RAFKA_BASELINE_NODE=$(scripts/baseline.sh); then
  export RAFKA_BASELINE_NODE
else
  echo "test.sh: no baseline rafka-node; the rolling-upgrade test will not run" >&2
fi
# The process tests start the rafka-node and rafka binaries: build them first.
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc
