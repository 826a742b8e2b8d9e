#!/usr/bin/env bash
# The test suite: the official zellular SDK against the dev sequencer, then every
# Rust test (unit, vectors, in-process servers on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sdk-interop.sh 40
cargo test
