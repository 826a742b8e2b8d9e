#!/usr/bin/env bash
# A multi-process local network: a dev sequencer and N nodes (every one an
# aggregator) made with `livenessd network init`, monitoring each other's /health.
# A node that dies is reported and the others keep running; Ctrl-C stops all.
#
#   scripts/local-cluster.sh [NODES] [DIR]      # default 4 nodes, DIR a new temp dir
#
# LIVENESSD_BIN: an existing binary (default: cargo build --release into
# $CARGO_TARGET_DIR or target/, relative or absolute).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-4}"
dir="${2:-$(mktemp -d -t livenessd-cluster-XXXX)}"
if [ -n "${LIVENESSD_BIN:-}" ]; then
  bin="$LIVENESSD_BIN"
else
  cargo build --quiet --release --bin livenessd
  target="${CARGO_TARGET_DIR:-target}"
  case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
  bin="$target/release/livenessd"
fi
[ -x "$bin" ] || { echo "local-cluster: no livenessd binary at $bin (set LIVENESSD_BIN)" >&2; exit 2; }
mkdir -p "$dir/logs"
dir="$(cd "$dir" && pwd)"
free_ports() {  # N consecutive free loopback ports: prints the first
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
else:
    sys.exit("no free ports")
PY
}

pids=()
names=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; keys, configs, replicas and logs are in $dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

seq_port=$(free_ports 1)
"$bin" sequencer --listen "127.0.0.1:$seq_port" --data-dir "$dir/sequencer" --app livenessd \
  >"$dir/logs/sequencer.log" 2>&1 &
pids+=($!); names+=(sequencer)
for _ in $(seq 100); do [ -f "$dir/sequencer/operators.json" ] && break; sleep 0.1; done
[ -f "$dir/sequencer/operators.json" ] || { cat "$dir/logs/sequencer.log" >&2; echo "local-cluster: the sequencer did not start" >&2; exit 1; }

base=$(free_ports "$n")
"$bin" network init --nodes "$n" --dir "$dir/net" --base-port "$base" \
  --operators-file "$dir/sequencer/operators.json" >/dev/null
for i in $(seq 0 $((n - 1))); do
  "$bin" --config "$dir/net/node-$i/node.toml" --role aggregator >"$dir/logs/node-$i.log" 2>&1 &
  pids+=($!); names+=("node-$i")
done

echo "livenessd local network in $dir"
echo "  sequencer http://127.0.0.1:$seq_port"
for i in $(seq 0 $((n - 1))); do
  echo "  node-$i    http://127.0.0.1:$((base + i))  (/v1/targets, /ready, /metrics)"
done
echo "  keys and configs in $dir/net, logs in $dir/logs; Ctrl-C stops everything"
# Report each process that exits; keep the others running.
declare -A reported=()
while true; do
  for k in "${!pids[@]}"; do
    if [ -z "${reported[$k]:-}" ] && ! kill -0 "${pids[$k]}" 2>/dev/null; then
      status=0; wait "${pids[$k]}" || status=$?
      echo "${names[$k]} exited (status $status); see $dir/logs/${names[$k]}.log — the others keep running" >&2
      reported[$k]=1
    fi
  done
  sleep 1
done
