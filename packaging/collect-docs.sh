#!/usr/bin/env bash
# Copies the man pages and shell completions out of cargo's build directory, where build.rs
# renders them (target/<profile>/build/cts-<hash>/out/), to a place you can find:
#
#   target/man/man8/ctsd.8
#   target/man/man1/ctsctl.1, ctsctl-<command>.1     (one page per subcommand)
#   target/man/man5/ctsd.yaml.5                      (hand-written: packaging/man/ctsd.yaml.5)
#   target/completions/ctsd.bash, ctsctl.bash, _ctsd, _ctsctl, ctsd.fish, ctsctl.fish
#
# Then read them with `man -M target/man ctsd` (or `man -l target/man/man8/ctsd.8`).
# packaging/build-deb.sh ships them in the Debian package; packaging/check-man.sh checks them.
#
# Usage, after `cargo build` (or `cargo build --release` with --release):
#   bash packaging/collect-docs.sh [--release] [DEST]     DEST: default the target directory
# The target directory is $CARGO_TARGET_DIR when set, else target/ in the repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { printf 'collect-docs: error: %s\n' "$*" >&2; exit 1; }

profile=debug
build="cargo build"
dest=
for arg in "$@"; do
    case $arg in
        --release) profile=release build="cargo build --release" ;;
        -h | --help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) die "unknown option $arg (usage: collect-docs.sh [--release] [DEST])" ;;
        *) dest=$arg ;;
    esac
done
target=${CARGO_TARGET_DIR:-target}
dest=${dest:-$target}

# The build script's newest output (an older build of another hash may still be there).
newest=$(ls -t "$target/$profile"/build/cts-*/out/man/ctsd.8 2>/dev/null | head -n 1 || true)
[ -n "$newest" ] ||
    die "no generated man pages under $target/$profile/build/cts-*/out: run $build first"
out=$(dirname "$(dirname "$newest")")

rm -rf "$dest/man" "$dest/completions"
mkdir -p "$dest/man/man1" "$dest/man/man5" "$dest/man/man8" "$dest/completions"
cp "$out"/man/*.1 "$dest/man/man1/"
cp "$out"/man/*.8 "$dest/man/man8/"
cp packaging/man/*.5 "$dest/man/man5/"
cp "$out"/completions/* "$dest/completions/"
printf 'collect-docs: %s man pages in %s/man, %s completion scripts in %s/completions (from %s)\n' \
    "$(find "$dest/man" -type f | wc -l)" "$dest" "$(find "$dest/completions" -type f | wc -l)" \
    "$dest" "$out"
