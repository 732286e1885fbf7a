#!/usr/bin/env python3
"""A Jepsen-style checker for replicated partitions, with confluent-kafka (librdkafka).

Usage: checker.py BOOTSTRAP TOPIC --partitions P --seconds S [--rate R] [--acks all|1]
                  [--idempotence true|false]

Produces unique records ("<n>", key "k<n mod 64>") at R records per second for S seconds while a
consumer reads every partition from the beginning; then reads every partition again, from the
beginning to its high watermark, with a fresh consumer. Prints progress lines while producing
("progress acked=<n> errors=<n>", every 0.25 s, flushed) and finally one JSON line:

  {"acked": n, "produce_errors": n, "lost": n, "lost_by_partition": {p: n}, "duplicated": n,
   "duplicates": [[p, first offset, offset], ...], "out_of_order": n, "vanished": n,
   "final_records": n, "examples": {...}}

- lost: acknowledged records absent from the final read (lost_by_partition: their partitions);
- duplicated: records present more than once in the final read; duplicates: where (the first
  1,000), so the caller can read both copies' producer epoch and sequence;
- out_of_order: consecutive records of one partition in the final read whose numbers go down
  (one producer, idempotent: each partition must hold its records in send order); a second copy
  counts as duplicated only, not also as out of order;
- vanished: records the live consumer saw that are absent from the final read (a consumer must
  never see a record that is later lost).

RAFKA_CHECKER_DEBUG=<contexts> passes librdkafka's `debug` setting to the producer (msg,broker,...).
"""

import argparse
import json
import os
import sys
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def consumer(bootstrap, name):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )


def live_reader(bootstrap, topic, partitions, seen, stop):
    c = consumer(bootstrap, "checker-live")
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    while not stop.is_set():
        msg = c.poll(0.1)
        if msg is None or msg.error():
            continue
        seen.add(msg.value())
    c.close()


def final_read(bootstrap, topic, partitions, deadline_s=60):
    c = consumer(bootstrap, "checker-final")
    ends = {}
    deadline = time.monotonic() + deadline_s
    for p in range(partitions):
        while True:
            try:
                _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                ends[p] = high
                break
            except Exception:  # leader moving: ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    records = {p: [] for p in range(partitions)}
    pending = {p for p in range(partitions) if ends[p] > 0}
    while pending and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is None or msg.error():
            continue
        p = msg.partition()
        records[p].append((msg.value(), msg.offset()))
        if msg.offset() + 1 >= ends[p]:
            pending.discard(p)
    c.close()
    if pending:
        raise SystemExit(f"checker: final read incomplete for partitions {sorted(pending)}")
    return records


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--acks", default="all")
    parser.add_argument("--idempotence", choices=["true", "false"], default="true")
    args = parser.parse_args()

    acked = {}  # value -> partition
    errors = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked[msg.value()] = msg.partition()
            else:
                errors.append(str(err))

    config = {
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": args.idempotence == "true",
        "acks": args.acks,
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "topic.metadata.refresh.interval.ms": 1000,
        "retry.backoff.ms": 50,
    }
    if os.environ.get("RAFKA_CHECKER_DEBUG"):
        config["debug"] = os.environ["RAFKA_CHECKER_DEBUG"]
    if args.idempotence != "true":
        # Without idempotence a retry writes a record twice when the first attempt's answer was
        # lost (a network split): the plain producer does not retry, so a failed send is an
        # error, not a duplicate, and any duplicate in the log is the broker's.
        config["retries"] = 0
    producer = Producer(config)
    seen = set()
    stop = threading.Event()
    reader = threading.Thread(
        target=live_reader, args=(args.bootstrap, args.topic, args.partitions, seen, stop)
    )
    reader.start()

    started = time.monotonic()
    next_progress = started
    n = 0
    while True:
        now = time.monotonic()
        elapsed = now - started
        if elapsed >= args.seconds:
            break
        due = int(elapsed * args.rate)
        while n < due:
            try:
                producer.produce(args.topic, key=f"k{n % 64}".encode(), value=str(n).encode(),
                                 on_delivery=on_delivery)
                n += 1
            except BufferError:
                break
        producer.poll(0.005)
        if now >= next_progress:
            with lock:
                print(f"progress acked={len(acked)} errors={len(errors)}", flush=True)
            next_progress = now + 0.25
    producer.flush(90)
    # Let the live reader catch up with what was acknowledged (or give up after 10 s: what it
    # did not see it cannot have seen vanish).
    deadline = time.monotonic() + 10
    while not acked.keys() <= seen and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join()

    records = final_read(args.bootstrap, args.topic, args.partitions)
    final = {}
    duplicated = 0
    duplicates = []
    out_of_order = 0
    examples = {}
    for p, values in records.items():
        last = -1
        for v, offset in values:
            if v in final:
                duplicated += 1
                first_p, first_offset = final[v]
                if len(duplicates) < 1000:
                    duplicates.append([p, first_offset, offset])
                examples.setdefault("duplicated", [])
                if len(examples["duplicated"]) < 5:
                    examples["duplicated"].append(
                        f"{v.decode()} at {first_p}/{first_offset} and {p}/{offset}"
                    )
                continue
            final[v] = (p, offset)
            num = int(v)
            if num < last:
                out_of_order += 1
                examples.setdefault("out_of_order", f"partition {p}: {num} after {last}")
            last = num
    lost = [v for v in acked if v not in final]
    vanished = [v for v in seen if v not in final]
    lost_by_partition = {}
    for v in lost:
        lost_by_partition[acked[v]] = lost_by_partition.get(acked[v], 0) + 1
    if lost:
        examples["lost"] = sorted(int(v) for v in lost)[:10]
    if vanished:
        examples["vanished"] = sorted(int(v) for v in vanished)[:10]
    report = {
        "sent": n,
        "acked": len(acked),
        "produce_errors": len(errors),
        "lost": len(lost),
        "lost_by_partition": {str(p): n for p, n in sorted(lost_by_partition.items())},
        "duplicated": duplicated,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "vanished": len(vanished),
        "seen_by_live_consumer": len(seen),
        "final_records": sum(len(v) for v in records.values()),
        "examples": examples,
        "first_errors": errors[:5],
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
