#!/usr/bin/env python3
"""One consumer-group member for the tests: subscribe()s to TOPIC in GROUP with confluent-kafka
(librdkafka) or kafka-python, and prints one JSON object per line on stdout:

  {"event": "assignment", "kind": "assign"|"revoke"|"lost", "changed": [p...], "partitions": [p...]}
  {"event": "record", "partition": p, "offset": o, "generation": g}
  {"event": "committed", "offsets": {"p": offset, ...}}       (confluent-kafka, successful commits)
  {"event": "error", "error": "..."}
  {"event": "closed"}

With --watch N it joins nothing: every 200 ms it asks the group's coordinator for the committed
offsets of partitions 0..N-1 (OffsetFetch) and prints {"event": "watched", "offsets": {"p": o}}.

A record's generation is the member's group generation when poll() returned it (librdkafka's
consumer group metadata, kafka-python's group_metadata()), so the test can check that no two
members consume one partition in one generation.

It commits what it consumed (auto-commit every --commit-interval-ms, synchronously on close), and
leaves the group (consumer.close(): LeaveGroup, except for static members) when its standard
input says "close" or ends.
"""

import argparse
import json
import struct
import sys
import threading
import time

lock = threading.Lock()


def emit(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def watch_stdin(stop):
    for line in sys.stdin:
        if line.strip() == "close":
            break
    stop.set()


def librdkafka_generation(consumer):
    """The generation in librdkafka's serialized consumer group metadata: the magic "CGMDv2:",
    then the generation id as a native int32 (rd_kafka_consumer_group_metadata_write)."""
    blob = consumer.consumer_group_metadata()
    magic = b"CGMDv2:"
    if not isinstance(blob, bytes) or not blob.startswith(magic) or len(blob) < len(magic) + 4:
        raise RuntimeError("unknown consumer group metadata layout: %r" % (blob,))
    return struct.unpack_from("=i", blob, len(magic))[0]


def run_confluent(args, stop):
    from confluent_kafka import Consumer, KafkaException

    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": args.commit_interval_ms,
        "session.timeout.ms": args.session_ms,
        "heartbeat.interval.ms": max(100, args.session_ms // 6),
        "partition.assignment.strategy": args.assignor,
        "topic.metadata.refresh.interval.ms": 2000,
        "on_commit": lambda err, parts: on_commit(err, parts),
    }
    if args.instance_id:
        config["group.instance.id"] = args.instance_id
    consumer = Consumer(config)

    def on_commit(err, parts):
        if err is not None:
            emit({"event": "error", "error": "commit: %s" % err})
            return
        offsets = {str(p.partition): p.offset for p in parts if p.error is None and p.offset >= 0}
        if offsets:
            emit({"event": "committed", "offsets": offsets})

    def current():
        try:
            return sorted(p.partition for p in consumer.assignment())
        except KafkaException:
            return []

    cooperative = args.assignor == "cooperative-sticky"

    def on_assign(c, parts):
        if cooperative:
            c.incremental_assign(parts)
        else:
            c.assign(parts)
        emit({"event": "assignment", "kind": "assign",
              "changed": sorted(p.partition for p in parts), "partitions": current()})

    def give_up(kind):
        def callback(c, parts):
            if cooperative:
                c.incremental_unassign(parts)
            else:
                c.unassign()
            emit({"event": "assignment", "kind": kind,
                  "changed": sorted(p.partition for p in parts), "partitions": current()})
        return callback

    on_revoke = give_up("revoke")
    on_lost = give_up("lost")

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while not stop.is_set():
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        if msg.error():
            emit({"event": "error", "error": str(msg.error())})
            continue
        emit({"event": "record", "partition": msg.partition(), "offset": msg.offset(),
              "generation": librdkafka_generation(consumer)})
    consumer.close()
    emit({"event": "closed"})


def run_watch(args, stop):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group})
    wanted = [TopicPartition(args.topic, p) for p in range(args.watch)]
    while not stop.wait(0.2):
        try:
            parts = consumer.committed(wanted, timeout=5)
        except Exception as e:  # a coordinator moving: try again
            emit({"event": "error", "error": "committed: %r" % (e,)})
            continue
        offsets = {str(p.partition): p.offset for p in parts if p.error is None and p.offset >= 0}
        emit({"event": "watched", "offsets": offsets})
    consumer.close()
    emit({"event": "closed"})


def run_kafka_python(args, stop):
    from kafka import KafkaConsumer, ConsumerRebalanceListener

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=args.commit_interval_ms,
        session_timeout_ms=args.session_ms,
        heartbeat_interval_ms=max(100, args.session_ms // 6),
        metadata_max_age_ms=2000,
    )

    def current():
        return sorted(tp.partition for tp in consumer.assignment())

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit({"event": "assignment", "kind": "revoke",
                  "changed": sorted(tp.partition for tp in revoked), "partitions": []})

        def on_partitions_assigned(self, assigned):
            emit({"event": "assignment", "kind": "assign",
                  "changed": sorted(tp.partition for tp in assigned),
                  "partitions": sorted(tp.partition for tp in assigned)})

    consumer.subscribe([args.topic], listener=Listener())
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=100)
        generation = consumer.group_metadata().generation_id
        for tp, records in batches.items():
            for r in records:
                emit({"event": "record", "partition": tp.partition, "offset": r.offset,
                      "generation": generation})
    consumer.close()
    emit({"event": "closed"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--instance-id", default=None)
    parser.add_argument("--assignor", default="range,roundrobin")
    parser.add_argument("--session-ms", type=int, default=6000)
    parser.add_argument("--commit-interval-ms", type=int, default=500)
    parser.add_argument("--watch", type=int, default=0)
    args = parser.parse_args()
    stop = threading.Event()
    threading.Thread(target=watch_stdin, args=(stop,), daemon=True).start()
    try:
        if args.watch:
            run_watch(args, stop)
        elif args.client == "confluent":
            run_confluent(args, stop)
        else:
            run_kafka_python(args, stop)
    except Exception as e:  # reported, so the test shows why a member died
        emit({"event": "error", "error": "fatal: %r" % (e,)})
        raise


if __name__ == "__main__":
    main()
