#!/usr/bin/env bash
# Builds the container image (deploy/image.sh: FROM scratch, the release binary
# and the libraries it links) and runs `livenessd devnet --demo` inside it: every
# process of a whole network, in the image as shipped. Exit 0 only if the demo held.
#
#   scripts/container-smoke.sh
#
# Needs podman (installed with apt-get when missing and possible) and runc. Where
# no container engine can be installed, prints one line saying so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null 2>&1 || true
  fi
fi
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  echo "container-smoke: skipped: no container engine here (podman and runc could not be installed)"
  exit 0
fi
# This machine's container setup: runc, cgroupfs, and no default ulimits (the
# sandbox refuses raising them).
conf="$(mktemp -d)"
trap 'rm -rf "$conf"' EXIT
printf '[containers]\ndefault_ulimits = []\n' >"$conf/containers.conf"
export CONTAINERS_CONF="$conf/containers.conf"
export PODMAN_FLAGS="--runtime runc --cgroup-manager cgroupfs"
tag="livenessd:smoke-test"
deploy/image.sh "$tag"
# shellcheck disable=SC2086
podman $PODMAN_FLAGS run --rm --network host "$tag" devnet --demo --dir /tmp/devnet | tail -25
echo "container-smoke: devnet --demo held inside $tag"
