#!/usr/bin/env python3
"""Transaction timings against a running cluster, with confluent-kafka (librdkafka) producers.

  txn-bench.py produce --bootstrap B --topic T --records N [--transaction-size S] [--size 100]
      Produces N records of SIZE random bytes to T as fast as the producer goes: without
      --transaction-size, idempotent with acks=all (what a transactional producer uses too);
      with it, in transactions of S records each (begin, S produce() calls, commit). Prints
      records/s and MB/s from the first produce() to the last acknowledgement.
  txn-bench.py end-latency --bootstrap B --topic T --count N
      N transactions of one record each; once the record is acknowledged (flush), times
      commit_transaction(), which is then one EndTxn round trip: answered once the coordinator
      has replicated PrepareCommit (the markers are written after the answer). Prints p50, p99
      and max.

Linger 5 ms, 128 KiB batches, librdkafka's defaults otherwise. T must exist. Output: one summary
line per run.
"""

import argparse
import os
import time
import uuid

from confluent_kafka import KafkaException, Producer


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


def produce(p, topic, value, on_error):
    while True:
        try:
            p.produce(topic, value=value, on_delivery=on_error)
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
        p.flush(60)
    took = time.monotonic() - started
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
    )


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_end_latency(args):
    p = Producer(config(args, True))
    p.init_transactions(30)
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
    times.sort()
    ms = [t * 1000 for t in times]
    print(
        f"EndTxn (commit_transaction after flush) x {args.count}: p50 {percentile(ms, 0.5):.1f} ms, "
        f"p99 {percentile(ms, 0.99):.1f} ms, max {ms[-1]:.1f} ms"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["produce", "end-latency"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, default=200000)
    parser.add_argument("--transaction-size", type=int)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    if args.mode == "produce":
        run_produce(args)
    else:
        run_end_latency(args)


if __name__ == "__main__":
    main()
