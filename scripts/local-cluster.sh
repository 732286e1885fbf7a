#!/usr/bin/env bash
# A Rafka mesh of N nodes on this machine, for trying things out.
#
#   scripts/local-cluster.sh start N    start N nodes (own ports and data dirs) sharing one cluster
#                                       key, wait until every node sees all N alive, print the
#                                       addresses and the key to use
#   scripts/local-cluster.sh status     each node: PID, alive or not, ready or not, members seen
#   scripts/local-cluster.sh stop       SIGTERM the nodes this script started (by recorded PID)
#
# Environment: RAFKA_CLUSTER_DIR (default ./.local-cluster) holds data dirs, logs, PIDs and the
# cluster key (cluster.key, made on the first start and kept); RAFKA_CLUSTER_PORT_BASE (default
# 19000): node i uses Kafka BASE+100+i, p2p BASE+200+i, HTTP BASE+300+i; RAFKA_NODE_BIN and
# RAFKA_CLI_BIN override the binaries (default: target/release/rafka-node and target/release/rafka,
# built if missing). Only processes whose PIDs this script recorded are ever signalled.
set -euo pipefail

cd "$(dirname "$0")/.."
dir=${RAFKA_CLUSTER_DIR:-./.local-cluster}
base=${RAFKA_CLUSTER_PORT_BASE:-19000}
bin=${RAFKA_NODE_BIN:-target/release/rafka-node}
cli=${RAFKA_CLI_BIN:-target/release/rafka}

kafka_port() { echo $((base + 100 + $1)); }
p2p_port() { echo $((base + 200 + $1)); }
http_port() { echo $((base + 300 + $1)); }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

members_alive() {
  # Number of members node $1 sees alive, from its /cluster endpoint.
  curl -fsS "http://127.0.0.1:$(http_port "$1")/cluster" 2>/dev/null \
    | python3 -c 'import json,sys; print(sum(1 for m in json.load(sys.stdin)["members"] if m["state"] == "alive"))' \
    2>/dev/null || echo 0
}

start() {
  local n=${1:?usage: $0 start N}
  if [ -d "$dir" ] && ls "$dir"/*.pid >/dev/null 2>&1; then
    for f in "$dir"/*.pid; do
      if alive "$(cat "$f")"; then echo "a cluster is already running here; run: $0 stop" >&2; exit 1; fi
    done
  fi
  if [ ! -x "$bin" ]; then
    echo "building $bin ..."
    cargo build --release -q -p rafka-broker --bin rafka-node
  fi
  if [ ! -x "$cli" ]; then
    echo "building $cli ..."
    cargo build --release -q -p rafka-client --bin rafka
  fi
  mkdir -p "$dir"
  # One key for the whole cluster: only nodes and clients holding it can use the mesh.
  local key="$dir/cluster.key"
  [ -f "$key" ] || "$cli" cluster key generate "$key"
  local seed="/ip4/127.0.0.1/tcp/$(p2p_port 0)"
  for i in $(seq 0 $((n - 1))); do
    local args=(--data-dir "$dir/node$i" --kafka-addr "127.0.0.1:$(kafka_port "$i")"
      --p2p-addr "/ip4/127.0.0.1/tcp/$(p2p_port "$i")" --http-addr "127.0.0.1:$(http_port "$i")"
      --control-addr /ip4/127.0.0.1/tcp/0 --no-mdns --bootstrap-expect "$n" --cluster-key-file "$key")
    [ "$i" -gt 0 ] && args+=(--bootstrap "$seed")
    "$bin" "${args[@]}" >"$dir/node$i.out" 2>"$dir/node$i.log" &
    echo $! >"$dir/node$i.pid"
  done
  echo "started $n nodes; waiting until each sees all $n alive ..."
  local deadline=$((SECONDS + 60))
  while :; do
    local ok=0
    for i in $(seq 0 $((n - 1))); do
      alive "$(cat "$dir/node$i.pid")" || { echo "node $i exited; see $dir/node$i.log" >&2; exit 1; }
      [ "$(members_alive "$i")" -ge "$n" ] && ok=$((ok + 1))
    done
    [ "$ok" -eq "$n" ] && break
    [ "$SECONDS" -ge "$deadline" ] && { echo "not converged after 60 s; see $dir/*.log" >&2; exit 1; }
    sleep 0.2
  done
  local kafka=()
  for i in $(seq 0 $((n - 1))); do kafka+=("127.0.0.1:$(kafka_port "$i")"); done
  echo "ready: every node sees all $n members"
  echo "kafka bootstrap: $(IFS=,; echo "${kafka[*]}")"
  echo "p2p address:     $seed"
  echo "cluster key:     $key"
  echo "try:  RAFKA_CLUSTER_KEY_FILE=$key RAFKA_BOOTSTRAP=$seed $cli cluster"
}

status() {
  ls "$dir"/*.pid >/dev/null 2>&1 || { echo "no cluster recorded in $dir"; return 0; }
  for f in "$dir"/node*.pid; do
    local i pid state ready
    i=$(basename "$f" .pid); i=${i#node}
    pid=$(cat "$f")
    if alive "$pid"; then
      state=running
      ready=$(curl -fsS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(http_port "$i")/ready" 2>/dev/null || true)
      echo "node $i pid $pid $state ready=${ready:-no} members-alive=$(members_alive "$i") kafka=127.0.0.1:$(kafka_port "$i")"
    else
      echo "node $i pid $pid stopped"
    fi
  done
}

stop() {
  ls "$dir"/*.pid >/dev/null 2>&1 || { echo "no cluster recorded in $dir"; return 0; }
  for f in "$dir"/node*.pid; do
    local pid; pid=$(cat "$f")
    alive "$pid" && kill -TERM "$pid"
  done
  local deadline=$((SECONDS + 30))
  for f in "$dir"/node*.pid; do
    local pid; pid=$(cat "$f")
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if alive "$pid"; then echo "pid $pid did not stop; sending SIGKILL" >&2; kill -KILL "$pid"; fi
    rm -f "$f"
  done
  echo "stopped"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start N | status | stop" >&2; exit 2 ;;
esac
