#!/usr/bin/env python3
"""Transactions with confluent-kafka (librdkafka) for the coordinator's metrics test; each step
prints one JSON object ({"errors": [...]}) and exits.

Usage:
  txn_metrics.py BOOTSTRAP commit-abort TOPIC ID
      Producer ID commits a transaction of two records to partition 0 of TOPIC, then aborts one
      of one record.
  txn_metrics.py BOOTSTRAP leave-open TOPIC ID TIMEOUT_MS
      Producer ID (transaction.timeout.ms=TIMEOUT_MS) begins a transaction, writes one record to
      partition 0 of TOPIC, waits for its acknowledgement, and exits without ending it: the
      transaction stays open on the coordinator until a newer producer fences it or it times out.
  txn_metrics.py BOOTSTRAP fence ID
      A producer with transactional id ID initializes, which fences the previous one (and aborts
      its open transaction), then closes.
"""

import json
import os
import sys

from confluent_kafka import KafkaException, Producer


def producer(bootstrap, transactional_id, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "linger.ms": 5,
    }
    config.update(extra)
    p = Producer(config)
    p.init_transactions(30)
    return p


def commit_abort(bootstrap, topic, transactional_id):
    p = producer(bootstrap, transactional_id)
    p.begin_transaction()
    for value in (b"committed-1", b"committed-2"):
        p.produce(topic, value=value, partition=0)
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, value=b"aborted", partition=0)
    p.flush(30)
    p.abort_transaction(30)
    p.flush(30)


def leave_open(bootstrap, topic, transactional_id, timeout_ms):
    p = producer(bootstrap, transactional_id, **{"transaction.timeout.ms": timeout_ms})
    p.begin_transaction()
    p.produce(topic, value=b"left-open", partition=0)
    if p.flush(30) != 0:
        raise SystemExit("the record was not acknowledged within 30 s")
    # Exit at once: no destructor, no abort, the coordinator alone ends the transaction.
    print(json.dumps({"errors": []}), flush=True)
    os._exit(0)


def fence(bootstrap, transactional_id):
    producer(bootstrap, transactional_id).flush(30)


def main():
    bootstrap, step, *args = sys.argv[1:]
    try:
        if step == "commit-abort":
            commit_abort(bootstrap, args[0], args[1])
        elif step == "leave-open":
            leave_open(bootstrap, args[0], args[1], int(args[2]))
        elif step == "fence":
            fence(bootstrap, args[0])
        else:
            raise SystemExit(f"unknown step {step}")
        errors = []
    except KafkaException as e:
        errors = [str(e)]
    print(json.dumps({"errors": errors}))


if __name__ == "__main__":
    main()
