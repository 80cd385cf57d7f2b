#!/usr/bin/env bash
# Checks the man pages with man-db and groff, the tools that will display them:
#   - every page build.rs generates (ctsd(8), ctsctl(1), ctsctl-<command>(1)) and the
#     hand-written packaging/man/ctsd.yaml.5, rendered with `man --warnings` as lintian does:
#     any groff warning (or a failed rendering) is a failure;
#   - `lexgrog` must find each page's NAME line (what whatis and apropos show);
#   - what the pages must say: ctsd(8) has SIGNALS, FILES, ENVIRONMENT, EXIT STATUS and SEE
#     ALSO; ctsctl(1) lists every exit code of crates/cts-proto/src/exit_codes.rs; every page
#     it refers to as ctsctl-<command>(1) exists (no ctsctl-help); no subcommand page offers
#     --version (the subcommands reject it); no backtick is left in the text.
# Builds ctsd and ctsctl (debug) and collects the pages into target/man with
# packaging/collect-docs.sh first. Installs Debian's man-db and groff-base packages when man,
# lexgrog or groff is missing (as root, or with sudo).
# Usage, from anywhere: bash packaging/check-man.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

tool=check-man
# shellcheck source=packaging/lib.sh
. "$here/lib.sh"

if ! command -v man >/dev/null 2>&1 || ! command -v lexgrog >/dev/null 2>&1 ||
    ! command -v groff >/dev/null 2>&1; then
    say "installing Debian's man-db and groff-base packages (for man, lexgrog, groff)"
    apt_install man-db groff-base
fi
say "$(man --version | head -n 1), $(groff --version | head -n 1)"

cd "$repo"
say "cargo build --bin ctsd --bin ctsctl (build.rs renders the pages)"
cargo build --quiet --bin ctsd --bin ctsctl
bash packaging/collect-docs.sh
mandir=${CARGO_TARGET_DIR:-target}/man

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { say "$*"; failed=1; }

pages=("$mandir"/man8/*.8 "$mandir"/man1/*.1 packaging/man/ctsd.yaml.5)
for page in "${pages[@]}"; do
    name=${page#"$mandir"/}
    # As lintian renders them: warnings on, UTF-8, 80 columns, groff's own output discarded.
    status=0
    LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
        man --warnings -E UTF-8 -l -Tutf8 -Z "$page" >/dev/null 2>"$tmp/warnings" || status=$?
    if [ "$status" -ne 0 ] || [ -s "$tmp/warnings" ]; then
        fail "$name: man --warnings: FAILED (exit status $status)"
        sed 's/^/  /' "$tmp/warnings"
        continue
    fi
    status=0
    whatis=$(lexgrog "$page" 2>&1) || status=$?
    if [ "$status" -ne 0 ] || ! grep -q ': "' <<<"$whatis"; then
        fail "$name: lexgrog finds no NAME line: $whatis"
        continue
    fi
    say "$name: ok: ${whatis#*: }"
done

# --- what the pages must say ---------------------------------------------------------------
ctsd=$mandir/man8/ctsd.8
ctsctl=$mandir/man1/ctsctl.1
for section in NAME SYNOPSIS DESCRIPTION OPTIONS SIGNALS FILES ENVIRONMENT 'EXIT STATUS' 'SEE ALSO'; do
    grep -qx "\.SH \"\{0,1\}$section\"\{0,1\}" "$ctsd" || fail "ctsd.8: no $section section"
done
for var in CTSD_SOCKET NOTIFY_SOCKET WATCHDOG_USEC LISTEN_FDS LISTEN_FDNAMES FDSTORE; do
    grep -q "^\.B.* $var\b" "$ctsd" || fail "ctsd.8: ENVIRONMENT does not list $var"
done
for section in COMMANDS 'EXIT STATUS' 'SEE ALSO'; do
    grep -qx "\.SH \"\{0,1\}$section\"\{0,1\}" "$ctsctl" || fail "ctsctl.1: no $section section"
done
# Every exit code of ctsctl, as `.B <code>` in ctsctl(1)'s EXIT STATUS.
codes=$(sed -n 's/^pub const [A-Z_]*: u8 = \([0-9]*\);.*/\1/p' crates/cts-proto/src/exit_codes.rs)
[ -n "$codes" ] || fail "no exit codes found in crates/cts-proto/src/exit_codes.rs"
for code in $codes; do
    grep -qx "\.B $code" "$ctsctl" || fail "ctsctl.1: EXIT STATUS does not list exit code $code"
done
# Every ctsctl-<command>(1) that a page names exists.
for ref in $(cat "$mandir"/man*/* | grep -o 'ctsctl\\-[a-z\\-]*' | sed 's/\\-/-/g' | sort -u); do
    [ -f "$mandir/man1/$ref.1" ] || fail "a page refers to $ref(1), which does not exist"
done
for page in "$mandir"/man1/ctsctl-*.1; do
    if grep -q '\\-\\-version' "$page"; then
        fail "${page##*/}: offers --version, which the subcommands reject"
    fi
done
for page in "${pages[@]}"; do
    # Text lines only: a comment (.\") may quote anything.
    if grep -v '^\.\\"' "$page" | grep -q '`'; then
        fail "${page##*/}: a backtick is left in the text: $(grep -n '`' "$page" | head -n 1)"
    fi
done

if [ "$failed" -ne 0 ]; then
    die "problems found (above)"
fi
say "ok: ${#pages[@]} pages"
