#!/usr/bin/env python3
"""Leader CPU per delivered record: push subscribers against Fetch consumers (docs/benchmarks.md).

Starts a 3-node cluster (scripts/local-cluster.sh, release binaries, its own directory and ports),
then for each count N: a fresh 1-partition topic with replication factor 3; N receivers (`rafka
subscribe` homed on the two nodes that do not lead it, or `rafka consume`, which fetch from the
leader) started and, for push, registered at their home nodes (rafka_push_sessions); R records
produced through the leader with acks=all; the leader's CPU time (/proc/PID/stat) from just before
the produce until every receiver printed all R records. A run with no receiver gives the cost of
producing and replicating alone; the figure reported is (CPU - CPU without receivers) / (R x N).
During the largest push run the nodes' heartbeat gaps (rafka_mesh_heartbeat_gap_seconds) are
read too.

  scripts/bench-push-fanout.py [--counts 1,10,50] [--records 20000]

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
RAFKA = os.path.join(ROOT, "target/release/rafka")
BASE = 23000


def http_port(i):
    return BASE + 300 + i


def p2p(i):
    return f"/ip4/127.0.0.1/tcp/{BASE + 200 + i}"


def kafka(i):
    return f"127.0.0.1:{BASE + 100 + i}"


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


def leader_of(topic, node_ids):
    out = rafka("--bootstrap", p2p(0), "topic", "describe", topic).stdout
    m = re.search(r"Partition: 0\tLeader: (\d+)", out)
    if not m:
        sys.exit(f"no leader in:\n{out}")
    return node_ids.index(int(m.group(1)))


def run(mode, n, records, round_no, pids, node_ids, gaps):
    topic = f"fan-{mode}-{n}-{round_no}"
    rafka("--bootstrap", p2p(0), "topic", "create", topic, "--partitions", "1",
          "--replication-factor", "3")
    wait("a leader", lambda: re.search(r"Leader: \d", rafka(
        "--bootstrap", p2p(0), "topic", "describe", topic).stdout) is not None)
    leader = leader_of(topic, node_ids)
    others = [i for i in range(3) if i != leader]
    receivers = []
    sessions_before = sum(metric_sum(get(i, "/metrics"), "rafka_push_sessions") for i in others)
    for k in range(n):
        home = others[k % 2]
        cmd = "subscribe" if mode == "push" else "consume"
        receivers.append(subprocess.Popen(
            [RAFKA, "--bootstrap", p2p(home), cmd, topic, "--from-beginning", "-n", str(records),
             "--format", "%o\\n", "--timeout-ms", "120000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
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
          "--record-size", "100", "--acks", "all")
    for r in receivers:
        r.wait(timeout=600)
        if r.returncode != 0:
            sys.exit(f"a receiver failed: {r.stderr.read().decode()}")
    cpu = cpu_seconds(pids[leader]) - cpu0
    elapsed = time.time() - started
    if gaps is not None:
        after = [gap_buckets(get(i, "/metrics")) for i in range(3)]
        for b, a in zip(before_gaps, after):
            for le, count in a.items():
                gaps[le] = gaps.get(le, 0) + count - b.get(le, 0)
    return cpu, elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,10,50")
    ap.add_argument("--records", type=int, default=20000)
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    cluster_dir = tempfile.mkdtemp(prefix="rafka-push-bench-")
    env = dict(os.environ, RAFKA_CLUSTER_DIR=cluster_dir, RAFKA_CLUSTER_PORT_BASE=str(BASE))
    subprocess.run([os.path.join(ROOT, "scripts/local-cluster.sh"), "start", "3"], check=True, env=env)
    try:
        pids = [int(open(f"{cluster_dir}/node{i}.pid").read()) for i in range(3)]
        node_ids = [json.loads(get(i, "/cluster"))["node_id"] for i in range(3)]
        base_cpu, _ = run("none", 0, args.records, 0, pids, node_ids, None)
        print(f"machine: nproc={os.cpu_count()} load={os.getloadavg()[0]:.1f}; records={args.records}")
        print(f"no receivers: leader {base_cpu:.2f} CPU-s")
        print("| receivers | push: leader CPU-s | push: µs per delivered record | fetch: leader CPU-s | fetch: µs per delivered record |")
        print("|---|---|---|---|---|")
        gaps = {}
        for n in counts:
            push_cpu, _ = run("push", n, args.records, 1, pids, node_ids, gaps if n == max(counts) else None)
            fetch_cpu, _ = run("fetch", n, args.records, 1, pids, node_ids, None)
            per = lambda cpu: max(cpu - base_cpu, 0) / (args.records * n) * 1e6
            print(f"| {n} | {push_cpu:.2f} | {per(push_cpu):.2f} | {fetch_cpu:.2f} | {per(fetch_cpu):.2f} |", flush=True)
        total = gaps.get(float("inf"), 0)
        over2 = total - max((c for le, c in gaps.items() if le <= 2.0), default=0)
        bounds = sorted(gaps)
        def quantile(q):
            for le in bounds:
                if gaps[le] >= q * total:
                    return le
            return float("inf")
        print(f"heartbeat gaps during the {max(counts)}-subscriber push run: {int(total)} gaps, "
              f"p50 <= {quantile(0.5)} s, p99 <= {quantile(0.99)} s, max <= {quantile(1.0)} s, "
              f"> 2 s: {int(over2)}")
    finally:
        subprocess.run([os.path.join(ROOT, "scripts/local-cluster.sh"), "stop"], env=env)
        shutil.rmtree(cluster_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
