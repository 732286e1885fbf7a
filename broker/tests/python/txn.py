#!/usr/bin/env python3
"""Transactions with confluent-kafka (librdkafka), scripted as a user would write them; prints one
JSON object with what happened.

Usage:
  txn.py BOOTSTRAP commit-abort TOPIC [TOPIC...]
      Transaction 1 writes "c1-<topic>-<i>" (i < 3) to partition 0 of every topic and commits;
      transaction 2 writes "a2-..." and aborts; transaction 3 writes "c3-..." and commits. Then
      every topic is read from the start to its end, read_committed and read_uncommitted:
      {"read_committed": {topic: [value, ...]}, "read_uncommitted": {...}, "errors": [...]}
  txn.py BOOTSTRAP fence TOPIC
      Producer A (transactional.id "fence-<topic>") begins a transaction and writes; producer B
      with the same id initializes, which fences A; A then tries to commit:
      {"a_commit_error": {"name": ..., "fatal": bool}, "b_committed": bool,
       "read_committed": [value, ...], "errors": [...]}
  txn.py BOOTSTRAP timeout TOPIC TIMEOUT_MS
      A producer with transaction.timeout.ms=TIMEOUT_MS begins a transaction, writes and waits
      (at most 60 s) until read_committed readers are no longer held back by it (the coordinator
      aborted it); then it tries to commit:
      {"released_after_ms": n, "commit_error": {"name": ..., "fatal": bool, "abortable": bool},
       "read_committed": [value, ...], "errors": [...]}
  txn.py BOOTSTRAP copy IN OUT GROUP COUNT BATCH
      Consume-transform-produce: reads IN (read_committed, group GROUP, no auto commit) and for
      every BATCH records writes "<value>-copied" to OUT and commits the input offsets with
      send_offsets_to_transaction, until COUNT records were copied:
      {"copied": n, "transactions": n, "errors": [...]}
  txn.py BOOTSTRAP compacted TOPIC KEYS
      On a compacted topic: transaction A writes "A-<i>" to key "k-<i>" (i < KEYS) and commits;
      transaction B writes "B-<i>" to the same keys and aborts; transaction C writes "C-<i>" to
      the first KEYS/2 keys and commits; then an idempotent producer without transactions writes
      50 rounds of "filler-<j>" (j < 20), so the transactions leave the active segment:
      {"delivered": [[key, value, offset, "committed" | "aborted" | "plain"], ...],
       "errors": [...]}
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

DEADLINE_S = 60


def producer(bootstrap, transactional_id, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "linger.ms": 5,
    }
    config.update(extra)
    return Producer(config)


def error_of(exc):
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return {
            "name": err.name(),
            "fatal": err.fatal(),
            "abortable": err.txn_requires_abort(),
            "retriable": err.retriable(),
        }
    return {"name": str(exc), "fatal": False, "abortable": False, "retriable": False}


def high_watermark(bootstrap, topic, partition):
    """The partition's high watermark (a read_uncommitted query: markers included)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"hw-{topic}-{time.time_ns()}",
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        consumer.close()


def read_all(bootstrap, topic, isolation, partition=0):
    """Every value of `topic`/`partition` up to its high watermark as `isolation` reads it.
    EndTxn is answered before the markers are written (as in Kafka), so right after a commit
    the last stable offset may still trail: a read_committed reader waits until its position
    reaches the high watermark, which it does once every marker is in."""
    end = high_watermark(bootstrap, topic, partition)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}-{isolation}-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        tp = TopicPartition(topic, partition, 0)
        consumer.assign([tp])
        values = []
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if position >= end:
                break
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(message.error())
            values.append(message.value().decode())
        return values
    finally:
        consumer.close()


def commit_abort(bootstrap, topics):
    errors = []
    p = producer(bootstrap, f"commit-abort-{topics[0]}")
    p.init_transactions(30)
    for name, commit in (("c1", True), ("a2", False), ("c3", True)):
        p.begin_transaction()
        for topic in topics:
            for i in range(3):
                p.produce(topic, value=f"{name}-{topic}-{i}".encode(), partition=0)
        if commit:
            p.commit_transaction(30)
        else:
            p.flush(30)
            p.abort_transaction(30)
    result = {"read_committed": {}, "read_uncommitted": {}, "errors": errors}
    for topic in topics:
        result["read_committed"][topic] = read_all(bootstrap, topic, "read_committed")
        result["read_uncommitted"][topic] = read_all(bootstrap, topic, "read_uncommitted")
    return result


