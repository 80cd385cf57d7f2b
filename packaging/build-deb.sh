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

# The build script wrote them into its OUT_DIR; the deb's assets (Cargo.toml) take them from
# target/man/ and target/completions/, where this puts them (whatever CARGO_TARGET_DIR is).
echo "== collecting the man pages and completions"
bash packaging/collect-docs.sh --release target

echo "== cargo deb"
deb=$(cargo deb --no-build --no-strip | tail -n 1)
echo "$deb"

echo "== contents"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
