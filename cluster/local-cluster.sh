#!/usr/bin/env bash
# A multi-node Ray cluster on this machine: one head and N worker nodes, each a separate raylet with
# its own CPUs (and a custom resource naming the node), for trying cluster behaviour locally.
#   cluster/local-cluster.sh start [N_WORKERS] [CPUS_PER_NODE]   -> prints the RAY_ADDRESS to export
#   cluster/local-cluster.sh stop                                -> stops exactly the processes it started
# State (PIDs, logs) lives in $MEDFLOW_CLUSTER_DIR (default /tmp/mfc); keep the path short (Unix sockets).
set -euo pipefail
DIR="${MEDFLOW_CLUSTER_DIR:-/tmp/mfc}"
PORT="${MEDFLOW_RAY_PORT:-6390}"
RAY="${RAY_BIN:-$(dirname "$(command -v python3)")/ray}"
[ -x "$RAY" ] || RAY="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/ray"

# every process of this cluster: those under its temp dir, and those that name its head's port (the
# Ray client server the head starts names neither the temp dir nor anything else of ours)
ray_pids() { pgrep -f -- "$DIR/ray|--address=[0-9.]+:$PORT( |$)" || true; }

case "${1:-}" in
  start)
    workers="${2:-1}"; cpus="${3:-1}"
    mkdir -p "$DIR"
    export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token   # Ray 2.60: token auth, token in ~/.ray/auth_token
    "$RAY" start --head --port "$PORT" --num-cpus "$cpus" --num-gpus 0 --resources '{"node_head": 1}' \
      --temp-dir "$DIR/ray" --include-dashboard false --disable-usage-stats >"$DIR/head.log" 2>&1
    address="$(grep -o "ray start --address='[^']*'" "$DIR/head.log" | head -1 | cut -d"'" -f2)"
    for i in $(seq 1 "$workers"); do
      "$RAY" start --address "$address" --num-cpus "$cpus" --num-gpus 0 \
        --resources "{\"node_worker_$i\": 1}" --disable-usage-stats >"$DIR/worker-$i.log" 2>&1
    done
    ray_pids > "$DIR/pids"
    echo "export RAY_ADDRESS=$address RAY_AUTH_MODE=token"
    ;;
  stop)
    [ -f "$DIR/pids" ] || { echo "no cluster started from $DIR"; exit 0; }
    ray_pids | xargs -r kill 2>/dev/null || true
    sleep 2
    ray_pids | xargs -r kill -9 2>/dev/null || true
    rm -f "$DIR/pids"
    ;;
  *) echo "usage: $0 start [N_WORKERS] [CPUS_PER_NODE] | stop" >&2; exit 2 ;;
esac
