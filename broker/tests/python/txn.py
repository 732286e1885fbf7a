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
  txn.py BOOTSTRAP seed-aborted TOPIC PARTITIONS COUNT
      One transaction writes "aborted-<p>-<i>" (i < COUNT) to every partition p of TOPIC and is
      aborted: {"aborted": n, "errors": [...]}
  txn.py BOOTSTRAP copy IN OUT GROUP BATCH
      Consume-transform-produce, as an exactly-once application is written with librdkafka: reads
      IN (read_committed, group GROUP, no auto commit) and per transaction of at most BATCH
      records writes "<value>-copied" (same key, same partition) to OUT and commits the input
      offsets with send_offsets_to_transaction, until the group's committed offsets reach IN's
      end on every partition. Broker failures are survived as the librdkafka docs say: a
      retriable error is retried, an abortable one aborts the transaction and rewinds the
      consumer to the group's committed offsets, a fatal one replaces the producer (whose
      init_transactions completes or aborts what the old one left) and rewinds. Prints
      {"progress": <input offsets committed, all partitions>} after every commit, then:
      {"copied": n, "transactions": n, "aborted": n, "producers": n, "done": bool,
       "errors": [...]}
  txn.py BOOTSTRAP compacted TOPIC KEYS
      On a compacted topic: transaction A writes "A-<i>" to key "k-<i>" (i < KEYS) and commits;
      transaction B writes "B-<i>" to the same keys and aborts; transaction C writes "C-<i>" to
      the first KEYS/2 keys and commits; then an idempotent producer without transactions writes
      50 rounds of "filler-<j>" (j < 20), so the transactions leave the active segment:
      {"delivered": [[key, value, offset, "committed" | "aborted" | "plain"], ...],
       "errors": [...]}
  txn.py BOOTSTRAP dump TOPIC PARTITIONS ISOLATION
      Every value of every partition of TOPIC from the start to its end under ISOLATION:
      {"partitions": {"<p>": [value, ...]}}
