#!/usr/bin/env bash
# Checks the ctsd Salt state with Salt itself (salt-call --local), the example pillar and the
# ctsd built in target/, without touching the system (everything goes under target/salt-check/):
#   1. the state renders and compiles (state.show_sls ctsd);
#   2. the instances' secrets files it writes are root's and 0600, with no value in Salt's
#      output, and the /etc/cts/ctsd.yaml it renders (env_file included) passes `ctsd --check`;
#   3. its file.managed state, run for real into target/ (the path and binary swapped), passes
#      check_cmd and writes the file;
#   4. the same with a pillar that puts two instances on one port fails in check_cmd and
#      leaves the file as it was.
# When this machine has no user/group cts (the package creates them), the workers' user and
# group are swapped for nobody/nogroup: by sed in 2, by a pillar override in 3 and 4. So are
# the deploy's paths (/var/www/cts/venv/bin/..., /var/www/cts/current), for stand-ins under
# target/salt-check/machine, since `ctsd --check` looks for them.
# Salt comes from PyPI into a virtualenv under target/salt-check/ (once), or from $SALT_VENV.
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

# Stand-ins for the deploy's virtualenv and release, which a development machine lacks.
machine=$work/machine
mkdir -p "$machine/venv/bin" "$machine/current"
for program in gunicorn celery python; do
    printf '#!/bin/sh\nexit 0\n' >"$machine/venv/bin/$program"
    chmod 755 "$machine/venv/bin/$program"
done

swap_user=
if ! getent passwd cts >/dev/null || ! getent group cts >/dev/null; then
    swap_user=1
fi

# make_root NAME PILLAR [SWAP]: a minion config dir (salt-call -c) with local files, the
# repository's state tree plus NAME/states, and the pillar file PILLAR, plus the nobody override
# when SWAP (default: $swap_user) is not empty.
make_root() {
    local root=$work/$1 swap=${3-$swap_user}
    rm -rf "$root"
    mkdir -p "$root/pillar" "$root/states"
    cp "$2" "$root/pillar/example.sls"
    printf "base:\n  '*':\n    - example\n    - secrets_here\n" >"$root/pillar/top.sls"
    # The instances' secrets files go under ROOT, not /etc/cts/secrets; the deploy's paths
    # (/var/www/cts/...) are swapped for the stand-ins under $machine, which exist here, so that
    # `ctsd --check` can find the programs and the working directory.
    cat >"$root/pillar/secrets_here.sls" <<EOF
ctsd:
  secrets_dir: $root/secrets
  config:
    defaults:
      command: [$machine/venv/bin/python, -m, cts_preload, "cts.wsgi:application"]
      cwd: $machine/current
      programs:
        celery: {command: [$machine/venv/bin/celery, -A, cts, worker]}
        beat: {command: [$machine/venv/bin/celery, -A, cts, beat]}
EOF
    if [ -n "$swap" ]; then
        printf 'ctsd:\n  config:\n    defaults: {user: nobody, group: nogroup}\n' >"$root/pillar/nobody.sls"
        printf '    - nobody\n' >>"$root/pillar/top.sls"
    fi
    cat >"$root/minion" <<EOF
file_client: local
root_dir: $root/run
file_roots: {base: [$here, $root/states]}
pillar_roots: {base: [$root/pillar]}
log_file: $root/minion.log
log_level_logfile: warning
EOF
    printf '%s\n' "$root"
}

salt_call() {
    local root=$1
    shift
    "$venv/bin/salt-call" --local -c "$root" --retcode-passthrough --log-level=quiet "$@"
}

# config_state ROOT DEST: the state ctsd-config of `state.show_sls ctsd` as ROOT/states/
# config_check.sls, writing DEST and checking with $ctsd instead of /etc/cts/ctsd.yaml and
# /usr/bin/ctsd, without owner (group cts) or requisites (the package).
config_state() {
    salt_call "$1" --out=json state.show_sls ctsd >"$1/show_sls.json"
    python3 - "$1/show_sls.json" "$2" "$ctsd" >"$1/states/config_check.sls" <<'EOF'
import json, os, sys
show, dest, ctsd = sys.argv[1:]
states = json.load(open(show))["local"]
if isinstance(states, list):  # rendering errors
    sys.exit("\n".join(states))
args = states["ctsd-config"]["file"]
fun = next(a for a in args if isinstance(a, str))
opts = {k: v for a in args if isinstance(a, dict) for k, v in a.items()}
for k in ("user", "group", "require", "order"):
    opts.pop(k, None)
assert opts["name"] == "/etc/cts/ctsd.yaml" and opts["tmp_dir"] == "/etc/cts", opts
assert opts["check_cmd"].startswith("/usr/bin/ctsd "), opts
opts.update(name=dest, tmp_dir=os.path.dirname(dest),
            check_cmd=ctsd + opts["check_cmd"][len("/usr/bin/ctsd"):])
print("ctsd-config:\n  file." + fun + ":")
for k, v in opts.items():
    print("    - " + json.dumps({k: v}))
EOF
}

