#!/usr/bin/env bash
# A randomized fault run against three replicated nodes: SIGKILL + restart, SIGSTOP + SIGCONT,
# and network isolation (of a node, or of a node together with the client), one fault at a time
# for a random 2-10 s each, while an idempotent acks=all producer writes 1,500 records/s and a
# consumer reads along. Prints each fault, then one line:
#
#   chaos result: seed S, N s, F faults, ... {"acked": .., "lost": 0, "duplicated": 0,
#                 "out_of_order": 0, "vanished": 0, ...}
#
# and exits non-zero if anything acknowledged was lost, duplicated or reordered, or a consumer
# saw a record that later vanished. Needs root (network namespaces), iproute2, python3 with
# confluent-kafka (scripts/install-test-deps.sh installs them).
#
# Usage: scripts/chaos.sh [SECONDS (default 300)] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."

export RAFKA_CHAOS_SECONDS="${1:-300}"
if [[ -n "${2:-}" ]]; then
    export RAFKA_CHAOS_SEED="$2"
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "scripts/chaos.sh needs root: it puts every node in its own network namespace" >&2
    exit 2
fi
export RAFKA_REQUIRE_NETNS=1 RAFKA_REQUIRE_EXTERNAL_CLIENTS=1
export RUST_LOG="${RUST_LOG:-info}"
cargo build --workspace --bins
# The whole output (with librdkafka's idempotence debug lines, RAFKA_CHECKER_DEBUG) goes to $log
# and every node's log to $log.nodes/, so that a failed run can be explained afterwards.
log="target/chaos-$(date +%Y%m%d-%H%M%S).log"
export RAFKA_NETNS_LOGS="${RAFKA_NETNS_LOGS:-$PWD/$log.nodes}"
export RAFKA_CHECKER_DEBUG="${RAFKA_CHECKER_DEBUG:-eos}"
echo "full output: $log, node logs: $RAFKA_NETNS_LOGS"
# cargo test rather than nextest: the run is longer than nextest's per-test time limit.
cargo test -p rafka-broker --test broker -- --ignored --nocapture netns_chaos:: 2>&1 |
    tee "$log" | grep --line-buffered -E '^chaos|SKIPPED|panicked|^test result'
