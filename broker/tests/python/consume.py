#!/usr/bin/env python3
"""Reads a topic with confluent-kafka (librdkafka) using assign(), to the end of every partition,
optionally commits offsets synchronously, and prints what it read as JSON.

Usage: consume.py BOOTSTRAP TOPIC --partitions N --group G [--start beginning|stored]
                  [--commit none|half|end] [--isolation read_committed|read_uncommitted]
                  [--timeout-s S] [--out FILE]

--start stored resumes from the group's committed offsets (earliest where none). --commit half
commits, per partition, the offset of the middle record read; --commit end the next offset to
read. --out FILE writes the records to FILE instead of the JSON, one line each in the order read:
"PARTITION OFFSET KEY VALUE\n", key and value as raw bytes (kcat's -f '%p %o %k %s\n'), so that
a million records need neither be held nor hex-encoded. Output (stdout), one JSON object:
  {"records": [[partition, offset, key, value_hex], ...] in the order read (without --out),
   "read": n,
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
    libversion,
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
    parser.add_argument("--out", help="write records to this file instead of the JSON")
    args = parser.parse_args()

    errors = []
    config = {}
    if libversion()[1] >= 0x020300FF:
        # Once queued.min.messages (100000) records wait in the client, librdkafka >= 2.3 stops
        # fetching for fetch.queue.backoff.ms (1 s by default), which caps this loop at ~100k
        # records/s; retry soon instead.
        config["fetch.queue.backoff.ms"] = 10
    consumer = Consumer(
        {
            **config,
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
    out = open(args.out, "wb") if args.out else None
    read = 0
    # The offsets read, per partition, only where a commit needs them.
    per_partition = {p: [] for p in range(args.partitions)}
    track = args.commit != "none"
    at_end = set()
    deadline = time.monotonic() + args.timeout_s
    while len(at_end) < args.partitions:
        if time.monotonic() > deadline:
            errors.append(f"timed out with {read} records; at the end of {sorted(at_end)}")
            break
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            err = msg.error()
            if err is None:
                partition = msg.partition()
                offset = msg.offset()
                if out is not None:
                    out.write(b"%d %d %s %s\n" % (partition, offset, msg.key(), msg.value()))
                else:
                    records.append([partition, offset, msg.key().decode(), msg.value().hex()])
                read += 1
                if track:
                    per_partition[partition].append(offset)
                at_end.discard(partition)
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
    report = {"read": read, "committed": committed, "errors": errors}
    if out is not None:
        out.close()
    else:
        report["records"] = records
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        print(f"consume.py: {e}", file=sys.stderr)
        sys.exit(1)
