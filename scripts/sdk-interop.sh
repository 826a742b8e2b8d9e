#!/usr/bin/env bash
# Proves the official `zellular` Python SDK (0.2.10, unmodified) accepts the dev
# sequencer: it sends batches with Zellular.send() and reads every one back through
# batches(), verifying each finality signature and the chain itself.
#
#   scripts/sdk-interop.sh [COUNT]
#
# Needs python3 (3.11) and the SDK harness (default ../shared/tools/zellular-sdk,
# or ZELLULAR_SDK_TOOL); the venv is created once in .venv-sdk from its pinned lock.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-40}"
tool="${ZELLULAR_SDK_TOOL:-../shared/tools/zellular-sdk}"
venv="${ZELLULAR_SDK_VENV:-.venv-sdk}"
[ -d "$tool" ] || { echo "sdk-interop: no SDK harness at $tool" >&2; exit 2; }
tool="$(cd "$tool" && pwd)"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$tool/requirements.lock"
fi
py="$(cd "$venv" && pwd)/bin/python"

# The binary: SDK_INTEROP_BIN (scripts/test.sh passes the one `cargo test` just
# built, which a plain `cargo build` would rebuild with other dependency features),
# or a debug build.
if [ -n "${SDK_INTEROP_BIN:-}" ]; then
  bin="$SDK_INTEROP_BIN"
else
  cargo build --quiet --bin livenessd
  bin="${CARGO_TARGET_DIR:-target}/debug/livenessd"
fi

work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
seq_pid=
# start_sequencer MS: the dev sequencer on the same log (and keys), finalizing
# MS milliseconds after a batch arrives.
start_sequencer() {
  "$bin" sequencer --listen "127.0.0.1:$port" --data-dir "$work/seq" --operators 4 --nonsigners 1 \
    --finalize-interval-ms "$1" >>"$work/seq.log" 2>&1 &
  seq_pid=$!
  for _ in $(seq 100); do
    curl -fsS "$url/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$work/seq.log"; echo "sdk-interop: sequencer did not start" >&2; exit 1
}
stop_sequencer() {
  [ -n "$seq_pid" ] || return 0
  kill "$seq_pid" 2>/dev/null || true
  wait "$seq_pid" 2>/dev/null || true
  seq_pid=
}
sync_points() { curl -fsS "$url/metrics" | awk '/^[a-z_]*devseq_finalizations_total / {print $2}'; }
cleanup() { stop_sequencer; rm -rf "$work"; }
trap cleanup EXIT
# Phase 1 finalizes 5 ms after each arrival, so the batches land in many sync
# points and the readers below verify many finality signatures.
start_sequencer 5

app="sdk-interop"
special=('[{"address": "0xNodeA123", "state": "down", "timestamp": 1714130000}]' 'héllo wörld ✓' '日本語のバッチ' 'tab	and "quotes" \ backslash')
"$py" - "$work/expect.json" "$count" "${special[@]}" <<'PY'
import json, sys
path, count, special = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
json.dump(special + [f"batch-{i}" for i in range(count)], open(path, "w"))
PY
args=(--operators "$work/seq/operators.json" --gateway "$url" --app "$app")
send_args=()
for b in "${special[@]}"; do send_args+=(--batch "$b"); done
(cd "$tool" && "$py" sdk_send.py "${args[@]}" "${send_args[@]}" --count "$count")
# Every batch of phase 1 finalized before the restart (then the count is exact).
sent=$(( count + ${#special[@]} ))
for _ in $(seq 100); do
  last=$(curl -fsS "$url/node/$app/batches/finalized/last" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(d["index"] if d else 0)')
  [ "$last" -ge "$sent" ] && break
  sleep 0.1
done
syncs=$(sync_points)
# Blocking sends: the SDK reads finalized/last, then follows the stream until each
# batch comes back finalized and verified. Run on the same log behind a restarted
# sequencer that finalizes one second after an arrival, as a real network's sync
# period does: SDK 0.2.10 skips the first batch of its first read but not that
# batch's signature, so when the new batch's sync point is already in that first
# read it never matches a signature again and polls forever (zsequencer answers
# the same way; only its slower finalization hides it).
stop_sequencer
start_sequencer 1000
(cd "$tool" && "$py" sdk_send.py "${args[@]}" --blocking --batch blocking-1 --batch blocking-2 --timeout 120)
"$py" - "$work/expect.json" <<'PY'
import json, sys
p = sys.argv[1]; b = json.load(open(p)); json.dump(b + ["blocking-1", "blocking-2"], open(p, "w"))
PY
total=$(( count + ${#special[@]} + 2 ))
# Read everything back, sync and async clients; every batch is compared to what was sent.
(cd "$tool" && "$py" sdk_read.py "${args[@]}" -n "$total" --check-last --expect-file "$work/expect.json" --timeout 300) | grep -v '^batch '
(cd "$tool" && "$py" sdk_read.py "${args[@]}" -n "$total" --async --expect-file "$work/expect.json" --timeout 300) | grep -v '^batch '
syncs=$(( syncs + $(sync_points) ))
echo "sdk-interop: the zellular SDK sent and verified $total batches ($syncs sync points, 1 of 4 operators not signing)"
