#!/usr/bin/env bash
# A multi-process local cluster with the same layout as deploy/k8s: one shared
# config/node.toml + config/nodes.json (the ConfigMap), keys/node-<i>.key (the
# Secret), and per-node LIVENESSD_* variables (the StatefulSet's env).
#
#   scripts/local-cluster.sh [NODES] [DIR]        # default 4 nodes, DIR a new temp dir
#
# The nodes monitor each other's /health. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-4}"
dir="${2:-$(mktemp -d -t livenessd-cluster-XXXX)}"
cargo build --quiet --release --bin livenessd
bin="$(pwd)/${CARGO_TARGET_DIR:-target}/release/livenessd"
mkdir -p "$dir/config" "$dir/keys" "$dir/data" "$dir/logs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; everything is in $dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

seq_port=$(free_port)
"$bin" sequencer --listen "127.0.0.1:$seq_port" --data-dir "$dir/sequencer" --app livenessd \
  >"$dir/logs/sequencer.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -f "$dir/sequencer/operators.json" ] && break; sleep 0.1; done
cp "$dir/sequencer/operators.json" "$dir/config/operators.json"

ports=()
for i in $(seq 0 $((n - 1))); do
  ports+=("$(free_port)")
  [ -f "$dir/keys/node-$i.key" ] || "$bin" keygen --out "$dir/keys/node-$i.key" >"$dir/keys/node-$i.json"
done

# config/nodes.json (reference monitoring_nodes.json format + pop/stake).
python3 - "$dir" "${ports[@]}" <<'PY'
import json, sys
d, ports = sys.argv[1], sys.argv[2:]
nodes = {}
for i, port in enumerate(ports):
    k = json.load(open(f"{d}/keys/node-{i}.json"))
    nodes[f"node-{i}"] = {"url": f"http://127.0.0.1:{port}", "pubkey": k["pubkey"], "pop": k["pop"], "stake": 1}
json.dump(nodes, open(f"{d}/config/nodes.json", "w"), indent=2)
PY

# config/node.toml: shared by every node, like the ConfigMap.
{
  echo '# node_id, bls_key_file, database and listen come from LIVENESSD_* variables.'
  echo 'node_id = "set-by-LIVENESSD_NODE_ID"'
  echo 'monitoring_nodes_file = "nodes.json"'
  echo 'quorum_threshold = "2/3"'
  for i in $(seq 0 $((n - 1))); do
    printf '\n[[targets]]\naddress = "node-%s"\nhttp = "http://127.0.0.1:%s/health"\n' "$i" "${ports[$i]}"
  done
  printf '\n[zellular]\napp = "livenessd"\noperators_file = "operators.json"\npoll_max_ms = 200\n'
  printf '\n[probe]\ninterval_ms = 1000\ntimeout_ms = 800\n'
} >"$dir/config/node.toml"

for i in $(seq 0 $((n - 1))); do
  LIVENESSD_NODE_ID="node-$i" \
  LIVENESSD_BLS_KEY_FILE="$dir/keys/node-$i.key" \
  LIVENESSD_DATABASE="$dir/data/node-$i/replica.sqlite" \
  LIVENESSD_LISTEN="127.0.0.1:${ports[$i]}" \
    "$bin" --config "$dir/config/node.toml" --role aggregator >"$dir/logs/node-$i.log" 2>&1 &
  pids+=($!)
done

echo "livenessd local cluster in $dir"
echo "  sequencer http://127.0.0.1:$seq_port"
for i in $(seq 0 $((n - 1))); do echo "  node-$i    http://127.0.0.1:${ports[$i]}  (/v1/targets, /v1/position, /metrics)"; done
echo "  logs in $dir/logs; Ctrl-C stops everything"
wait -n "${pids[@]}" || true
echo "a process exited; see $dir/logs" >&2
exit 1
