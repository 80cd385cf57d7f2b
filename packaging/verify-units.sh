#!/usr/bin/env bash
# Checks the systemd files in packaging/ with systemd's own tools, on this machine, without
# installing them:
#   - ctsd.service and examples/*.socket with `systemd-analyze verify`: unknown or misspelt
#     keys, bad values, a socket's Service= that does not load, ... Any output is a failure (an
#     unknown key is only a warning to systemd, exit status 0). /usr/bin/ctsd and
#     /usr/bin/ctsctl are not installed here, and verify requires every Exec*= binary to be
#     executable, so copies of the units point them at stand-ins in a temporary directory; any
#     other missing binary (a typo) is still reported.
#   - sysusers.d/ctsd.conf and tmpfiles.d/ctsd.conf, applied to a temporary root.
#   - the unit's `systemd-analyze security` exposure, for information.
# Installs Debian's systemd package when systemd-analyze is missing (as root, or with sudo).
# Usage, from anywhere: bash packaging/verify-units.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

tool=verify-units
# shellcheck source=packaging/lib.sh
. "$here/lib.sh"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    say "installing Debian's systemd package (for systemd-analyze, systemd-sysusers, systemd-tmpfiles)"
    apt_install systemd
fi
say "$(systemd-analyze --version | head -n 1)"

tmp=$(mktemp -d)
trap 'as_root rm -rf "$tmp"' EXIT
failed=0

# report WHAT OUTPUT_FILE STATUS: prints the output; any output or a non-zero status fails.
report() {
    if [ "$3" -ne 0 ] || [ -s "$2" ]; then
        say "$1: FAILED (exit status $3)"
        sed 's/^/  /' "$2"
        failed=1
    else
        say "$1: ok"
    fi
}

# --- units -----------------------------------------------------------------------------------
mkdir -p "$tmp/units" "$tmp/bin"
for prog in ctsd ctsctl; do
    printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/$prog"
    chmod +x "$tmp/bin/$prog"
done
units=("$here/ctsd.service" "$here"/examples/*.socket)
copies=()
for unit in "${units[@]}"; do
    copy=$tmp/units/$(basename "$unit")
    sed -e "s|=/usr/bin/ctsd |=$tmp/bin/ctsd |" -e "s|=/usr/bin/ctsctl |=$tmp/bin/ctsctl |" \
        "$unit" >"$copy"
    copies+=("$copy")
done
grep -q "^ExecStart=$tmp/bin/ctsd " "$tmp/units/ctsd.service" ||
    die "ctsd.service has no 'ExecStart=/usr/bin/ctsd ...' line to point at the stand-in"

# Documentation= names man pages that are checked only where they are installed.
man=no
if man -w 8 ctsd >/dev/null 2>&1 && man -w 1 ctsctl >/dev/null 2>&1; then
    man=yes
fi
say "systemd-analyze verify --man=$man ${units[*]#"$here"/}"
status=0
systemd-analyze verify --man="$man" "${copies[@]}" >"$tmp/verify.out" 2>&1 || status=$?
# Messages name the copies; name the originals instead.
for i in "${!units[@]}"; do
    sed -i "s|${copies[$i]}|packaging/${units[$i]#"$here"/}|g" "$tmp/verify.out"
done
sed -i "s|$tmp/bin/|/usr/bin/|g" "$tmp/verify.out"
report "systemd-analyze verify" "$tmp/verify.out" "$status"

# --- sysusers.d and tmpfiles.d, applied to a scratch root ---------------------------------------
root=$tmp/root
mkdir -p "$root/etc"
cp /etc/passwd /etc/group "$root/etc/"
status=0
as_root systemd-sysusers --root="$root" "$here/sysusers.d/ctsd.conf" >"$tmp/sysusers.out" 2>&1 || status=$?
grep -v -E "^Creating (group|user) '" "$tmp/sysusers.out" >"$tmp/sysusers.problems" || true
report "systemd-sysusers sysusers.d/ctsd.conf" "$tmp/sysusers.problems" "$status"
sed 's/^/  /' "$tmp/sysusers.out"
for name in cts; do
    grep -q "^$name:" "$root/etc/passwd" || { say "user $name was not created"; failed=1; }
done
for name in cts cts-admin; do
    grep -q "^$name:" "$root/etc/group" || { say "group $name was not created"; failed=1; }
done

status=0
as_root systemd-tmpfiles --create --root="$root" "$here/tmpfiles.d/ctsd.conf" >"$tmp/tmpfiles.out" 2>&1 || status=$?
report "systemd-tmpfiles --create tmpfiles.d/ctsd.conf" "$tmp/tmpfiles.out" "$status"
cts_gid=$(awk -F: '$1 == "cts" { print $3 }' "$root/etc/group")
got=$(stat -c '%a %u %g' "$root/var/log/cts" 2>/dev/null || echo missing)
if [ "$got" = "750 0 $cts_gid" ]; then
    say "  /var/log/cts: mode 0750, root:cts"
else
    say "  /var/log/cts: expected mode 750, uid 0, gid $cts_gid (cts); got: $got"
    failed=1
fi

# --- maintainer scripts, against a stub systemctl ----------------------------------------------
# In a mount namespace of their own, /run is a tmpfs with /run/systemd/system (systemd is
# "running") and systemctl a script that records its calls and knows one socket unit.
stub=$tmp/stub
mkdir -p "$stub/bin"
cat >"$stub/bin/systemctl" <<'STUB'
#!/bin/sh
echo "$*" >>"$STUB_LOG"
case "$*" in
    *list-unit-files*|*list-units*) echo "ctsd-jordan.socket enabled enabled" ;;
esac
exit 0
STUB
chmod +x "$stub/bin/systemctl"
if as_root unshare --mount sh -c '
        mount -t tmpfs none /run && mkdir -p /run/systemd/system &&
        PATH="$1/bin:$PATH" STUB_LOG="$1/calls" sh "$2/debian/prerm" remove'         sh "$stub" "$here" >"$tmp/prerm.out" 2>&1; then
    calls=$(tr '\n' ';' <"$stub/calls")
    case "$calls" in
        *"stop ctsd-jordan.socket;disable ctsd-jordan.socket;stop ctsd.service;disable ctsd.service;"*)
            say "  prerm remove: stops and disables ctsd-jordan.socket, then ctsd.service" ;;
        *) say "  prerm remove: unexpected systemctl calls: $calls"; failed=1 ;;
    esac
else
    say "  prerm remove: cannot run in a mount namespace here (needs root and unshare); not checked"
    sed 's/^/    /' "$tmp/prerm.out"
fi

# --- exposure, for information --------------------------------------------------------------
exposure=$(systemd-analyze security --offline=true --no-pager "$tmp/units/ctsd.service" 2>/dev/null |
    grep 'Overall exposure level' || true)
[ -z "$exposure" ] || say "security (information only): ${exposure#→ }"

if [ "$failed" -ne 0 ]; then
    die "problems found (above)"
fi
say "ok"