def fence(bootstrap, topic):
    tid = f"fence-{topic}"
    a = producer(bootstrap, tid)
    a.init_transactions(30)
    a.begin_transaction()
    a.produce(topic, value=b"from-a", partition=0)
    a.flush(30)
    b = producer(bootstrap, tid)
    b.init_transactions(60)
    b.begin_transaction()
    b.produce(topic, value=b"from-b", partition=0)
    b.commit_transaction(30)
    a_error = None
    try:
        a.produce(topic, value=b"from-a-again", partition=0)
        a.commit_transaction(30)
    except KafkaException as e:
        a_error = error_of(e)
    return {
        "a_commit_error": a_error,
        "b_committed": True,
        "read_committed": read_all(bootstrap, topic, "read_committed"),
        "errors": [],
    }


def timeout(bootstrap, topic, timeout_ms):
    p = producer(bootstrap, f"timeout-{topic}", **{"transaction.timeout.ms": timeout_ms})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"left-open", partition=0)
    p.flush(30)
    started = time.monotonic()
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"lso-{topic}",
            "isolation.level": "read_committed",
        }
    )
    released_after = None
    tp = TopicPartition(topic, 0)
    while time.monotonic() < started + DEADLINE_S:
        # Under read_committed the high end reported is the last stable offset.
        _, stable = reader.get_watermark_offsets(tp, timeout=10, cached=False)
        if stable > 0:
            released_after = int((time.monotonic() - started) * 1000)
            break
        time.sleep(0.1)
    reader.close()
    commit_error = None
    try:
        p.commit_transaction(30)
    except KafkaException as e:
        commit_error = error_of(e)
    return {
        "released_after_ms": released_after,
        "commit_error": commit_error,
        "read_committed": read_all(bootstrap, topic, "read_committed"),
        "errors": [],
    }


def copy(bootstrap, source, target, group, count, batch):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([source])
    p = producer(bootstrap, f"copy-{group}")
    p.init_transactions(30)
    copied = 0
    transactions = 0
    errors = []
    deadline = time.monotonic() + 5 * DEADLINE_S
    while copied < count and time.monotonic() < deadline:
        messages = consumer.consume(batch, 1.0)
        messages = [m for m in messages if not m.error()]
        if not messages:
            continue
        p.begin_transaction()
        for m in messages:
            p.produce(target, key=m.key(), value=m.value() + b"-copied", partition=m.partition())
        p.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        p.commit_transaction(30)
        copied += len(messages)
        transactions += 1
    consumer.close()
    return {"copied": copied, "transactions": transactions, "errors": errors}


def compacted(bootstrap, topic, keys):
    delivered = []
    errors = []

    def report(outcome):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                delivered.append([msg.key().decode(), msg.value().decode(), msg.offset(), outcome])

        return on_delivery

    p = producer(bootstrap, f"compacted-{topic}")
    p.init_transactions(30)
    for name, count, commit in (("A", keys, True), ("B", keys, False), ("C", keys // 2, True)):
        outcome = "committed" if commit else "aborted"
        p.begin_transaction()
        for i in range(count):
            p.produce(topic, key=f"k-{i}".encode(), value=f"{name}-{i}".encode(), partition=0,
                      on_delivery=report(outcome))
        # Deliveries (with their offsets) are reported before the transaction ends.
        p.flush(30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for version in range(50):
        for j in range(20):
            plain.produce(topic, key=f"filler-{j}".encode(), value=f"filler-{j}@{version}".encode(),
                          partition=0, on_delivery=report("plain"))
        plain.poll(0)
    remaining = plain.flush(30)
    if remaining:
        errors.append(f"{remaining} filler records not delivered")
    return {"delivered": delivered, "errors": errors}


def main():
    bootstrap, scenario, *args = sys.argv[1:]
    if scenario == "commit-abort":
        result = commit_abort(bootstrap, args)
    elif scenario == "fence":
        result = fence(bootstrap, args[0])
    elif scenario == "timeout":
        result = timeout(bootstrap, args[0], int(args[1]))
    elif scenario == "copy":
        result = copy(bootstrap, args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif scenario == "compacted":
        result = compacted(bootstrap, args[0], int(args[1]))
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
