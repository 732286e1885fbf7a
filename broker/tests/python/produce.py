#!/usr/bin/env python3
"""Produces keyed records with confluent-kafka (librdkafka) and prints every delivery report as JSON.

Usage: produce.py BOOTSTRAP TOPIC --count N [--idempotence true|false] [--acks all|1|0]
                  [--compression none|gzip|snappy|lz4|zstd] [--partitioner murmur2_random] [--keys K]

Record i has key "key-<i mod K>" and a value "value-<i>-" followed by 40 bytes that are not valid
UTF-8 (never a newline). Output (stdout), one JSON object:
  {"delivered": [[key, partition, offset, value_hex], ...] in delivery order,
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--idempotence", choices=["true", "false"], default="true")
    parser.add_argument("--acks", default="all")
    parser.add_argument("--compression", default="none")
    parser.add_argument("--partitioner", default="murmur2_random")
    parser.add_argument("--keys", type=int, default=5000)
    args = parser.parse_args()

    delivered = []
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
    for i in range(args.count):
        key = f"key-{i % args.keys}".encode()
        while True:
            try:
                producer.produce(args.topic, key=key, value=value(i), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    undelivered = producer.flush(180)
    json.dump(
        {
            "delivered": delivered,
            "errors": errors,
            "client_errors": client_errors,
            "fatal": fatal,
            "undelivered": undelivered,
            "librdkafka": libversion()[0],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        print(f"produce.py: {e}", file=sys.stderr)
        sys.exit(1)
