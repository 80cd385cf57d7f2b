#!/usr/bin/env bash
# Checks the ctsd Salt state the way a minion would run it, with Salt itself (salt-call --local)
# and the example pillar, against the ctsd built in target/:
#   1. the state renders and compiles (state.show_sls ctsd);
#   2. the rendered /etc/cts/ctsd.yaml passes `ctsd --check`, as the state's check_cmd runs it
#      (the workers' user/group swapped for nobody/nogroup when this machine has no user cts,
#      which the package creates);
#   3. a pillar with two instances on one port is rejected by that same check.
# Salt comes from PyPI into a virtualenv under target/salt-check/ (once; a few minutes), or
# from $SALT_VENV, a virtualenv that has it.
# Usage, from anywhere: bash packaging/salt/check.sh [CTSD]   (default: target/debug/ctsd)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$repo/target/salt-check
ctsd=$(realpath "${1:-$repo/target/debug/ctsd}")
venv=${SALT_VENV:-$work/venv}

say() { printf 'salt check: %s\n' "$*"; }
die() { printf 'salt check: error: %s\n' "$*" >&2; exit 1; }

[ -x "$ctsd" ] || die "no ctsd binary at $ctsd (cargo build first, or pass its path)"

if [ ! -x "$venv/bin/salt-call" ]; then
    say "installing salt into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q salt
fi

# A minion configuration of our own: local files, the repository's state tree, a pillar
# tree per case, everything Salt writes kept under $work.
# make_root NAME PILLAR_FILE: a config dir for salt-call -c.
make_root() {
    local root=$work/$1
    rm -rf "$root"
    mkdir -p "$root/pillar"
    cp "$2" "$root/pillar/example.sls"
    printf "base:\n  '*':\n    - example\n" >"$root/pillar/top.sls"
    cat >"$root/minion" <<EOF
file_client: local
root_dir: $root/run
file_roots: {base: [$here]}
pillar_roots: {base: [$root/pillar]}
log_file: $root/minion.log
log_level_logfile: warning
EOF
    printf '%s\n' "$root"
}

salt_call() {
    local root=$1
    shift
    "$venv/bin/salt-call" --local -c "$root" --retcode-passthrough --log-level=error "$@"
}

# render ROOT OUT: the config file as file.managed renders it (same template, pillar, salt).
render() {
    salt_call "$1" --out=quiet cp.get_template salt://ctsd/files/ctsd.yaml.jinja "$2"
    [ -s "$2" ] || die "rendering produced no file ($1/minion.log)"
}

# check FILE: what check_cmd runs, on a copy in the same directory (like Salt's tmp_dir).
check() {
    local file=$1 checked=$1.check.yaml
    cp "$file" "$checked"
    if ! getent passwd cts >/dev/null || ! getent group cts >/dev/null; then
        say "no user/group cts here: checking with user nobody, group nogroup"
        sed -i -e 's/^  user: "cts"$/  user: "nobody"/' -e 's/^  group: "cts"$/  group: "nogroup"/' "$checked"
        grep -q '^  user: "nobody"$' "$checked" || die "found no 'user: \"cts\"' line to swap in $file"
    fi
    "$ctsd" --check --config "$checked"
}

say "salt: $("$venv/bin/salt-call" --version)"
say "ctsd: $ctsd"

good=$(make_root good "$here/pillar.example.sls")
say "1. state.show_sls ctsd"
salt_call "$good" --out=json state.show_sls ctsd >"$good/show_sls.json"
python3 - "$good/show_sls.json" <<'EOF'
import json, sys
states = json.load(open(sys.argv[1]))["local"]
if isinstance(states, list):  # rendering errors
    sys.exit("\n".join(states))
rows = []
for sid, body in states.items():
    for mod, args in body.items():
        if mod.startswith("__"):
            continue
        fun = next(a for a in args if isinstance(a, str))
        opts = {k: v for a in args if isinstance(a, dict) for k, v in a.items()}
        keep = {k: opts[k] for k in ("name", "sources", "check_cmd", "reload", "watch", "require") if k in opts}
        rows.append((opts.get("order", 0), f"  {sid}: {mod}.{fun} {json.dumps(keep)}"))
for _, row in sorted(rows):
    print(row)
EOF

say "2. render /etc/cts/ctsd.yaml from the example pillar, then ctsd --check"
render "$good" "$good/ctsd.yaml"
sed 's/^/  | /' "$good/ctsd.yaml"
check "$good/ctsd.yaml"

say "3. a pillar with jordan on iraq's port must be rejected"
sed 's/port: 8003}/port: 8002}/' "$here/pillar.example.sls" >"$work/clash.sls"
grep -q 'port: 8002}$' "$work/clash.sls" || die "could not make the clashing pillar"
bad=$(make_root bad "$work/clash.sls")
render "$bad" "$bad/ctsd.yaml"
if check "$bad/ctsd.yaml"; then
    die "ctsd --check accepted a configuration with a duplicate port"
fi
say "rejected, as check_cmd would: the file would not have been put in place"
say "ok"
