#!/usr/bin/env bash
# The test suite: the official zellular SDK against the dev sequencer, then every
# Rust test (unit, vectors, in-process clusters on loopback), with blspy checking
# livenessd's signatures.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ZELLULAR_SDK_VENV:-.venv-sdk}"
scripts/sdk-interop.sh 40
BLSPY_PYTHON="$(cd "$venv" && pwd)/bin/python" cargo test
