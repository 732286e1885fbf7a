#!/usr/bin/env python3
"""send_offsets_to_transaction with confluent-kafka (librdkafka), step by step: prints one JSON
event per line and reads a command from stdin between steps, so the test can look at the
group's offsets on the broker in between.

Usage: txn_offsets.py BOOTSTRAP TOPIC GROUP   (TOPIC has one partition; "txo-out" exists)

  -> {"event": "consumed", "count": 10}   10 records written to TOPIC and read by a member of
                                          GROUP (read_committed, no auto commit)
  -> {"event": "sent", "offset": 5}       a transaction (one record to txo-out) holds offset 5
                                          of TOPIC/0 for GROUP (send_offsets_to_transaction with
                                          the consumer's group metadata), not yet ended
  <- abort  -> {"event": "aborted"}
  <- again  -> {"event": "sent", "offset": 10}   the next transaction holds the position (10)
  <- commit -> {"event": "committed"}
  -> {"event": "seen", "offset": n}       what the consumer's committed() reads (require_stable)
  -> {"event": "done", "errors": [...]}
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

DEADLINE_S = 60
OUT = "txo-out"


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def command(expected):
    line = sys.stdin.readline().strip()
    if line != expected:
        raise SystemExit(f"expected {expected!r} on stdin, got {line!r}")


def main():
    bootstrap, topic, group = sys.argv[1:4]
    errors = []
    plain = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        plain.produce(topic, value=f"v{i}".encode(), partition=0)
    plain.flush(30)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    count = 0
    deadline = time.monotonic() + DEADLINE_S
    while count < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            errors.append(str(message.error()))
            continue
        count += 1
    emit(event="consumed", count=count)

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"txo-{group}"})
    producer.init_transactions(30)

    def send(offset):
        producer.begin_transaction()
        producer.produce(OUT, value=f"out-{offset}".encode(), partition=0)
        producer.send_offsets_to_transaction(
            [TopicPartition(topic, 0, offset)], consumer.consumer_group_metadata(), 30
        )
        producer.flush(30)
        emit(event="sent", offset=offset)

    send(5)
    command("abort")
    producer.abort_transaction(30)
    emit(event="aborted")
    command("again")
    position = consumer.position([TopicPartition(topic, 0)])[0].offset
    send(position)
    command("commit")
    producer.commit_transaction(30)
    emit(event="committed")
    try:
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        emit(event="seen", offset=committed[0].offset)
    except KafkaException as e:
        errors.append(str(e))
        emit(event="seen", offset=None)
    consumer.close()
    emit(event="done", errors=errors)


if __name__ == "__main__":
    main()
