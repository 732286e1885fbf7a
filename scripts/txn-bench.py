#!/usr/bin/env python3
"""Transaction timings against a running cluster, with confluent-kafka (librdkafka) producers.

  txn-bench.py produce --bootstrap B --topic T --records N [--transaction-size S] [--size 100]
      Produces N records of SIZE random bytes to T as fast as the producer goes: without
      --transaction-size, idempotent with acks=all (what a transactional producer uses too);
      with it, in transactions of S records each (begin, S produce() calls, commit). Prints
      records/s and MB/s from the first produce() to the last acknowledgement (the last commit),
      after init_transactions() or, idempotent, one warm-up record (not counted).
  txn-bench.py end-latency --bootstrap B --topic T --count N
      First N single records produced with an idempotent acks=all producer, each flushed before
      the next (one Produce round trip each: the replicated produce to compare with); then N
      transactions of one record each: once the record is acknowledged (flush), times
      commit_transaction(), which is then one EndTxn round trip: answered once the coordinator
      has replicated PrepareCommit (the markers are written after the answer). Prints p50, p99
      and max of both, after one warm-up record and init_transactions() (not timed).

Common options: --partitions P and --replication-factor R create T (if it does not exist yet)
before the run; --pids PID,... are the node processes whose CPU time (utime + stime, from
/proc/PID/stat) is reported over the timed part, in total and per million records.

Linger 5 ms, 128 KiB batches, librdkafka's defaults otherwise. Output: one summary line per
measurement. scripts/txn-bench.sh runs the set in docs/benchmarks.md ("Transactions").
"""

import argparse
import os
import time
import uuid

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

TICKS = os.sysconf("SC_CLK_TCK")


def config(args, transactional):
    c = {
        "bootstrap.servers": args.bootstrap,
        "linger.ms": 5,
        "batch.size": 131072,
        "enable.idempotence": True,
        "acks": "all",
        "queue.buffering.max.messages": 1000000,
    }
    if transactional:
        c["transactional.id"] = f"bench-{uuid.uuid4()}"
    return c


def ensure_topic(args):
    if args.partitions is None:
        return
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    if args.topic in admin.list_topics(timeout=30).topics:
        return
    topic = NewTopic(args.topic, args.partitions, args.replication_factor)
    for future in admin.create_topics([topic], operation_timeout=30).values():
        future.result()
    # Wait until the topic's leaders are known (metadata propagates to every node).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(args.topic, timeout=10).topics.get(args.topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == args.partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise SystemExit(f"{args.topic}: no leader for every partition within 30 s")


class NodeCpu:
    """CPU seconds (user, system) the node processes spent since the last `take()`."""

    def __init__(self, pids):
        self.pids = [int(p) for p in pids.split(",")] if pids else []
        self.last = self.read()

    def read(self):
        user = system = 0
        for pid in self.pids:
            with open(f"/proc/{pid}/stat") as f:
                # Fields after the command name (which may hold spaces): utime, stime are 14, 15.
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        return user / TICKS, system / TICKS

    def take(self):
        now = self.read()
        spent = (now[0] - self.last[0], now[1] - self.last[1])
        self.last = now
        return spent

    def describe(self, count, per, unit):
        """`, node CPU ...` over `count` things, scaled to `per` of them."""
        if not self.pids:
            return ""
        user, system = self.take()
        total = user + system
        return (
            f", node CPU {total:.2f} s (user {user:.2f}, system {system:.2f}; "
            f"{total / count * per:.2f} CPU-s per {unit})"
        )


def produce(p, topic, value, on_delivery):
    while True:
        try:
            p.produce(topic, value=value, on_delivery=on_delivery)
            return
        except BufferError:
            p.poll(0.01)


def run_produce(args):
    value = os.urandom(args.size)
    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(err)

    transactional = args.transaction_size is not None
    p = Producer(config(args, transactional))
    if transactional:
        p.init_transactions(30)
    else:
        # The producer id and the topic's metadata, before the clock starts (as init_transactions).
        p.produce(args.topic, value=value)
        if p.flush(30) != 0:
            raise SystemExit("the warm-up record was not acknowledged within 30 s")
    cpu = NodeCpu(args.pids)
    started = time.monotonic()
    transactions = 0
    if transactional:
        sent = 0
        while sent < args.records:
            p.begin_transaction()
            n = min(args.transaction_size, args.records - sent)
            for _ in range(n):
                produce(p, args.topic, value, on_delivery)
            p.commit_transaction(60)
            sent += n
            transactions += 1
    else:
        for _ in range(args.records):
            produce(p, args.topic, value, on_delivery)
        if p.flush(60) != 0:
            raise SystemExit("records still unacknowledged after 60 s")
    took = time.monotonic() - started
    used = cpu.describe(args.records, 1e6, "million records")
    if failed:
        raise SystemExit(f"{len(failed)} records failed, first: {failed[0]}")
    mode = (
        f"transactions of {args.transaction_size} ({transactions} transactions)"
        if transactional
        else "idempotent, not transactional"
    )
    print(
        f"produce {args.records} x {args.size} B, {mode}: {took:.2f} s, "
        f"{args.records / took:,.0f} records/s, {args.records * args.size / took / 1e6:.2f} MB/s"
        f"{used}",
        flush=True,
    )


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summary(what, times):
    ms = sorted(t * 1000 for t in times)
    return (
        f"{what} x {len(ms)}: p50 {percentile(ms, 0.5):.2f} ms, "
        f"p99 {percentile(ms, 0.99):.2f} ms, max {ms[-1]:.2f} ms"
    )


def run_end_latency(args):
    plain = Producer(config(args, False))
    # The producer id and the topic's metadata, before the clock starts.
    plain.produce(args.topic, value=b"warm-up")
    if plain.flush(30) != 0:
        raise SystemExit("the warm-up record was not acknowledged within 30 s")
    p = Producer(config(args, True))
    p.init_transactions(30)
    cpu = NodeCpu(args.pids)
    times = []
    for i in range(args.count):
        started = time.monotonic()
        plain.produce(args.topic, value=str(i).encode())
        if plain.flush(30) != 0:
            raise SystemExit("a record was not acknowledged within 30 s")
        times.append(time.monotonic() - started)
    line = summary("Produce, acks=all, one record (produce + flush)", times)
    print(line + cpu.describe(args.count, 1000, "1,000 records"), flush=True)

    times = []
    for i in range(args.count):
        p.begin_transaction()
        p.produce(args.topic, value=str(i).encode())
        if p.flush(30) != 0:
            raise SystemExit("a record was not acknowledged within 30 s")
        started = time.monotonic()
        try:
            p.commit_transaction(60)
        except KafkaException as e:
            raise SystemExit(f"commit {i} failed: {e}")
        times.append(time.monotonic() - started)
    line = summary("EndTxn (commit_transaction after flush)", times)
    line += cpu.describe(args.count, 1000, "1,000 transactions")
    print(line, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["produce", "end-latency"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, default=200000)
    parser.add_argument("--transaction-size", type=int)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--partitions", type=int)
    parser.add_argument("--replication-factor", type=int, default=1)
    parser.add_argument("--pids", help="node PIDs, comma-separated, whose CPU time to report")
    args = parser.parse_args()
    ensure_topic(args)
    if args.mode == "produce":
        run_produce(args)
    else:
        run_end_latency(args)


if __name__ == "__main__":
    main()
