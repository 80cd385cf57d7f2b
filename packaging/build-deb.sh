#!/usr/bin/env bash
# Builds the Debian package of ctsd and lists what it contains:
#   bash packaging/build-deb.sh        -> target/debian/ctsd_<version>-1_<arch>.deb
# Installs cargo-deb (from crates.io) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb"
    cargo install cargo-deb --locked
fi

echo "== building the release binaries (the build script renders man pages and completions)"
cargo build --release --bin ctsd --bin ctsctl

# The build script wrote them into its OUT_DIR; take the newest one's.
out=$(ls -dt target/release/build/cts-*/out 2>/dev/null | while read -r d; do
    [ -f "$d/man/ctsd.8" ] && { echo "$d"; break; }
done)
if [ -z "$out" ]; then
    echo "build-deb: no generated man pages under target/release/build/cts-*/out" >&2
    exit 1
fi
rm -rf target/assets
mkdir -p target/assets
cp -r "$out/man" "$out/completions" target/assets/

echo "== cargo deb"
deb=$(cargo deb --no-build --no-strip | tail -n 1)
echo "$deb"

echo "== contents"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
