#!/usr/bin/env bash
# Installs what the end-to-end test needs (issue #5) on a Debian 12 machine, by package name:
#
#   - a Python virtualenv at <repo>/target/e2e/venv with tests/e2e/requirements.txt
#     (Django, gunicorn, psycopg[binary], uvicorn) for the example examples/cts-django;
#   - nginx, from Debian's packages, when no nginx binary is found;
#   - the PostgreSQL server binaries (initdb, postgres), which it only looks for: without them
#     the test uses SQLite.
#
# It starts nothing (neither PostgreSQL nor nginx: the test owns those processes and stops them
# by pid) and writes what it found to <repo>/target/e2e/env, one KEY=VALUE a line, no quoting:
#
#   REPO, VENV, PYTHON, GUNICORN, UVICORN, DJANGO_VERSION   the virtualenv and its programs
#   NGINX                                                   the nginx binary
#   PG_BINDIR                                               directory of initdb and postgres, or empty
#   PG_RUN_AS                                               when run as root: the user to run initdb
#                                                           and postgres as (they refuse root); else empty
#
# Idempotent: a second run checks what is there and installs nothing. Run it from anywhere:
#   bash tests/e2e/setup.sh
# Overrides: E2E_PYTHON (the python3 to build the venv from, default `python3`), PG_BINDIR.
set -euo pipefail

started=$(date +%s%N)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
e2e=$repo/target/e2e
venv=$e2e/venv
requirements=$here/requirements.txt
envfile=$e2e/env
python3=${E2E_PYTHON:-python3}

# say, die and as_root, shared with the packaging scripts (its apt_install is replaced below).
tool="e2e setup"
# shellcheck source=packaging/lib.sh
. "$repo/packaging/lib.sh"

case $repo in *[[:space:]]*) die "the repository path must not contain white space: $repo" ;; esac

# apt-get install, with `apt-get update` only when the install fails without it (an empty or
# stale package list on a fresh image). Returns non-zero when the packages cannot be installed.
apt_updated=
apt_install() {
    say "apt-get install $*"
    if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
        return 0
    fi
    if [ -z "$apt_updated" ]; then
        say "apt-get update (the install failed without it)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
        apt_updated=1
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    else
        return 1
    fi
}

mkdir -p "$e2e"

# --- Python virtualenv --------------------------------------------------------------------------
command -v "$python3" >/dev/null 2>&1 || apt_install python3 python3-venv || die "no $python3"
"$python3" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$python3 is $("$python3" --version 2>&1); Django 5.2 needs Python >= 3.10"

