#!/usr/bin/env bash
# The transaction benchmarks of docs/benchmarks.md ("Transactions"), each figure twice, on nodes
# from scripts/local-cluster.sh (release build; default flags, so fsync always) with
# scripts/txn-bench.py (confluent-kafka). Prints the load average before each run.
#
#   scripts/txn-bench.sh rf1          one node: idempotent against transactional produce
#                                     (transactions of 1,000 and of 10 records), then EndTxn latency
#   scripts/txn-bench.sh rf3          three nodes, replication factor 3 (topics and
#                                     __transaction_state), min.insync.replicas 2: EndTxn latency
#   scripts/txn-bench.sh rf3-produce  the same three nodes: the produce comparison of rf1
#
# The nodes run at SCHED_FIFO 20 (on a machine shared with builds they get a core whenever they
# want one); the client at SCHED_FIFO 10 below them, except in rf3-produce where it runs at normal
# priority: against three brokers, librdkafka's threads spin under SCHED_FIFO (and SCHED_RR) and
# the run never ends. Each client run is cut off after 300 s. Needs root (chrt) and curl.
# Environment: TXN_BENCH_DIR (default /tmp/txn-bench) for the nodes' data; TXN_BENCH_PORT_BASE
# (default 23000) as RAFKA_CLUSTER_PORT_BASE.
set -euo pipefail

cd "$(dirname "$0")/.."
mode=${1:?usage: $0 rf1 | rf3 | rf3-produce}
dir=${TXN_BENCH_DIR:-/tmp/txn-bench}
base=${TXN_BENCH_PORT_BASE:-23000}
export RAFKA_CLUSTER_DIR=$dir/$mode RAFKA_CLUSTER_PORT_BASE=$base
rm -rf "$RAFKA_CLUSTER_DIR"
trap 'scripts/local-cluster.sh stop >/dev/null 2>&1 || true' EXIT

fifo="chrt -f 10"
case "$mode" in
  rf1)
    n=1
    chrt -f 20 scripts/local-cluster.sh start 1 >/dev/null
    ;;
  rf3 | rf3-produce)
    n=3
    [ "$mode" = rf3-produce ] && fifo=""
    RAFKA_DEFAULT_REPLICATION_FACTOR=3 RAFKA_MIN_INSYNC_REPLICAS=2 \
      chrt -f 20 scripts/local-cluster.sh start 3 >/dev/null
    ;;
  *) echo "usage: $0 rf1 | rf3 | rf3-produce" >&2; exit 2 ;;
esac

kafka=() pids=()
for i in $(seq 0 $((n - 1))); do
  kafka+=("127.0.0.1:$((base + 100 + i))")
  pids+=("$(cat "$RAFKA_CLUSTER_DIR/node$i.pid")")
done
K=$(IFS=,; echo "${kafka[*]}")
P=$(IFS=,; echo "${pids[*]}")
rf=$n

bench() {
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  $fifo timeout 300 python3 scripts/txn-bench.py "$@" --bootstrap "$K" --pids "$P" --replication-factor "$rf"
}

idle() {
  python3 - "$P" <<'EOF'
import os, sys, time
def cpu():
    user = system = 0
    for pid in sys.argv[1].split(","):
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        user += int(f[11]); system += int(f[12])
    return user, system
a = cpu(); time.sleep(10); b = cpu(); t = os.sysconf("SC_CLK_TCK")
print(f"idle nodes over 10 s: user {(b[0] - a[0]) / t:.2f} s, system {(b[1] - a[1]) / t:.2f} s")
EOF
}

idle
if [ "$mode" = rf3 ]; then
  for rep in 1 2; do
    bench end-latency --topic lat-$rep --partitions 1 --count 1000
  done
else
  small=20000
  [ "$mode" = rf3-produce ] && small=10000
  for rep in 1 2; do
    bench produce --topic idem-$rep --partitions 3 --records 300000
    bench produce --topic t1000-$rep --partitions 3 --records 300000 --transaction-size 1000
    bench produce --topic t10-$rep --partitions 3 --records $small --transaction-size 10
  done
  if [ "$mode" = rf1 ]; then
    for rep in 1 2; do
      bench end-latency --topic lat-$rep --partitions 1 --count 1000
    done
  fi
fi
for i in $(seq 0 $((n - 1))); do
  curl -fsS "http://127.0.0.1:$((base + 300 + i))/metrics" \
    | grep -E '^rafka_requests_total\{api="(AddPartitionsToTxn|EndTxn|WriteTxnMarkers|Produce)"' \
    | sed "s/^/node$i /" || true
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
