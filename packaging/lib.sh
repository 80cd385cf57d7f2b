# Shell functions the packaging scripts share; sourced, not run. The sourcing script sets
# `tool` (its name, for messages) first.

say() { printf '%s: %s\n' "$tool" "$*"; }
die() { printf '%s: error: %s\n' "$tool" "$*" >&2; exit 1; }

# Runs a command as root: directly when root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "not root and no sudo: cannot run: $*"
    fi
}

# Installs Debian packages by name, after refreshing the package lists.
apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
