#!/usr/bin/env python3
"""Time from a partition leader's SIGKILL to the first acks=all write acknowledged on that
partition again (confluent-kafka, idempotent producer, one record in flight at a time).

Usage: scripts/failover-time.py BOOTSTRAP TOPIC PARTITION LEADER_PID [--warmup-s 3] [--after-s 20]

Writes one record at a time to PARTITION until WARMUP_S have passed, sends SIGKILL to LEADER_PID
(a rafka-node this script's caller started and recorded), then keeps writing and prints, as JSON,
the time from the kill to the first acknowledgement of a record sent after it, and how long the
last record before the kill took.
"""

import argparse
import json
import os
import signal
import time

from confluent_kafka import Producer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("partition", type=int)
    parser.add_argument("leader_pid", type=int)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--after-s", type=float, default=20.0)
    args = parser.parse_args()

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            "message.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 1000,
            "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 100,
        }
    )
    acked_at = []

    def on_delivery(err, msg):
        if err is None:
            acked_at.append(time.monotonic())

    def write_one(i):
        producer.produce(args.topic, value=str(i).encode(), partition=args.partition,
                         on_delivery=on_delivery)
        producer.flush(60)

    started = time.monotonic()
    i = 0
    while time.monotonic() - started < args.warmup_s:
        write_one(i)
        i += 1
    before = len(acked_at)
    killed = time.monotonic()
    os.kill(args.leader_pid, signal.SIGKILL)
    write_one(i)
    first_after = acked_at[before] - killed if len(acked_at) > before else None
    while time.monotonic() - killed < args.after_s:
        i += 1
        write_one(i)
    print(json.dumps({
        "records_before_kill": before,
        "kill_to_first_ack_s": first_after,
        "records_after_kill": len(acked_at) - before,
    }))


if __name__ == "__main__":
    main()
