#!/usr/bin/env python3
"""Push benchmarks on a 3-node loopback cluster (docs/benchmarks.md, "Push subscription").

  scripts/bench-push.py latency [--reps 3] [--records 5000]
  scripts/bench-push.py fanout  [--reps 2] [--counts 1,10,50] [--records 20000] [--throughput -1]

Both start a 3-node cluster (scripts/local-cluster.sh, release binaries from target/release or
RAFKA_BIN_DIR, `--fsync never`, their own directory and ports) and print markdown tables with
the load average at the start of each run.

latency: produce (acks=all, one record at a time) to delivery, `rafka bench e2e`, on a 1-partition
topic with replication factor 1 and one with replication factor 3. Receivers: a Fetch consumer
over Kafka TCP and over the mesh, and a push subscription homed on the partition's leader or on
another node. The receivers' runs are interleaved (the order rotates every repetition) so that
the machine's load falls on all of them alike.

fanout: leader CPU per delivered record. For each count N: a fresh 1-partition topic with
replication factor 3; N receivers (`rafka subscribe` homed on the two nodes that do not lead it,
or `rafka consume`, which fetch from the leader) started and, for push, registered at their home
nodes (rafka_push_sessions); R records produced through the leader with acks=all; the leader's
CPU time (/proc/PID/stat) from just before the produce until every receiver printed all R
records. A run with no receivers gives the cost of producing and replicating alone; the figure is
(CPU - CPU without receivers) / (R x N). Push and Fetch runs alternate. During the largest push
run the nodes' heartbeat gaps (rafka_mesh_heartbeat_gap_seconds) are read too.

Every process it starts is killed by its PID at the end; the cluster directory is removed.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RAFKA_BIN_DIR", os.path.join(ROOT, "target/release"))
RAFKA = os.path.join(BIN, "rafka")
BASE = 23000


def http_port(i):
    return BASE + 300 + i


def p2p(i):
    return f"/ip4/127.0.0.1/tcp/{BASE + 200 + i}"


def kafka(i):
    return f"127.0.0.1:{BASE + 100 + i}"


def load():
    return f"{os.getloadavg()[0]:.1f}"


def get(i, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port(i)}{path}", timeout=5) as r:
        return r.read().decode()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith(name + "_"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def gap_buckets(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r'rafka_mesh_heartbeat_gap_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out[le] = out.get(le, 0) + float(m.group(2))
    return out


def wait(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def rafka(*args, **kw):
    return subprocess.run([RAFKA, *args], check=True, capture_output=True, text=True, **kw)


def create_topic(topic, rf, node_ids):
    """Creates a 1-partition topic; returns the index of the node leading it."""
    rafka("--bootstrap", p2p(0), "topic", "create", topic, "--partitions", "1",
          "--replication-factor", str(rf))
    describe = lambda: rafka("--bootstrap", p2p(0), "topic", "describe", topic).stdout
    wait("a leader", lambda: re.search(r"Leader: \d", describe()) is not None)
    m = re.search(r"Partition: 0\tLeader: (\d+)", describe())
    return node_ids.index(int(m.group(1)))


def fanout_run(mode, n, records, throughput, topic, leader, pids, gaps):
    others = [i for i in range(3) if i != leader]
    receivers = []
    sessions_before = sum(metric_sum(get(i, "/metrics"), "rafka_push_sessions") for i in others)
    for k in range(n):
        home = others[k % 2]
        cmd = ["subscribe", "--stats"] if mode == "push" else ["consume"]
        receivers.append(subprocess.Popen(
            [RAFKA, "--bootstrap", p2p(home), *cmd, topic, "--from-beginning", "-n", str(records),
             "--format", "%o\\n", "--timeout-ms", "120000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    if mode == "push" and n:
        wait("sessions registered", lambda: sum(
            metric_sum(get(i, "/metrics"), "rafka_push_sessions") for i in others) >= sessions_before + n,
            timeout=120)
    else:
        time.sleep(3)  # consumers connect and park their first fetch (a benchmark, not a test)
    before_gaps = [gap_buckets(get(i, "/metrics")) for i in range(3)]
    cpu0 = cpu_seconds(pids[leader])
    started = time.time()
    rafka("--kafka", kafka(leader), "bench", "produce", "--topic", topic, "--records", str(records),
          "--record-size", "100", "--acks", "all", "--linger-ms", "5", "--throughput", str(throughput))
    by = {"pushed": 0, "fetched": 0}
    for r in receivers:
        _, err = r.communicate(timeout=600)
        if r.returncode != 0:
            sys.exit(f"a receiver failed: {err}")
        for key in by:
            by[key] += sum(int(v) for v in re.findall(rf"\b{key}: (\d+)", err))
    cpu = cpu_seconds(pids[leader]) - cpu0
    elapsed = time.time() - started
    if gaps is not None:
        after = [gap_buckets(get(i, "/metrics")) for i in range(3)]
        for b, a in zip(before_gaps, after):
            for le, count in a.items():
                gaps[le] = gaps.get(le, 0) + count - b.get(le, 0)
    return cpu, elapsed, by


def print_gaps(gaps, what):
    total = gaps.get(float("inf"), 0)
    over2 = total - max((c for le, c in gaps.items() if le <= 2.0), default=0)
    bounds = sorted(gaps)

    def quantile(q):
        for le in bounds:
            if gaps[le] >= q * total:
                return le
        return float("inf")

    print(f"heartbeat gaps {what}: {int(total)} gaps, p50 <= {quantile(0.5)} s, "
          f"p99 <= {quantile(0.99)} s, max <= {quantile(1.0)} s, > 2 s: {int(over2)}")


def fanout(args, pids, node_ids):
    counts = [int(c) for c in args.counts.split(",")]
    # The nodes' idle CPU (heartbeats, summaries, the metadata log) is taken out of each figure:
    # a run lasts as long as its slowest receiver, which on a loaded machine varies.
    idle0 = [cpu_seconds(pid) for pid in pids]
    time.sleep(10)
    idle = [(cpu_seconds(pid) - c) / 10 for pid, c in zip(pids, idle0)]
    print(f"records={args.records} at {args.throughput} records/s (-1: unlimited); leader CPU-s from produce start to the last receiver's last "
          f"record, less the leader's idle CPU over that time (idle: "
          f"{', '.join(f'{r * 1000:.1f}' for r in idle)} ms/s per node)")
    print("| rep | receivers | mode | load | elapsed s | leader CPU-s | less idle | µs per delivered record "
          "| records by push / by Fetch |")
    print("|---|---|---|---|---|---|---|---|---|")
    gaps = {}
    topic_no = 0

    def one(mode, n, rep):
        nonlocal topic_no
        topic_no += 1
        topic = f"fan-{mode}-{n}-{rep}-{topic_no}"
        leader = create_topic(topic, 3, node_ids)
        at = load()
        wanted = gaps if mode == "push" and n == max(counts) else None
        cpu, elapsed, by = fanout_run(mode, n, args.records, args.throughput, topic, leader, pids,
                                        wanted)
        return at, cpu, elapsed, cpu - idle[leader] * elapsed, by

    for rep in range(args.reps):
        at, cpu, elapsed, base, _ = one("none", 0, rep)
        print(f"| {rep} | 0 | - | {at} | {elapsed:.1f} | {cpu:.2f} | {base:.2f} | | |", flush=True)
        for n in counts:
            for mode in (["push", "fetch"] if rep % 2 == 0 else ["fetch", "push"]):
                at, cpu, elapsed, net, by = one(mode, n, rep)
                per = max(net - base, 0) / (args.records * n) * 1e6
                split = f"{by['pushed']} / {by['fetched']}" if mode == "push" else "- / all"
                print(f"| {rep} | {n} | {mode} | {at} | {elapsed:.1f} | {cpu:.2f} | {net:.2f} "
                      f"| {per:.2f} | {split} |", flush=True)
    print_gaps(gaps, f"during the {max(counts)}-subscriber push runs")


def latency(args, pids, node_ids):
    print(f"records={args.records} per run, 100-byte values, acks=all, one at a time; latency in ms")
    print("| rep | RF | receiver | load | p50 | p99 | p99.9 | max |")
    print("|---|---|---|---|---|---|---|---|")
    gaps_before = [gap_buckets(get(i, "/metrics")) for i in range(3)]
    topics = []
    for rf in (1, 3):
        leader = create_topic(f"lat-rf{rf}", rf, node_ids)
        other = (leader + 1) % 3
        topics.append((rf, f"lat-rf{rf}", [
            ("fetch, Kafka TCP", ["--kafka", kafka(leader)], []),
            ("fetch, mesh", ["--bootstrap", p2p(leader)], []),
            ("push, home = leader", ["--bootstrap", p2p(leader)], ["--push"]),
            ("push, home = another node", ["--bootstrap", p2p(other)], ["--push"]),
            ("push, home = leader, producer on Kafka TCP", ["--bootstrap", p2p(leader)],
             ["--push", "--produce-kafka", kafka(leader)]),
            ("fetch, mesh, producer on Kafka TCP", ["--bootstrap", p2p(leader)],
             ["--produce-kafka", kafka(leader)]),
        ]))
    for rep in range(args.reps):
        for rf, topic, variants in topics:
            shift = rep % len(variants)
            for name, conn, extra in variants[shift:] + variants[:shift]:
                at = load()
                out = rafka(*conn, "bench", "e2e", "--topic", topic, "--records", str(args.records),
                            "--json", *extra).stdout
                report = json.loads(out[out.index("{"):])
                lat = report["latency_ms"]
                print(f"| {rep} | {rf} | {name} | {at} | {lat['p50']:.3f} | {lat['p99']:.3f} "
                      f"| {lat['p999']:.3f} | {lat['max']:.2f} |", flush=True)
    after = [gap_buckets(get(i, "/metrics")) for i in range(3)]
    gaps = {}
    for b, a in zip(gaps_before, after):
        for le, count in a.items():
            gaps[le] = gaps.get(le, 0) + count - b.get(le, 0)
    print_gaps(gaps, "during the latency runs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["latency", "fanout"])
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--counts", default="1,10,50")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument("--throughput", type=int, default=-1, help="fanout: records/s produced")
    args = ap.parse_args()
    if args.reps is None:
        args.reps = 3 if args.what == "latency" else 2
    if args.records is None:
        args.records = 5000 if args.what == "latency" else 20000
    cluster_dir = tempfile.mkdtemp(prefix="rafka-push-bench-")
    env = dict(os.environ, RAFKA_CLUSTER_DIR=cluster_dir, RAFKA_CLUSTER_PORT_BASE=str(BASE),
               RAFKA_FSYNC="never", RAFKA_NODE_BIN=os.path.join(BIN, "rafka-node"))
    subprocess.run([os.path.join(ROOT, "scripts/local-cluster.sh"), "start", "3"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    try:
        pids = [int(open(f"{cluster_dir}/node{i}.pid").read()) for i in range(3)]
        # The cluster is closed (local-cluster.sh makes a key); every client started below uses it.
        os.environ["RAFKA_CLUSTER_KEY_FILE"] = os.path.join(cluster_dir, "cluster.key")
        node_ids = [json.loads(get(i, "/cluster"))["node_id"] for i in range(3)]
        print(f"machine: nproc={os.cpu_count()}, load average at start {load()}")
        (latency if args.what == "latency" else fanout)(args, pids, node_ids)
    finally:
        subprocess.run([os.path.join(ROOT, "scripts/local-cluster.sh"), "stop"], env=env,
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(cluster_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