if [ -e "$venv" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "removing the broken virtualenv $venv"
    rm -rf "$venv"
fi
if [ ! -e "$venv/bin/python" ]; then
    say "creating the virtualenv $venv with $("$python3" --version 2>&1)"
    if ! "$python3" -m venv "$venv"; then
        # Debian's python3 has no ensurepip without python3-venv.
        rm -rf "$venv"
        apt_install python3-venv || die "cannot install python3-venv"
        "$python3" -m venv "$venv"
    fi
fi

# The stamp records which requirements the venv holds: pip runs only when they changed.
stamp=$venv/.cts-e2e-requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
    && "$venv/bin/python" -c 'import django, gunicorn, psycopg, uvicorn, celery, redis, pymemcache, packaging' >/dev/null 2>&1; then
    say "virtualenv up to date ($venv)"
else
    say "pip install -r ${requirements#"$repo"/}"
    rm -f "$stamp"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    printf '%s\n' "$want" >"$stamp"
fi

# --- nginx ---------------------------------------------------------------------------------------
# The celery broker and Django's cache of the celery test: Debian's redis-server and
# memcached (the test starts its own on free ports and stops them by pid).
find_bin() {
    command -v "$1" 2>/dev/null && return 0
    [ -x "/usr/bin/$1" ] && { printf '%s\n' "/usr/bin/$1"; return 0; }
    return 1
}
redis_server=$(find_bin redis-server) || {
    apt_install redis-server || die "cannot install redis-server"
    redis_server=$(find_bin redis-server) || die "redis-server installed but not found"
}
memcached=$(find_bin memcached) || {
    apt_install memcached || die "cannot install memcached"
    memcached=$(find_bin memcached) || die "memcached installed but not found"
}
say "redis-server: $redis_server; memcached: $memcached"

find_nginx() {
    command -v nginx 2>/dev/null && return 0
    local p
    for p in /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/nginx/sbin/nginx; do
        [ -x "$p" ] && { printf '%s\n' "$p"; return 0; }
    done
    return 1
}
if nginx=$(find_nginx); then
    say "nginx found: $nginx"
else
    # nginx-light is Debian 12's smallest nginx (proxy module included); `nginx` elsewhere.
    # On a machine with systemd, Debian's package also starts its own nginx.service on port 80:
    # the test does not use it (it runs its own nginx with its own config and port).
    apt_install nginx-light || apt_install nginx || die "cannot install nginx"
    nginx=$(find_nginx) || die "nginx installed but not found"
    say "nginx installed: $nginx"
fi

# --- PostgreSQL server binaries ------------------------------------------------------------------
# Only looked for, never installed nor started. A directory counts when it holds both initdb and
# postgres (pg_config --bindir alone proves nothing: libpq-dev ships pg_config without a server).
pg_candidates() {
    [ -n "${PG_BINDIR:-}" ] && printf '%s\n' "$PG_BINDIR"
    command -v pg_config >/dev/null 2>&1 && pg_config --bindir 2>/dev/null || true
    # Debian/Ubuntu: /usr/lib/postgresql/<major>/bin, newest major first.
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn || true
    local p
    for p in initdb postgres; do
        p=$(command -v "$p" 2>/dev/null) && dirname "$(readlink -f "$p")"
    done
    ls -d /usr/pgsql-*/bin /usr/local/pgsql/bin 2>/dev/null || true
}
pg_bindir=
while IFS= read -r dir; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
        pg_bindir=$(cd "$dir" && pwd -P)
        break
    fi
done < <(pg_candidates)
pg_run_as=
if [ -n "$pg_bindir" ]; then
    say "PostgreSQL found: $pg_bindir ($("$pg_bindir/postgres" --version))"
    if [ "$(id -u)" -eq 0 ]; then
        # initdb and postgres refuse to run as root: the test runs them as this user.
        for u in postgres nobody; do
            if id -u "$u" >/dev/null 2>&1; then pg_run_as=$u; break; fi
        done
        say "running as root: the test runs PostgreSQL as user '${pg_run_as:-?}'"
    fi
else
    say "PostgreSQL not found: the e2e test will use SQLite"
fi

# --- what the test reads -------------------------------------------------------------------------
django_version=$("$venv/bin/python" -m django --version) || die "python -m django --version failed in $venv"
tmp=$envfile.tmp.$$
{
    printf 'REPO=%s\n' "$repo"
    printf 'VENV=%s\n' "$venv"
    printf 'PYTHON=%s\n' "$venv/bin/python"
    printf 'GUNICORN=%s\n' "$venv/bin/gunicorn"
    printf 'UVICORN=%s\n' "$venv/bin/uvicorn"
    printf 'DJANGO_VERSION=%s\n' "$django_version"
    printf 'NGINX=%s\n' "$nginx"
    printf 'REDIS_SERVER=%s\n' "$redis_server"
    printf 'MEMCACHED=%s\n' "$memcached"
    printf 'PG_BINDIR=%s\n' "$pg_bindir"
    printf 'PG_RUN_AS=%s\n' "$pg_run_as"
} >"$tmp"
mv -f "$tmp" "$envfile"

elapsed_ms=$((($(date +%s%N) - started) / 1000000))
say "Django $django_version, $("$venv/bin/gunicorn" --version 2>&1 | head -n1), $("$nginx" -v 2>&1)"
say "wrote ${envfile#"$repo"/} in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s:"
sed 's/^/    /' "$envfile"
