#!/usr/bin/env bash
# Produce throughput on a compacted topic while the log cleaner runs, against the same on a
# delete-policy topic (docs/benchmarks.md, "Log compaction").
#
#   scripts/bench-compaction.sh [RECORDS]      (default 3000000)
#
# Starts one release rafka-node (cleaner backoff 1 s) on a temporary data dir under
# RAFKA_BENCH_DIR (default .), creates `bench-delete` and `bench-compact` (one partition, 16 MiB
# segments; the compacted one cleaned from a dirty ratio of 0.1), then for each runs
# `rafka bench produce` with 100-byte values and 16-byte keys (262 144 distinct keys, so most
# records are superseded) and prints the cleaner's metrics and the data dir size. The node is
# stopped by its PID and the data dir removed.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-3000000}
cargo build --release -q --bin rafka-node --bin rafka
node=target/release/rafka-node
cli=target/release/rafka
root=$(mktemp -d "${RAFKA_BENCH_DIR:-.}/bench-compaction.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT

"$node" --data-dir "$root/data" --bootstrap-expect 1 --no-mdns \
  --kafka-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  --p2p-addr /ip4/127.0.0.1/tcp/0 --control-addr /ip4/127.0.0.1/tcp/0 \
  --log-cleaner-backoff-ms 1000 >"$root/ready" 2>"$root/node.log" &
pid=$!
for _ in $(seq 1 600); do
  grep -q "^rafka-node ready" "$root/ready" 2>/dev/null && break
  sleep 0.1
done
line=$(grep "^rafka-node ready" "$root/ready" || true)
field() { tr ' ' '\n' <<<"$line" | sed -n "s/^$1=//p" | cut -d, -f1; }
p2p=$(field p2p)
http=$(field http)
[ -n "$p2p" ] || { echo "node did not start:"; cat "$root/ready" "$root/node.log"; exit 1; }

for policy in delete compact; do
  "$cli" --bootstrap "$p2p" topic create "bench-$policy" --partitions 1 \
    --config "cleanup.policy=$policy" --config segment.bytes=16777216 \
    --config min.cleanable.dirty.ratio=0.1 >/dev/null
done
for policy in delete compact; do
  echo "== bench-$policy"
  "$cli" --bootstrap "$p2p" bench produce --topic "bench-$policy" -n "$records" \
    --record-size 100 --key-size 16 --broker-pid "$pid"
done
echo "== cleaner metrics"
curl -fsS "http://$http/metrics" | grep '^rafka_log_cleaner' || true
echo "== data dir: $(du -sm "$root/data" | cut -f1) MiB"
