#!/usr/bin/env bash
# The test suite: every Rust test (unit, vectors, in-process clusters on loopback,
# the real binary end to end), with blspy — the reference BLS library, installed
# here from scripts/requirements-blspy.txt — checking livenessd's signatures; then
# the official Zellular SDK against the dev sequencer when its harness is present.
#
#   scripts/test.sh
#
# Needs Rust and Python 3.11 with venv. The SDK harness is looked for at
# ../shared/tools/zellular-sdk (or ZELLULAR_SDK_TOOL); without it that one check is
# skipped, with a line saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${BLSPY_VENV:-.venv-blspy}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import blspy' 2>/dev/null; then
  echo "test: installing blspy into $venv (scripts/requirements-blspy.txt)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r scripts/requirements-blspy.txt
fi
BLSPY_PYTHON="$(cd "$venv" && pwd)/bin/python"
export BLSPY_PYTHON
# The blspy checks must run, not be skipped, when this script runs the tests.
export BLSPY_REQUIRED=1

cargo test

tool="${ZELLULAR_SDK_TOOL:-../shared/tools/zellular-sdk}"
if [ -d "$tool" ]; then
  # The binary the integration tests ran, just built by `cargo test`.
  target_dir="${CARGO_TARGET_DIR:-target}"
  case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
  SDK_INTEROP_BIN="$target_dir/debug/livenessd" scripts/sdk-interop.sh 40
else
  echo "sdk-interop: skipped: no Zellular SDK harness at $tool (set ZELLULAR_SDK_TOOL to run the official SDK against the dev sequencer)"
fi
