#!/usr/bin/env bash
# Runs every test of the workspace: unit, storage, protocol, multi-process and real-client tests.
# The real-client tests (kcat, confluent-kafka) skip with a message when those clients are absent,
# unless RAFKA_REQUIRE_EXTERNAL_CLIENTS=1 (CI sets it; scripts/install-test-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

# The process tests start the rafka-node and rafka binaries: build them first.
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc
