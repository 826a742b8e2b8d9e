#!/usr/bin/env bash
# Builds livenessd's container image FROM scratch out of a release binary: the
# binary, exactly the shared libraries `ldd` says it links, the CA certificates for
# outgoing HTTPS and an empty /tmp. No base image is pulled; the image runs as uid
# 10001.
#
#   deploy/image.sh [TAG]            # default livenessd:<version>
#
# LIVENESSD_BIN: an existing binary (default: cargo build --release, into
# $CARGO_TARGET_DIR or target/). CONTAINER_ENGINE: podman (default) or docker;
# PODMAN_FLAGS: extra global podman flags (e.g. --runtime runc --cgroup-manager cgroupfs).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag="${1:-livenessd:$version}"
engine="${CONTAINER_ENGINE:-podman}"
if [ -n "${LIVENESSD_BIN:-}" ]; then
  bin="$LIVENESSD_BIN"
else
  cargo build --release --quiet --bin livenessd
  bin="${CARGO_TARGET_DIR:-target}/release/livenessd"
fi
[ -x "$bin" ] || { echo "image: no binary at $bin" >&2; exit 2; }
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/tmp" "$root/etc/ssl/certs"
chmod 1777 "$root/tmp"
cp "$bin" "$root/livenessd"
# Line tables are for local debugging; the image ships the stripped binary.
if command -v strip >/dev/null 2>&1; then strip "$root/livenessd"; fi
# Every library the dynamic loader will look for, at the same path (the loader too).
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  cp --parents -L "$lib" "$root/"
done
for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -f "$ca" ]; then cp -L "$ca" "$root/etc/ssl/certs/ca-certificates.crt"; break; fi
done
cat >"$ctx/Containerfile" <<'CF'
FROM scratch
COPY rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
EXPOSE 7001
ENTRYPOINT ["/livenessd"]
CF
build_flags=()
if [ "$engine" = podman ] && [ ! -f /etc/containers/policy.json ]; then
  # Nothing is pulled (FROM scratch), but podman wants a signature policy file.
  printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$ctx/policy.json"
  build_flags+=(--signature-policy "$ctx/policy.json")
fi
# shellcheck disable=SC2086
$engine ${PODMAN_FLAGS:-} build --quiet "${build_flags[@]}" -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
echo "image: $tag ($(du -sh "$root" | cut -f1) in $(find "$root" -type f | wc -l) files)"