say "salt: $("$venv/bin/salt-call" --version)"
say "ctsd: $ctsd"
[ -z "$swap_user" ] || say "no user/group cts here: workers' user/group swapped for nobody/nogroup"

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
        keep = ("name", "sources", "check_cmd", "tmp_dir", "reload", "watch", "require")
        shown = {k: opts[k] for k in keep if k in opts}
        rows.append((opts.get("order", 0), f"  {sid}: {mod}.{fun} {json.dumps(shown)}"))
for _, row in sorted(rows):
    print(row)
EOF

# write_secrets ROOT: the states ctsd-secrets-<key> run for real into ROOT/secrets; checks
# that each file is root's, mode 0600, and that no secret value shows in Salt's output.
write_secrets() {
    local key out
    for key in turkey iraq jordan; do
        out=$(salt_call "$1" state.sls_id "ctsd-secrets-$key" ctsd 2>&1) \
            || die "state ctsd-secrets-$key failed: $out"
        case $out in *change-me*|*example*) die "a secret shows in Salt's output: $out" ;; esac
        [ "$(stat -c '%a %U' "$1/secrets/$key.env")" = "600 root" ] \
            || die "$1/secrets/$key.env is $(stat -c '%a %U' "$1/secrets/$key.env"), not 600 root"
    done
    say "secrets: $(ls "$1/secrets" | tr '\n' ' ')(0600, root; values not shown by Salt)"
}

say "2. /etc/cts/ctsd.yaml as rendered from the example pillar, through ctsd --check"
exact=$(make_root exact "$here/pillar.example.sls" "")
write_secrets "$exact"
salt_call "$exact" --out=json cp.get_template salt://ctsd/files/ctsd.yaml.jinja "$exact/ctsd.yaml" >/dev/null
[ -s "$exact/ctsd.yaml" ] || die "rendering produced no file (see $exact/minion.log)"
sed 's/^/  | /' "$exact/ctsd.yaml"
# The deploy's paths swapped for the stand-ins (the pillar override does it for 3 and 4).
sed "s|/var/www/cts/venv/|$machine/venv/|g; s|/var/www/cts/current|$machine/current|g" \
    "$exact/ctsd.yaml" >"$exact/checked.yaml"
if [ -n "$swap_user" ]; then
    sed -i -e 's/^  user: "cts"$/  user: "nobody"/' -e 's/^  group: "cts"$/  group: "nogroup"/' "$exact/checked.yaml"
    grep -q '^  user: "nobody"$' "$exact/checked.yaml" || die "no 'user: \"cts\"' line to swap"
fi
"$ctsd" --check --config "$exact/checked.yaml"

say "3. the state ctsd-config, run for real into $work/real"
rm -rf "$work/real"
mkdir -p "$work/real"
write_secrets "$good"
config_state "$good" "$work/real/ctsd.yaml"
sed 's/^/  | /' "$good/states/config_check.sls"
salt_call "$good" state.sls config_check
[ -s "$work/real/ctsd.yaml" ] || die "the state wrote no file"
before=$(md5sum <"$work/real/ctsd.yaml")

say "4. the same with jordan on iraq's port: check_cmd must fail, the file must stay"
sed 's/port: 8003}/port: 8002}/' "$here/pillar.example.sls" >"$work/clash.sls"
grep -q 'port: 8002}$' "$work/clash.sls" || die "could not make the clashing pillar"
bad=$(make_root bad "$work/clash.sls")
write_secrets "$bad"
config_state "$bad" "$work/real/ctsd.yaml"
if salt_call "$bad" state.sls config_check; then
    die "the state accepted a configuration with a duplicate port"
fi
[ "$(md5sum <"$work/real/ctsd.yaml")" = "$before" ] || die "the rejected file replaced the good one"
say "rejected by check_cmd; $work/real/ctsd.yaml unchanged"
say "ok"
