#!/usr/bin/env bash
# The write path with stock clients (issue 16; figures in docs/benchmarks.md, "The write path").
#
#   scripts/bench-write-path.sh BINDIR kcat16k|kcat128k [PERF_DATA]   kcat producing 3 M x 100 B
#   scripts/bench-write-path.sh BINDIR io REPEATS FSYNC                write_bytes per byte produced
#   scripts/bench-write-path.sh BINDIR latency ROUNDS                  confluent-kafka loop, then rafka bench e2e
#
# One fresh rafka-node from BINDIR (--fsync never unless given), a 6-partition topic `t` (1 for
# latency). Throughput: kcat -P -l of $RECORDS (made once: 3 M lines of 100 bytes), idempotent,
# acks=all; prints records/s, the broker's CPU-s (utime + stime from /proc/PID/stat) per million
# records and per Produce request. Run it as the docs say: flock /work/team/bench.lock chrt -f 10 ...
set -euo pipefail
BIN=$1; MODE=$2
RECORDS=${RECORDS:-/tmp/rafka-bench-records.txt}
if [ ! -s "$RECORDS" ]; then
    python3 -c '
import random, sys
random.seed(1)
alpha = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
lines = [bytes(random.choice(alpha) for _ in range(100)) + b"\n" for _ in range(1000)]
with open(sys.argv[1], "wb") as f:
    for i in range(3_000_000):
        f.write(lines[i % 1000])' "$RECORDS"
fi
FSYNC=never
[ "$MODE" = io ] && FSYNC=${4:-never}
D=$(mktemp -d)
PORT=$((30000 + RANDOM % 20000)); K=127.0.0.1:$PORT; H=127.0.0.1:$((PORT + 1))
"$BIN/rafka-node" --data-dir "$D/data" --bootstrap-expect 1 --fsync "$FSYNC" --no-mdns \
    --kafka-addr $K --http-addr $H --p2p-addr /ip4/127.0.0.1/tcp/$((PORT + 2)) >"$D/node.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 200); do curl -sf $H/ready >/dev/null && break; sleep 0.05; done
cpu() { awk '{print $14 + $15}' /proc/$PID/stat; }
metric() { curl -s $H/metrics | awk -v m="$1" '$1 == m {print $2}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
TCK=$(getconf CLK_TCK)
case $MODE in
kcat16k | kcat128k)
    "$BIN/rafka" --kafka $K topic create t --partitions 6 >/dev/null
    if [ "$MODE" = kcat16k ]; then OPTS="-X batch.size=16384 -X linger.ms=0"
    else OPTS="-X batch.size=131072 -X linger.ms=5"; fi
    N=$(wc -l <"$RECORDS"); L0=$(load)
    if [ -n "${3:-}" ]; then perf record --call-graph dwarf,16384 -F 499 -p $PID -o "$3" 2>/dev/null & PP=$!; sleep 0.3; fi
    C0=$(cpu); T0=$(date +%s.%N)
    # shellcheck disable=SC2086
    kcat -b $K -P -t t -l "$RECORDS" $OPTS -X enable.idempotence=true -X acks=all
    T1=$(date +%s.%N); C1=$(cpu)
    if [ -n "${3:-}" ]; then kill -INT $PP; wait $PP || true; fi
    REQS=$(metric 'rafka_requests_total{api="Produce"}'); BYTES=$(metric rafka_produce_bytes_total)
    python3 -c "
n, t, c, r = $N, $T1 - $T0, ($C1 - $C0) / $TCK, $REQS
print(f'$MODE: {n / t:,.0f} records/s, broker {c:.2f} CPU-s = {c / (n / 1e6):.3f} per M records, '
      f'{r:,} Produce requests of {$BYTES / r:,.0f} B = {c / r * 1e6:.1f} us each; load $L0 -> $(load)')"
    ;;
io)
    "$BIN/rafka" --kafka $K topic create t --partitions 6 >/dev/null
    wb() { awk '/^write_bytes/ {print $2}' /proc/$PID/io; }
    W0=$(wb)
    for _ in $(seq 1 "$3"); do
        kcat -b $K -P -t t -l "$RECORDS" -X batch.size=131072 -X linger.ms=5 -X enable.idempotence=true -X acks=all
    done
    W1=$(wb); BYTES=$(metric rafka_produce_bytes_total); sleep 5; W2=$(wb)
    python3 -c "print(f'io fsync=$FSYNC: {$BYTES / 1e9:.2f} GB produced; write_bytes per byte: '
                      f'{($W1 - $W0) / $BYTES:.2f} at the end, {($W2 - $W0) / $BYTES:.2f} 5 s later')"
    ;;
latency)
    "$BIN/rafka" --kafka $K topic create lat --partitions 1 >/dev/null
    echo "load $(load)"
    python3 "$(dirname "$0")/stock-e2e.py" $K lat "$3"
    "$BIN/rafka" --kafka $K bench e2e --records "$3" 2>&1 | head -1
    echo "load $(load)"
    ;;
esac
