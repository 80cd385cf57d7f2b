#!/usr/bin/env bash
# Builds the root file system that tests/systemd/run.sh boots with systemd-nspawn: Debian
# bookworm (minbase) with systemd, D-Bus, python3 (for tests/systemd/clients.py) and Salt from
# PyPI in a virtualenv at /opt/salt, made with the root file system's own python3.
#   bash tests/systemd/rootfs.sh DIR
# Does nothing when DIR was built by this very file (its checksum is kept in DIR); otherwise
# builds DIR.new and then puts it in DIR's place. As root; takes about two minutes, most of it
# debootstrap and pip. The caller keeps others away from DIR meanwhile (run.sh holds a lock).
# Debian's packages come from debootstrap's default mirror, Salt from pip's default index;
# pip trusts the CA bundle this machine trusts ($PIP_CERT, else $SSL_CERT_FILE, else
# /etc/ssl/certs/ca-certificates.crt), bind-mounted over the root file system's own while pip
# runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tool="systemd test: rootfs"
# shellcheck source=packaging/lib.sh
. "$here/../../packaging/lib.sh"

[ $# -eq 1 ] || die "usage: rootfs.sh DIR"
dir=$1
suite=bookworm
# In the booted container: systemd as init, dbus for systemctl's bus, python3 for the clients
# and Salt, procps (pgrep) and iproute2 (ss) for looking around, ca-certificates for pip.
packages=systemd,systemd-sysv,dbus,python3,python3-venv,procps,iproute2,ca-certificates
# Salt's dependencies include C extensions without wheels for this python (timelib): compiled
# with these, which are removed again afterwards.
build_packages=(gcc libc6-dev python3-dev)
# Pinned: the newest release whose dependencies the index has; a newer one changes the test's
# inputs, so it comes with a change of this file (and so a rebuild).
salt_version=3007.16
recipe=$(sha256sum <"${BASH_SOURCE[0]}" | cut -d' ' -f1)
stamp=.ctsd-systemd-test-recipe

if [ -f "$dir/$stamp" ] && [ "$(cat "$dir/$stamp")" = "$recipe" ]; then
    say "cached: $dir"
    exit 0
fi

ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[ -f "$ca" ] || die "no CA bundle at $ca (set PIP_CERT)"
for prog in debootstrap chroot unshare; do
    command -v "$prog" >/dev/null 2>&1 || die "$prog is missing"
done

new=$dir.new
log=$dir.log
rm -rf "$new"
mkdir -p "$(dirname "$dir")"
say "building $suite into $new (log: $log)"
: >"$log"
t0=$SECONDS
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$new" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "debootstrap failed (log: $log)"
fi
say "debootstrap: $((SECONDS - t0)) s"

# in_root CMD...: runs CMD in the new root with /dev, /proc and this machine's CA bundle
# mounted, in a mount namespace of its own (so the mounts go away with it), with a clean
# environment.
in_root() {
    # shellcheck disable=SC2016 # expanded by the inner sh
    unshare --mount --propagation private sh -c '
        set -e
        root=$1 ca=$2
        shift 2
        mount --bind /dev "$root/dev"
        mount -t proc proc "$root/proc"
        mount --bind "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
        exec chroot "$root" "$@"' sh "$new" "$ca" \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@" >>"$log" 2>&1
}

t0=$SECONDS
in_root apt-get install -y -q --no-install-recommends "${build_packages[@]}" ||
    die "installing ${build_packages[*]} failed (log: $log)"
in_root python3 -m venv /opt/salt || die "python3 -m venv failed (log: $log)"
if ! in_root /opt/salt/bin/pip install --no-cache-dir --disable-pip-version-check \
    "salt==$salt_version"; then
    tail -n 30 "$log" >&2
    die "pip install salt==$salt_version failed (log: $log)"
fi
in_root apt-get purge -y -q --autoremove "${build_packages[@]}" ||
    die "removing ${build_packages[*]} failed (log: $log)"
in_root apt-get clean
say "salt $salt_version in /opt/salt: $((SECONDS - t0)) s"

# Nothing in the test reads documentation; the container's console is not a terminal, so no
# getty on it.
rm -rf "$new"/usr/share/doc/* "$new"/usr/share/man/* "$new"/usr/share/info/* \
    "$new"/usr/share/locale/*
ln -sf /dev/null "$new/etc/systemd/system/console-getty.service"

printf '%s\n' "$recipe" >"$new/$stamp"
rm -rf "$dir"
mv "$new" "$dir"
say "built $dir ($(du -sh "$dir" | cut -f1))"
