#!/usr/bin/env python3
"""Consumer-group timings against a running cluster, with confluent-kafka (librdkafka) members.

  group-bench.py rebalance --bootstrap B --topic T [--assignor range|cooperative-sticky] [--runs N]
      Two members consume T (records flow all along); a third joins. Prints the time from the
      third member's subscribe() until every member has consumed a record of every partition of
      its new assignment.
  group-bench.py first-assignment --bootstrap B --topic T [--runs N]
      A new group's only member: time from subscribe() to its first assignment (run it against
      nodes with different --group-initial-rebalance-delay-ms).
  group-bench.py commit --bootstrap B --topic T [--count N] [--slow-ms MS]
      One member commits synchronously N times: OffsetCommit latency p50/p99 as the client sees it
      (each commit slower than MS, 1000 by default, is printed with when it ended).

T must exist with several partitions. Output: one line per measurement, then a summary line.
"""

import argparse
import statistics
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition


def producer_loop(bootstrap, topic, stop):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    i = 0
    while not stop.is_set():
        p.produce(topic, key=str(i).encode(), value=b"x")
        i += 1
        p.poll(0)
        time.sleep(0.002)
    p.flush(10)


class Member:
    """A consumer in its own thread: its assignment and when it last saw each partition."""

    def __init__(self, bootstrap, group, topic, assignor):
        self.assigned = set()
        self.assigned_at = 0.0
        self.seen_at = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.started = threading.Event()
        cooperative = assignor == "cooperative-sticky"

        # The assignment is kept from the callbacks' arguments: c.assignment() fails once close()
        # has begun, and close() revokes.
        def on_assign(c, parts):
            if cooperative:
                c.incremental_assign(parts)
            else:
                c.assign(parts)
            with self.lock:
                added = {p.partition for p in parts}
                self.assigned = self.assigned | added if cooperative else added
                self.assigned_at = time.monotonic()

        def on_revoke(c, parts):
            if cooperative:
                c.incremental_unassign(parts)
            else:
                c.unassign()
            with self.lock:
                revoked = {p.partition for p in parts}
                self.assigned = self.assigned - revoked if cooperative else set()
                self.assigned_at = time.monotonic()

        def run():
            c = Consumer({
                "bootstrap.servers": bootstrap, "group.id": group,
                "auto.offset.reset": "latest", "partition.assignment.strategy": assignor,
                "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
            })
            self.subscribed_at = time.monotonic()
            c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
            self.started.set()
            while not self.stop.is_set():
                m = c.poll(0.05)
                if m is None or m.error():
                    continue
                with self.lock:
                    self.seen_at[m.partition()] = time.monotonic()
            c.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.started.wait()

    def settled_since(self, t0):
        """True once its assignment changed after t0, is not empty, and each of its partitions
        was read after that change."""
        with self.lock:
            return (bool(self.assigned) and self.assigned_at > t0
                    and all(self.seen_at.get(p, 0) > self.assigned_at for p in self.assigned))

    def close(self):
        self.stop.set()
        self.thread.join()


def wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


def rebalance(args):
    results = []
    for run in range(args.runs):
        stop = threading.Event()
        prod = threading.Thread(target=producer_loop, args=(args.bootstrap, args.topic, stop))
        prod.start()
        group = "bench-rebalance-%s" % uuid.uuid4().hex[:8]
        a = Member(args.bootstrap, group, args.topic, args.assignor)
        b = Member(args.bootstrap, group, args.topic, args.assignor)
        t = time.monotonic()
        assert wait(lambda: a.settled_since(t) and b.settled_since(t)
                    and len(a.assigned | b.assigned) == len(a.assigned) + len(b.assigned), 120), \
            "two members did not settle"
        t0 = time.monotonic()
        c = Member(args.bootstrap, group, args.topic, args.assignor)
        ok = wait(lambda: all(m.settled_since(t0) for m in (a, b, c))
                  and len(a.assigned) + len(b.assigned) + len(c.assigned)
                  == len(a.assigned | b.assigned | c.assigned), 120)
        elapsed = time.monotonic() - t0
        for m in (a, b, c):
            m.close()
        stop.set()
        prod.join()
        assert ok, "the third member did not settle"
        print("run %d: %s third member joined -> all consuming their new assignments: %.3f s"
              % (run, args.assignor, elapsed), flush=True)
        results.append(elapsed)
    print("rebalance %s: median %.3f s, min %.3f s, max %.3f s over %d runs"
          % (args.assignor, statistics.median(results), min(results), max(results), len(results)))


def first_assignment(args):
    results = []
    for run in range(args.runs):
        group = "bench-first-%s" % uuid.uuid4().hex[:8]
        m = Member(args.bootstrap, group, args.topic, "range")
        assert wait(lambda: bool(m.assigned), 120), "no assignment"
        elapsed = m.assigned_at - m.subscribed_at
        m.close()
        print("run %d: subscribe -> first assignment: %.3f s" % (run, elapsed), flush=True)
        results.append(elapsed)
    print("first assignment: median %.3f s, min %.3f s, max %.3f s over %d runs"
          % (statistics.median(results), min(results), max(results), len(results)))


def commit(args):
    group = "bench-commit-%s" % uuid.uuid4().hex[:8]
    config = {"bootstrap.servers": args.bootstrap, "group.id": group, "enable.auto.commit": False}
    if args.debug:
        config["debug"] = args.debug  # librdkafka's own log, on stderr
    c = Consumer(config)
    parts = [TopicPartition(args.topic, 0, 0)]
    c.assign(parts)
    c.commit(offsets=parts, asynchronous=False)  # finds the coordinator
    latencies = []
    for i in range(args.count):
        parts = [TopicPartition(args.topic, 0, i + 1)]
        t = time.perf_counter()
        c.commit(offsets=parts, asynchronous=False)
        took = time.perf_counter() - t
        latencies.append(took)
        if took * 1000 >= args.slow_ms:
            # When it ended, in the nodes' log time (UTC), to find it in their logs.
            print("slow commit %d: %.1f ms, ended %s" % (
                i, took * 1000, time.strftime("%H:%M:%S", time.gmtime())), flush=True)
    c.close()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print("commit: %d synchronous commits: p50 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (len(latencies), p(0.50), p(0.99), latencies[-1] * 1000))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["rebalance", "first-assignment", "commit"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--assignor", default="range")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--slow-ms", type=float, default=1000,
                        help="commit: print each commit at least this slow")
    parser.add_argument("--debug", help="commit: librdkafka debug contexts (e.g. cgrp,protocol)")
    args = parser.parse_args()
    {"rebalance": rebalance, "first-assignment": first_assignment, "commit": commit}[args.what](args)


if __name__ == "__main__":
    main()
