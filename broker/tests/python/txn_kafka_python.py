#!/usr/bin/env python3
"""Transactions with kafka-python's transactional producer (KafkaProducer with transactional_id)
and its read_committed consumer, scripted as a user would write them; prints one JSON object
with what happened (the same shapes as txn.py, which drives confluent-kafka).

Usage:
  txn_kafka_python.py BOOTSTRAP commit-abort TOPIC [TOPIC...]
      Transaction 1 writes "c1-<topic>-<i>" (i < 3) to partition 0 of every topic and commits;
      transaction 2 writes "a2-..." and aborts; transaction 3 writes "c3-..." and commits. Then
      every topic is read from the start to its end, read_committed and read_uncommitted:
      {"read_committed": {topic: [value, ...]}, "read_uncommitted": {...}, "errors": [...],
       "version": "<kafka-python version>"}
  txn_kafka_python.py BOOTSTRAP fence TOPIC
      Producer A (transactional_id "kp-fence-<topic>") begins a transaction and writes; producer
      B with the same id initializes, which fences A; A then tries to write and commit:
      {"a_commit_error": {"name": ..., "fatal": bool}, "b_committed": bool,
       "read_committed": [value, ...], "errors": [...]}
"""

import json
import sys
import time

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as Errors

DEADLINE_S = 60
# Errors after which a transactional producer cannot go on (kafka-python raises them as such).
FATAL = (Errors.ProducerFencedError, Errors.InvalidProducerEpochError)


def producer(bootstrap, transactional_id):
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        linger_ms=5,
        max_block_ms=30000,
    )


def error_of(exc):
    return {
        "name": type(exc).__name__,
        "fatal": isinstance(exc, FATAL),
        "message": str(exc),
    }


def read_all(bootstrap, topic, isolation, partition=0):
    """Every value of `topic`/`partition` from the start to the end the broker reports for this
    isolation level (the last stable offset for read_committed)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation,
        auto_offset_reset="earliest",
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        values = []
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value.decode() for r in records)
        return values
    finally:
        consumer.close()


def commit_abort(bootstrap, topics):
    p = producer(bootstrap, f"kp-commit-abort-{topics[0]}")
    p.init_transactions()
    for name, commit in (("c1", True), ("a2", False), ("c3", True)):
        p.begin_transaction()
        for topic in topics:
            for i in range(3):
                p.send(topic, value=f"{name}-{topic}-{i}".encode(), partition=0)
        if commit:
            p.commit_transaction()
        else:
            p.flush()
            p.abort_transaction()
    p.close()
    result = {
        "read_committed": {},
        "read_uncommitted": {},
        "errors": [],
        "version": kafka.__version__,
    }
    for topic in topics:
        result["read_committed"][topic] = read_all(bootstrap, topic, "read_committed")
        result["read_uncommitted"][topic] = read_all(bootstrap, topic, "read_uncommitted")
    return result


def fence(bootstrap, topic):
    tid = f"kp-fence-{topic}"
    a = producer(bootstrap, tid)
    a.init_transactions()
    a.begin_transaction()
    a.send(topic, value=b"from-a", partition=0)
    a.flush()
    b = producer(bootstrap, tid)
    b.init_transactions()
    b.begin_transaction()
    b.send(topic, value=b"from-b", partition=0)
    b.commit_transaction()
    a_error = None
    try:
        a.send(topic, value=b"from-a-again", partition=0)
        a.commit_transaction()
    except Exception as e:  # what kafka-python raises is the point of the test
        a_error = error_of(e)
    try:
        a.close(timeout=5)
    except Exception:
        pass
    b.close()
    return {
        "a_commit_error": a_error,
        "b_committed": True,
        "read_committed": read_all(bootstrap, topic, "read_committed"),
        "errors": [],
    }


def main():
    bootstrap, scenario, *args = sys.argv[1:]
    if scenario == "commit-abort":
        result = commit_abort(bootstrap, args)
    elif scenario == "fence":
        result = fence(bootstrap, args[0])
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