"""

import json
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

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


def seed_aborted(bootstrap, topic, partitions, count):
    p = producer(bootstrap, f"seed-{topic}")
    p.init_transactions(30)
    p.begin_transaction()
    for partition in range(partitions):
        for i in range(count):
            p.produce(topic, value=f"aborted-{partition}-{i}".encode(), partition=partition)
    p.flush(30)
    p.abort_transaction(30)
    return {"aborted": partitions * count, "errors": []}


class Copier:
    """The consume-transform-produce loop of `copy`, with its recovery from broker failures."""

    def __init__(self, bootstrap, source, target, group, batch):
        self.bootstrap = bootstrap
        self.target = target
        self.group = group
        self.batch = batch
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        metadata = self.consumer.list_topics(source, timeout=30)
        partitions = sorted(metadata.topics[source].partitions)
        self.end = {}
        for partition in partitions:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(source, partition), timeout=30, cached=False
            )
            self.end[partition] = high
        self.committed = {partition: 0 for partition in partitions}
        self.consumer.subscribe([source])
        self.producer = None
        self.producers = 0
        self.copied = 0
        self.transactions = 0
        self.aborted = 0
        self.errors = []

    def note(self, what, exc):
        error = error_of(exc)
        error["during"] = what
        self.errors.append(error)
        sys.stderr.write(f"error during {what}: {error}\n")
        sys.stderr.flush()

    def new_producer(self):
        if self.producer is not None:
            self.producer.flush(0)
        self.producer = producer(self.bootstrap, f"copy-{self.group}")
        self.producers += 1
        while True:
            try:
                self.producer.init_transactions(30)
                return
            except KafkaException as e:
                self.note("init_transactions", e)
                if e.args[0].fatal():
                    self.producer = producer(self.bootstrap, f"copy-{self.group}")
                    self.producers += 1

    def rewind(self):
        """Seeks every assigned partition back to the group's committed offset."""
        while True:
            try:
                assignment = self.consumer.assignment()
                for tp in self.consumer.committed(assignment, timeout=30):
                    offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                    self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
                    self.committed[tp.partition] = max(tp.offset, 0)
                return
            except KafkaException as e:
                self.note("rewind", e)
                time.sleep(0.5)

    def done(self):
        return all(self.committed[p] >= end for p, end in self.end.items())

    def end_transaction(self, offsets):
        """Sends the offsets and commits; returns whether the transaction committed."""
        group = self.consumer.consumer_group_metadata()
        steps = (
            ("send_offsets_to_transaction",
             lambda: self.producer.send_offsets_to_transaction(offsets, group, 30)),
            ("commit_transaction", lambda: self.producer.commit_transaction(30)),
        )
        for what, step in steps:
            while True:
                try:
                    step()
                    break
                except KafkaException as e:
                    self.note(what, e)
                    error = e.args[0]
                    if error.txn_requires_abort():
                        self.abort()
                        return False
                    if error.fatal() or not error.retriable():
                        # The outcome is the coordinator's to finish: a new producer's
                        # init_transactions completes or aborts it, the group's offsets say which.
                        self.new_producer()
                        self.rewind()
                        return False
        return True

    def abort(self):
        while True:
            try:
                self.producer.abort_transaction(30)
                break
            except KafkaException as e:
                self.note("abort_transaction", e)
                if e.args[0].fatal() or not e.args[0].retriable():
                    self.new_producer()
                    break
        self.aborted += 1
        self.rewind()

    def run(self, deadline):
        self.new_producer()
        while not self.done() and time.monotonic() < deadline:
            messages = self.consumer.consume(self.batch, 1.0)
            messages = [m for m in messages if not m.error()]
            if not messages:
                continue
            try:
                self.producer.begin_transaction()
                offsets = {}
                for m in messages:
                    self.producer.produce(
                        self.target,
                        key=m.key(),
                        value=m.value() + b"-copied",
                        partition=m.partition(),
                    )
                    offsets[m.partition()] = (m.topic(), m.offset() + 1)
                    self.producer.poll(0)
            except (KafkaException, BufferError) as e:
                self.note("produce", e)
                self.abort()
                continue
            positions = [TopicPartition(t, p, o) for p, (t, o) in offsets.items()]
            if self.end_transaction(positions):
                for tp in positions:
                    self.committed[tp.partition] = tp.offset
                self.copied += len(messages)
                self.transactions += 1
                print(json.dumps({"progress": sum(self.committed.values())}), flush=True)
        self.consumer.close()
        return {
            "copied": self.copied,
            "transactions": self.transactions,
            "aborted": self.aborted,
            "producers": self.producers,
            "done": self.done(),
            "errors": self.errors,
        }


def copy(bootstrap, source, target, group, batch):
    return Copier(bootstrap, source, target, group, batch).run(time.monotonic() + 10 * DEADLINE_S)


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


def dump(bootstrap, topic, partitions, isolation):
    return {
        "partitions": {
            str(p): read_all(bootstrap, topic, isolation, partition=p) for p in range(partitions)
        }
    }


def main():
    bootstrap, scenario, *args = sys.argv[1:]
    if scenario == "commit-abort":
        result = commit_abort(bootstrap, args)
    elif scenario == "fence":
        result = fence(bootstrap, args[0])
    elif scenario == "timeout":
        result = timeout(bootstrap, args[0], int(args[1]))
    elif scenario == "seed-aborted":
        result = seed_aborted(bootstrap, args[0], int(args[1]), int(args[2]))
    elif scenario == "copy":
        result = copy(bootstrap, args[0], args[1], args[2], int(args[3]))
    elif scenario == "compacted":
        result = compacted(bootstrap, args[0], int(args[1]))
    elif scenario == "dump":
        result = dump(bootstrap, args[0], int(args[1]), args[2])
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
