#!/usr/bin/env python3
"""Compacted topics through confluent-kafka (librdkafka): the admin client creates and alters
topics, the producer writes keyed updates and tombstones, the consumer reads a partition back.
Each command prints one JSON object on stdout; the Rust test (broker/tests/broker/compaction.rs)
makes the assertions.

Usage:
  compaction.py create BOOTSTRAP TOPIC KEY=VALUE...
      -> {"error": null | "..."}
  alter BOOTSTRAP TOPIC (set|delete|append|subtract):KEY[=VALUE]...
      (IncrementalAlterConfigs), then DescribeConfigs
      -> {"error": null | "...", "configs": {"name": [value, is_default]}}
  replace BOOTSTRAP TOPIC KEY=VALUE...
      (AlterConfigs: the topic's overrides become exactly these), then DescribeConfigs
      -> {"error": null | "...", "configs": {"name": [value, is_default]}}
  produce BOOTSTRAP TOPIC --keys K --versions V [--prefix P] [--tombstones T] [--keyless N]
      V rounds of updates to keys "P-0".."P-<K-1>" (value "P-<k>@<version>"; P is "key"
      unless given), then tombstones (null values) for the first T keys, then N records
      without a key; idempotent, acks=all, partition 0.
      -> {"delivered": [[key, value or null, offset], ...], "errors": [...]}
  fill BOOTSTRAP TOPIC --keys K --mib M --value-bytes B
      M MiB of random B-byte values (hex text) over keys "big-0".."big-<K-1>", partition 0
      -> {"records": n, "bytes": n, "latest": {key: offset}, "errors": [...]}
  read BOOTSTRAP TOPIC [--from OFFSET] [--isolation read_committed|read_uncommitted]
      partition 0 from OFFSET (default: the beginning) up to its high watermark (the last
      stable offset under read_committed, librdkafka's default)
      -> {"records": [[offset, key, value or null], ...], "high_watermark": n, "errors": [...]}
"""

import argparse
import json
import os
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

TIMEOUT = 60


def create(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    configs = dict(kv.split("=", 1) for kv in args.configs)
    futures = admin.create_topics(
        [NewTopic(args.topic, num_partitions=1, replication_factor=args.replication_factor,
                  config=configs)],
        request_timeout=TIMEOUT,
    )
    try:
        futures[args.topic].result(TIMEOUT)
        return {"error": None}
    except Exception as e:  # the test asserts on the message
        return {"error": str(e)}


OPS = {
    "set": AlterConfigOpType.SET,
    "delete": AlterConfigOpType.DELETE,
    "append": AlterConfigOpType.APPEND,
    "subtract": AlterConfigOpType.SUBTRACT,
}


def alter(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    entries = []
    for change in args.changes:
        op, _, kv = change.partition(":")
        key, _, value = kv.partition("=")
        entries.append(ConfigEntry(key, value if op != "delete" else None,
                                   incremental_operation=OPS[op]))
    resource = ConfigResource(ConfigResource.Type.TOPIC, args.topic,
                              incremental_configs=entries)
    error = None
    try:
        admin.incremental_alter_configs([resource])[resource].result(TIMEOUT)
    except Exception as e:  # the test asserts on the message
        error = str(e)
    return {"error": error, "configs": describe(admin, args.topic)}


def replace(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    configs = dict(kv.split("=", 1) for kv in args.configs)
    resource = ConfigResource(ConfigResource.Type.TOPIC, args.topic, set_config=configs)
    error = None
    try:
        admin.alter_configs([resource])[resource].result(TIMEOUT)
    except Exception as e:  # the test asserts on the message
        error = str(e)
    return {"error": error, "configs": describe(admin, args.topic)}


def describe(admin, topic):
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    configs = {}
    for _, future in described.items():
        for name, entry in future.result(TIMEOUT).items():
            configs[name] = [entry.value, entry.is_default]
    return configs


def produce(args):
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    })
    state = {"delivered": [], "errors": []}

    def report(err, msg):
        if err is not None:
            state["errors"].append(str(err))
        else:
            key, value = msg.key(), msg.value()
            state["delivered"].append([key.decode() if key is not None else None,
                                       value.decode() if value is not None else None,
                                       msg.offset()])

    def send(key, value):
        while True:
            try:
                producer.produce(args.topic, key=key, value=value, partition=0,
                                 on_delivery=report)
                return
            except BufferError:
                producer.poll(0.05)

    for version in range(args.versions):
        for k in range(args.keys):
            key = f"{args.prefix}-{k}"
            send(key, f"{key}@{version}")
        producer.poll(0)
    for k in range(args.tombstones):
        send(f"{args.prefix}-{k}", None)
    for i in range(args.keyless):
        send(None, f"keyless-{i}")
    remaining = producer.flush(TIMEOUT)
    if remaining:
        state["errors"].append(f"{remaining} records not delivered")
    return state


def fill(args):
    """Random values of args.value_bytes (hex text, which nothing on the way compresses) over
    args.keys keys named "big-<k>" until args.mib MiB are delivered: nearly all of it
    superseded. Reports counts and each key's latest offset, not the values."""
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "compression.type": "none",
    })
    state = {"records": 0, "bytes": 0, "latest": {}, "errors": []}

    def report(err, msg):
        if err is not None:
            state["errors"].append(str(err))
        else:
            state["records"] += 1
            state["bytes"] += len(msg.value())
            key = msg.key().decode()
            state["latest"][key] = max(state["latest"].get(key, -1), msg.offset())

    target = args.mib * 1024 * 1024
    sent = 0
    i = 0
    while sent < target:
        key = f"big-{i % args.keys}"
        value = os.urandom(args.value_bytes // 2).hex()
        while True:
            try:
                producer.produce(args.topic, key=key, value=value, partition=0,
                                 on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        sent += len(value)
        i += 1
        producer.poll(0)
    remaining = producer.flush(TIMEOUT)
    if remaining:
        state["errors"].append(f"{remaining} records not delivered")
    return state


def read(args):
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "compaction-test-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": args.isolation,
    })
    tp = TopicPartition(args.topic, 0)
    _, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT)
    start = args.start if args.start is not None else -2  # OFFSET_BEGINNING
    consumer.assign([TopicPartition(args.topic, 0, start)])
    records, errors = [], []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                if msg.offset() >= high:
                    break
                continue
            errors.append(str(msg.error()))
            break
        value = msg.value()
        records.append([msg.offset(), msg.key().decode() if msg.key() is not None else None,
                        value.decode() if value is not None else None])
        if msg.offset() + 1 >= high:
            break
    else:
        errors.append(f"did not reach the high watermark {high} in {TIMEOUT} s")
    consumer.close()
    return {"records": records, "high_watermark": high, "errors": errors}


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("configs", nargs="*")
    p.add_argument("--replication-factor", type=int, default=1)
    p = sub.add_parser("alter")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("changes", nargs="+")
    p = sub.add_parser("replace")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("configs", nargs="+")
    p = sub.add_parser("produce")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--versions", type=int, required=True)
    p.add_argument("--prefix", default="key")
    p.add_argument("--keyless", type=int, default=0)
    p.add_argument("--tombstones", type=int, default=0)
    p = sub.add_parser("fill")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--mib", type=int, required=True)
    p.add_argument("--value-bytes", type=int, required=True)
    p = sub.add_parser("read")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("--from", dest="start", type=int)
    p.add_argument("--isolation", default="read_committed",
                   choices=["read_committed", "read_uncommitted"])
    args = parser.parse_args()
    result = {"create": create, "alter": alter, "replace": replace, "produce": produce,
              "fill": fill, "read": read}[args.command](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
