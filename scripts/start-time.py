#!/usr/bin/env python3
"""Time from spawning `rafka-node` to its first `200` on GET /ready: a first start on an empty
data dir, then a restart (after a clean SIGTERM stop) of the same node with a few topics.

Usage: scripts/start-time.py [--node target/release/rafka-node] [--cli target/release/rafka]
                             [--runs 20] [--topics 4] [--partitions 3]

Each run uses a fresh temporary data dir and free loopback ports (asked of the OS, then passed to
the node), `--bootstrap-expect 1 --no-mdns --fsync never`. /ready is polled in a tight loop (a new
connection per poll, no sleep). The first start of each run is timed, then the script creates
TOPICS topics of PARTITIONS partitions with the CLI, stops the node with SIGTERM, waits for it to
exit, and times its restart. Prints every run's figures and p50/max of both, in milliseconds;
also the broker's CPU-seconds (user+sys of the node process) per start.
"""

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def cpu_s(pid):
    """user+sys CPU-seconds of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def start(node, data_dir, deadline_s=10.0):
    kafka, http, p2p = free_port(), free_port(), free_port()
    args = [
        node,
        "--data-dir", data_dir,
        "--kafka-addr", f"127.0.0.1:{kafka}",
        "--http-addr", f"127.0.0.1:{http}",
        "--p2p-addr", f"/ip4/127.0.0.1/tcp/{p2p}",
        "--bootstrap-expect", "1",
        "--no-mdns",
        "--fsync", "never",
    ]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not ready(http):
        if proc.poll() is not None:
            sys.exit(f"rafka-node exited with {proc.returncode} before /ready")
        if time.monotonic() - t0 > deadline_s:
            proc.kill()
            sys.exit("no /ready within the deadline")
    elapsed = (time.monotonic() - t0) * 1000
    return proc, elapsed, cpu_s(proc.pid), kafka


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--node", default="target/release/rafka-node")
    parser.add_argument("--cli", default="target/release/rafka")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--topics", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()}")
    first, restart, first_cpu, restart_cpu = [], [], [], []
    for run in range(args.runs):
        data_dir = tempfile.mkdtemp(prefix="rafka-start-")
        try:
            proc, ms, cpu, kafka = start(args.node, data_dir)
            first.append(ms)
            first_cpu.append(cpu)
            for t in range(args.topics):
                subprocess.run(
                    [args.cli, "--kafka", f"127.0.0.1:{kafka}", "topic", "create", f"t{t}",
                     "--partitions", str(args.partitions)],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stop(proc)
            proc, ms2, cpu2, _ = start(args.node, data_dir)
            restart.append(ms2)
            restart_cpu.append(cpu2)
            stop(proc)
            print(f"run {run}: first start {ms:.1f} ms ({cpu:.3f} CPU-s), "
                  f"restart {ms2:.1f} ms ({cpu2:.3f} CPU-s)", flush=True)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    for name, values, cpus in (("first start", first, first_cpu), ("restart", restart, restart_cpu)):
        print(f"{name}: p50 {statistics.median(values):.1f} ms, min {min(values):.1f}, "
              f"max {max(values):.1f} ms; CPU-s p50 {statistics.median(cpus):.3f}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
