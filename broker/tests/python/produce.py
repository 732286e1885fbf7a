#!/usr/bin/env python3
"""Produces keyed records with confluent-kafka (librdkafka) and prints its delivery reports as JSON
(each of them, or a per-partition summary).

Usage: produce.py BOOTSTRAP TOPIC (--count N | --from-stdin) [--idempotence true|false]
                  [--acks all|1|0] [--compression none|gzip|snappy|lz4|zstd]
                  [--partitioner murmur2_random] [--keys K] [--report records|summary]

Record i has key "key-<i mod K>" and a value "value-<i>-" followed by 40 bytes that are not valid
UTF-8 (never a newline). With --from-stdin the records are instead the lines of stdin, each
"KEY:VALUE" (split at the first ':', the '\n' removed), produced in order.
Output (stdout), one JSON object:
  {"delivered": [[key, partition, offset, value_hex], ...] in delivery order (--report records),
   "partitions": {"<partition>": {"count": n, "first": offset, "last": offset, "gaps": n}}
       (--report summary: per partition, the delivered offsets in delivery order; "gaps" counts
       the deliveries whose offset is not the previous one's plus one),
   "delivered_count": n,
   "errors": ["...", ...] (failed deliveries),
   "client_errors": ["...", ...] (error_cb: a lost connection, say), "fatal": ["...", ...],
   "undelivered": n, "librdkafka": "2.x"}
"""

import argparse
import json
import sys

from confluent_kafka import KafkaException, Producer, libversion


def value(i):
    payload = bytes(b for b in ((i * 31 + j * 7) % 256 for j in range(41)) if b != 10)
    return f"value-{i:06d}-".encode() + payload[:40]


def generated(count, keys):
    for i in range(count):
        yield f"key-{i % keys}".encode(), value(i)


def from_stdin():
    for line in sys.stdin.buffer:
        if line.endswith(b"\n"):
            line = line[:-1]
        key, sep, val = line.partition(b":")
        if not sep:
            raise SystemExit(f"produce.py: stdin line without ':': {line[:80]!r}")
        yield key, val


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--count", type=int)
    source.add_argument("--from-stdin", action="store_true")
    parser.add_argument("--idempotence", choices=["true", "false"], default="true")
    parser.add_argument("--acks", default="all")
    parser.add_argument("--compression", default="none")
    parser.add_argument("--partitioner", default="murmur2_random")
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--report", choices=["records", "summary"], default="records")
    args = parser.parse_args()

    delivered = []
    # partition -> [count, first offset, last offset, gaps] (--report summary)
    partitions = {}
    errors = []
    client_errors = []
    fatal = []

    def on_error(err):
        (fatal if err.fatal() else client_errors).append(str(err))

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")
        else:
            delivered.append([msg.key().decode(), msg.partition(), msg.offset(), msg.value().hex()])

    def on_delivery_summary(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")
            return
        partition = msg.partition()
        offset = msg.offset()
        seen = partitions.get(partition)
        if seen is None:
            partitions[partition] = [1, offset, offset, 0]
        else:
            seen[0] += 1
            if offset != seen[2] + 1:
                seen[3] += 1
            seen[2] = offset

    callback = on_delivery if args.report == "records" else on_delivery_summary

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": args.idempotence == "true",
            "acks": args.acks,
            "compression.type": args.compression,
            "partitioner": args.partitioner,
            "linger.ms": 5,
            "message.timeout.ms": 120000,
            "error_cb": on_error,
        }
    )
    records = from_stdin() if args.from_stdin else generated(args.count, args.keys)
    for i, (key, val) in enumerate(records):
        while True:
            try:
                producer.produce(args.topic, key=key, value=val, on_delivery=callback)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    undelivered = producer.flush(180)
    if args.report == "records":
        report = {"delivered": delivered, "delivered_count": len(delivered)}
    else:
        report = {
            "partitions": {
                str(p): {"count": count, "first": first, "last": last, "gaps": gaps}
                for p, (count, first, last, gaps) in sorted(partitions.items())
            },
            "delivered_count": sum(seen[0] for seen in partitions.values()),
        }
    report.update(
        errors=errors,
        client_errors=client_errors,
        fatal=fatal,
        undelivered=undelivered,
        librdkafka=libversion()[0],
    )
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        print(f"produce.py: {e}", file=sys.stderr)
        sys.exit(1)
