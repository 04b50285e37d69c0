#!/usr/bin/env bash
# Builds the sipedge container image from a release binary (`cargo build --release`), with podman
# (or docker where podman is absent): assembles the image's root file system — the binary, the C
# libraries `ldd` says it links, the system CA bundle — into a build context and builds
# deploy/Containerfile there. No base image is pulled (FROM scratch).
#
# Usage: scripts/image.sh            tags localhost/sipedge:latest and localhost/sipedge:<version>
#        SIPEDGE_BIN=path scripts/image.sh   another binary (e.g. a debug build, for tests)
# Prints the image's size at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v podman >/dev/null; then engine=podman; elif command -v docker >/dev/null; then engine=docker; else
    echo "image.sh: neither podman nor docker is installed" >&2; exit 1
  fi
fi

bin="${SIPEDGE_BIN:-target/release/sipedge}"
if [ -z "${SIPEDGE_BIN:-}" ]; then
  cargo build --release --locked -p sipedge
fi
[ -x "$bin" ] || { echo "image.sh: no binary at $bin" >&2; exit 1; }
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/sipedge" "$root/tmp" "$root/etc/ssl/certs"
install -m 0755 "$bin" "$root/usr/local/bin/sipedge"
# The release profile keeps line tables for profiling (Cargo.toml debug = 1): not in the image.
if command -v strip >/dev/null; then strip --strip-debug "$root/usr/local/bin/sipedge"; fi
# The shared libraries and the loader, at the paths the binary asks for.
for lib in $(ldd "$bin" | awk '/=> \//{print $3} /^\t\/lib/{print $1}'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# The trust store partner certificates are verified against (rustls-native-certs reads it).
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || { echo "image.sh: $ca is missing: apt-get install ca-certificates" >&2; exit 1; }
cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
# The user the image runs as, for tools that look it up; its writable places.
printf 'sipedge:x:10001:10001::/tmp/sipedge:/nonexistent\n' > "$root/etc/passwd"
printf 'sipedge:x:10001:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
cp deploy/Containerfile "$ctx/Containerfile"

format=()
# podman builds OCI images by default, which have no HEALTHCHECK: the Docker format keeps it.
[ "$engine" = podman ] && format=(--format docker)
"$engine" build --quiet "${format[@]}" -f "$ctx/Containerfile" -t localhost/sipedge:latest -t "localhost/sipedge:$version" "$ctx"
size="$("$engine" image inspect localhost/sipedge:latest --format '{{.Size}}')"
echo "image.sh: built localhost/sipedge:latest and localhost/sipedge:$version with $engine: $size bytes uncompressed"
