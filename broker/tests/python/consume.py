#!/usr/bin/env python3
"""Reads a topic with confluent-kafka (librdkafka) using assign(), to the end of every partition,
optionally commits offsets synchronously, and prints what it read as JSON.

Usage: consume.py BOOTSTRAP TOPIC --partitions N --group G [--start beginning|stored]
                  [--commit none|half|end] [--isolation read_committed|read_uncommitted]
                  [--timeout-s S]

--start stored resumes from the group's committed offsets (earliest where none). --commit half
commits, per partition, the offset of the middle record read; --commit end the next offset to
read. Output (stdout), one JSON object:
  {"records": [[partition, offset, key, value_hex], ...] in the order read,
   "committed": {"<partition>": offset, ...} as read back with committed(),
   "errors": ["...", ...]}
"""

import argparse
import json
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--start", choices=["beginning", "stored"], default="beginning")
    parser.add_argument("--commit", choices=["none", "half", "end"], default="none")
    parser.add_argument("--isolation", default="read_committed")
    parser.add_argument("--timeout-s", type=float, default=120)
    args = parser.parse_args()

    errors = []
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": args.isolation,
            "enable.partition.eof": True,
            "error_cb": lambda e: errors.append(f"client error: {e}"),
        }
    )
    start = OFFSET_BEGINNING if args.start == "beginning" else OFFSET_STORED
    consumer.assign([TopicPartition(args.topic, p, start) for p in range(args.partitions)])

    records = []
    per_partition = {p: [] for p in range(args.partitions)}
    at_end = set()
    deadline = time.monotonic() + args.timeout_s
    while len(at_end) < args.partitions:
        if time.monotonic() > deadline:
            errors.append(f"timed out with {len(records)} records; at the end of {sorted(at_end)}")
            break
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            err = msg.error()
            if err is None:
                records.append([msg.partition(), msg.offset(), msg.key().decode(), msg.value().hex()])
                per_partition[msg.partition()].append(msg.offset())
                at_end.discard(msg.partition())
            elif err.code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
            else:
                errors.append(f"consume error: {err}")

    if args.commit != "none":
        offsets = []
        for p, read in per_partition.items():
            if not read:
                continue
            offset = read[len(read) // 2] if args.commit == "half" else read[-1] + 1
            offsets.append(TopicPartition(args.topic, p, offset))
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)
    committed = {}
    for tp in consumer.committed(
        [TopicPartition(args.topic, p) for p in range(args.partitions)], timeout=30
    ):
        if tp.error is not None:
            errors.append(f"committed({tp.partition}): {tp.error}")
        committed[str(tp.partition)] = tp.offset
    consumer.close()
    json.dump({"records": records, "committed": committed, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        print(f"consume.py: {e}", file=sys.stderr)
        sys.exit(1)
