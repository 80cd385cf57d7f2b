#!/usr/bin/env bash
# ctsd under the real systemd: builds the Debian package, boots Debian bookworm with
# systemd-nspawn (an overlay over a cached root file system, a private network namespace),
# installs the package with apt and checks what the unit and the package promise:
#   start, STATUS=, journal, reload (valid and invalid), the fd store across a restart, the
#   watchdog, the Salt state (salt-call --local), a socket unit on port 80, the unit's
#   exposure (systemd-analyze security), sysusers/tmpfiles, apt purge.
# Prints one line per check (ok/FAIL with figures) and exits non-zero when any fails.
#   bash tests/systemd/run.sh
# Needs root, systemd-nspawn and debootstrap (installs Debian's systemd-container and
# debootstrap when missing). Without them it prints `SKIPPED: <reason>` and exits 0.
# The root file system is cached in target/systemd-test/rootfs (or $CTSD_SYSTEMD_ROOTFS),
# rebuilt when tests/systemd/rootfs.sh changes; CTSD_SYSTEMD_KEEP=1 keeps the run's directory
# (logs, the overlay's upper layer) after the test.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tool="systemd test"
# shellcheck source=packaging/lib.sh
. "$repo/packaging/lib.sh"

skip() {
    local bar="************************************************************************"
    printf '\n%s\n%s: SKIPPED: %s\n%s\n\n' "$bar" "$tool" "$*" "$bar"
    exit 0
}

# --- can it run here? (outside the mount namespace) -------------------------------------------
if [ -z "${CTSD_SYSTEMD_TEST_NS:-}" ]; then
    [ "$(uname -s)" = Linux ] || skip "not Linux"
    [ "$(id -u)" -eq 0 ] || skip "not root: systemd-nspawn, overlay mounts and cgroups need root"
    missing=()
    command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null 2>&1 || skip "no ${missing[*]} and no apt-get to install them"
        say "installing Debian's ${missing[*]}"
        apt_install "${missing[@]}" || skip "could not install ${missing[*]}"
    fi
    for prog in systemd-nspawn debootstrap unshare nsenter flock mount; do
        command -v "$prog" >/dev/null 2>&1 || skip "$prog is missing"
    done
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
        skip "the kernel has no overlay file system"
    exec unshare --mount --propagation private env CTSD_SYSTEMD_TEST_NS=1 bash "$0" "$@"
fi

# --- from here on in a mount namespace of its own: mounts vanish with it -----------------------
target=${CARGO_TARGET_DIR:-$repo/target}
work=$target/systemd-test
rootfs=${CTSD_SYSTEMD_ROOTFS:-$work/rootfs}
mkdir -p "$work"
run=$(mktemp -d "$work/run.XXXXXX")
merged=$run/root
started=$SECONDS

nspawn_pid=
leader=
client_pid=
cgroups=()
made_nspawn_dir=
mounted_nspawn_tmpfs=

# Inside the container, as root, with a plain environment.
inct() {
    nsenter --target "$leader" --all --root --wd -- env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER='' SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive \
        "$@"
}

cleanup() {
    local status=$?
    # Nothing interrupts the cleanup: a second Ctrl-C would leave the container running.
    trap '' INT TERM
    set +e
    if [ -n "$client_pid" ] && kill -0 "$client_pid" 2>/dev/null; then
        kill -TERM "$client_pid"
        wait_gone "$client_pid" 5 || kill -KILL "$client_pid"
        wait "$client_pid" 2>/dev/null
    fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        say "stopping the container (systemd-nspawn pid $nspawn_pid)"
        [ -z "$leader" ] || timeout 10 nsenter --target "$leader" --all --root --wd -- \
            /usr/bin/systemctl poweroff --no-block >/dev/null 2>&1
        if ! wait_gone "$nspawn_pid" 20; then
            # SIGKILL to the container's init ends every process in its pid namespace.
            say "no poweroff within 20 s: SIGKILL to the container's init (pid $leader)"
            [ -z "$leader" ] || kill -KILL "$leader"
            wait_gone "$nspawn_pid" 10 || kill -KILL "$nspawn_pid"
        fi
    fi
    [ -z "$nspawn_pid" ] || wait "$nspawn_pid" 2>/dev/null
    remove_cgroups
    mountpoint -q "$merged" && umount "$merged"
    [ -z "$mounted_nspawn_tmpfs" ] || umount /run/systemd/nspawn
    [ -z "$made_nspawn_dir" ] || rmdir /run/systemd/nspawn
    if [ -n "${CTSD_SYSTEMD_KEEP:-}" ]; then
        say "kept $run"
    else
        rm -rf "$run"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_gone PID SECONDS: whether PID ended within SECONDS.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    ! kill -0 "$1" 2>/dev/null
}

# The container's cgroups, children first. systemd-nspawn --keep-unit runs the container in
# the cgroup it is started from, and leaves payload/ and supervisor/ below it. A cgroup empties
# once the kernel has reaped its last process: tried for up to 10 s.
remove_cgroups() {
    local cg dir i left
    for ((i = 0; i < 100; i++)); do
        left=
        for cg in "${cgroups[@]}"; do
            [ -d "$cg" ] || continue
            while IFS= read -r dir; do
                rmdir "$dir" 2>/dev/null || left=$dir
            done < <(find "$cg" -depth -type d)
        done
        [ -n "$left" ] || return 0
        sleep 0.1
    done
    say "cannot remove cgroup $left" \
        "(processes: $(find "$left" -name cgroup.procs -exec cat {} + | tr '\n' ' '))"
}

# --- results -------------------------------------------------------------------------------------
results=()
problems=0
check_problems=()
step() { printf '\n== %s\n' "$*"; }
# fail MESSAGE: records a problem of the check in progress.
fail() {
    check_problems+=("$*")
    printf '   FAIL: %s\n' "$*"
}
# run_check NAME FUNCTION: runs FUNCTION, which prints as it goes, calls fail for each problem
# and sets `figures`; the check is ok when FUNCTION returns 0 and failed nothing.
run_check() {
    local name=$1 t0=$SECONDS verdict=ok
    shift
    check_problems=()
    figures=
    step "$name"
    if ! "$@"; then
        [ ${#check_problems[@]} -gt 0 ] || fail "stopped early"
    fi
    if [ ${#check_problems[@]} -gt 0 ]; then
        verdict=FAIL
        problems=$((problems + 1))
        figures="${figures:+$figures; }${check_problems[0]}"
    fi
    results+=("$(printf '%-4s  %-22s %3ss  %s' "$verdict" "$name" "$((SECONDS - t0))" "$figures")")
    printf '   -> %s\n' "$verdict"
}

# --- helpers in the container ----------------------------------------------------------------------
prop() { inct systemctl show -p "$2" --value "$1"; }
main_pid() { prop ctsd.service MainPID; }
# put PATH: stdin into PATH in the container (whose /run and /tmp are its own tmpfs).
# shellcheck disable=SC2016 # expanded by the container's sh
put() { inct sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1"' sh "$1"; }
# Pids of the processes named NAME in the container.
pids_of() { inct pgrep -x "$1" | sort -n | tr '\n' ' ' | sed 's/ $//'; }
# Worker pids of instance KEY, sorted (from ctsctl status --json).
instance_pids() {
    inct ctsctl status --json | inct python3 -c '
import json, sys
doc = json.load(sys.stdin)
items = doc.get("instances", []) if isinstance(doc, dict) else doc
for i in items:
    if i.get("key") == sys.argv[1]:
        print(" ".join(sorted(str(w["pid"]) for w in i.get("workers", []))))' "$1"
}
# environ_of PID VAR: VAR in the environment process PID of the container started with.
# shellcheck disable=SC2016 # expanded by the container's sh
environ_of() { inct sh -c 'tr "\0" "\n" <"/proc/$1/environ" | sed -n "s/^$2=//p"' sh "$1" "$2"; }
indent() { sed 's/^/   /'; }
# seconds T0 T1 DECIMALS: the time from T0 to T1 (date +%s%N) in seconds.
seconds() { awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { printf "%.*f", d, (b - a) / 1e9 }'; }
cursor() { inct journalctl -q -n 1 --show-cursor | sed -n 's/^-- cursor: //p'; }
journal_since() {
    local c=$1
    shift
    inct journalctl -q --no-pager --after-cursor="$c" "$@"
}
# clients ARGS...: tests/systemd/clients.py in the container (targets as PORT=INSTANCE).
clients() { inct python3 /root/ctsd-test/clients.py "$@"; }
seed_targets=("8001=turkey" "8002=iraq" "8003=jordan")
# kv KEY LINE: the value of KEY in a `key=value ...` line.
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# write_config FILE [IRAQ_WORKERS] [JORDAN_NAME] [JORDAN_PORT]: the test's ctsd.yaml, three
# instances of the demo worker, which starts slowly (1.5 s before READY=1 and accepting).
write_config() {
    put "$1" <<EOF
# ctsd.yaml of tests/systemd/run.sh
ctsd:
  environment: staging
  socket: /run/ctsd/ctsd.sock
  socket_mode: "0660"
  socket_group: cts
  admins: {users: [root], groups: [cts-admin]}
  log_dir: /var/log/cts
  bind: 127.0.0.1
defaults:
  workers: 2
  command: [/usr/local/bin/cts-demo-worker, --start-delay-ms, "1500"]
  cwd: /var/www/cts
  user: cts
  group: cts
  ready: {notify: true, timeout: 10s}
  stop_timeout: 10s
instances:
  turkey: {name: Turkey, prefix: /TR, currency: TRY, port: 8001}
  iraq:   {name: Iraq, prefix: /IQ, currency: IQD, port: 8002, workers: ${2:-3}}
  jordan: {name: "${3:-Jordan}", prefix: /JO, currency: JOD, port: ${4:-8003}}
EOF
}

# ==================================================================================================
step "building the package and the demo worker"
t0=$SECONDS
if ! bash "$repo/packaging/build-deb.sh" >"$run/build-deb.log" 2>&1; then
    tail -n 40 "$run/build-deb.log"
    die "packaging/build-deb.sh failed"
fi
# build-deb.sh prints the package's path on the line after "== cargo deb".
deb=$(sed -n '/^== cargo deb$/{n;p;q}' "$run/build-deb.log")
[ -f "$deb" ] || die "no package at '$deb' (see the line after '== cargo deb' in $run/build-deb.log)"
(cd "$repo" && cargo build --release --quiet --bin cts-demo-worker)
demo=$target/release/cts-demo-worker
say "$(basename "$deb") ($(du -h "$deb" | cut -f1)) and cts-demo-worker: $((SECONDS - t0)) s"
build_s=$((SECONDS - t0))

step "root file system"
t0=$SECONDS
exec 9>"$rootfs.lock"
flock -x 9
bash "$here/rootfs.sh" "$rootfs"
# Shared from here: another run may boot it too, none may rebuild it meanwhile.
flock -s 9
rootfs_s=$((SECONDS - t0))

step "booting the container"
t0=$SECONDS
mkdir -p "$run/upper" "$run/work" "$merged"
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$run/upper,workdir=$run/work" "$merged"
# systemd-nspawn keeps state in /run/systemd/nspawn: a tmpfs of this namespace's own.
if [ ! -d /run/systemd/nspawn ]; then
    mkdir -p /run/systemd/nspawn
    made_nspawn_dir=1
fi
mount -t tmpfs tmpfs /run/systemd/nspawn
mounted_nspawn_tmpfs=1
# What the test puts in the container: the package, the demo worker, the clients, the Salt
# state. /root/ctsd-test and /usr/local/bin are the test's, not the package's.
mkdir -p "$merged/root/ctsd-test"
cp "$deb" "$here/clients.py" "$merged/root/ctsd-test/"
cp -r "$repo/packaging/salt" "$merged/root/ctsd-test/salt-states"
install -m 0755 "$demo" "$merged/usr/local/bin/cts-demo-worker"
# A cgroup of its own (on each hierarchy this machine has), below this shell's.
name=ctsd-systemd-test.$$
while IFS=: read -r _ ctrl path; do
    case "$ctrl" in
        "") base=/sys/fs/cgroup
            [ -f "$base/cgroup.controllers" ] || base=/sys/fs/cgroup/unified ;;
        name=systemd) base=/sys/fs/cgroup/systemd ;;
        *) continue ;;
    esac
    [ -f "$base/cgroup.procs" ] || continue
    mkdir "$base${path%/}/$name" || skip "cannot create a cgroup in $base${path%/}"
    cgroups+=("$base${path%/}/$name")
done </proc/self/cgroup
[ ${#cgroups[@]} -gt 0 ] || skip "no cgroup hierarchy to run the container in"
(
    for cg in "${cgroups[@]}"; do echo "$BASHPID" >"$cg/cgroup.procs"; done
    exec systemd-nspawn --quiet --register=no --keep-unit --private-network --boot \
        --console=read-only --machine="ctsd-test-$$" --directory="$merged"
) >"$run/console.log" 2>&1 </dev/null &
nspawn_pid=$!
our_pidns=$(readlink /proc/self/ns/pid)
for ((i = 0; i < 300; i++)); do
    read -r -a children < <(cat /proc/"$nspawn_pid"/task/*/children 2>/dev/null) || true
    for child in "${children[@]}"; do
        if [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] &&
            [ "$(readlink "/proc/$child/ns/pid")" != "$our_pidns" ]; then
            leader=$child
        fi
    done
    [ -z "$leader" ] || break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$leader" ]; then
    cat "$run/console.log"
    die "the container did not start (systemd-nspawn: above)"
fi
state=
for ((i = 0; i < 600; i++)); do
    state=$(inct systemctl is-system-running 2>/dev/null) || true
    case "$state" in running | degraded) break ;; esac
    sleep 0.1
done
case "$state" in
    running) ;;
    degraded) say "degraded: $(inct systemctl --failed --no-legend --plain | tr '\n' ' ')" ;;
    *) cat "$run/console.log"; die "the container's systemd did not come up (state: ${state:-none})" ;;
esac
boot_s=$((SECONDS - t0))
say "$(inct systemctl --version | head -n 1); system $state; leader pid $leader; ${boot_s} s"

# What is there before the package: compared with what is left after apt purge.
snapshot() {
    inct find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
        -o -path /var/tmp -o -path /root -o -path /var/log/journal -o -path /var/cache \
        -o -path /var/lib/apt -o -path /var/lib/dpkg -o -path /var/lib/systemd/timers \
        -o -path /var/lib/systemd/catalog \) -prune -o -print |
        sort
}
snapshot >"$run/files.before"

# ==================================================================================================
check_install() {
    inct sh -c 'cd /root/ctsd-test && apt install -y ./ctsd_*.deb' >"$run/apt-install.log" 2>&1 ||
        { tail -n 20 "$run/apt-install.log"; fail "apt install ./ctsd_*.deb failed"; return 1; }
    grep -E '^(The following|  |[0-9]+ upgraded|Setting up|Creating)' "$run/apt-install.log" | indent
    local st
    # shellcheck disable=SC2016 # dpkg-query's format
    st=$(inct dpkg-query -W -f '${Status} ${Version}' ctsd)
    [[ "$st" == "install ok installed "* ]] || fail "dpkg: ctsd is '$st'"
    inct apt-get check -q >/dev/null 2>&1 || fail "apt-get check: broken dependencies"
    figures="ctsd ${st##* } installed, dependencies satisfied"
}

check_accounts() {
    local pw grp got
    pw=$(inct getent passwd cts) || fail "no user cts"
    [[ "$pw" == *":/var/www/cts:/usr/sbin/nologin" ]] || fail "user cts: $pw"
    inct getent group cts >/dev/null || fail "no group cts"
    inct getent group cts-admin >/dev/null || fail "no group cts-admin"
    got=$(inct stat -c '%a %U:%G' /var/log/cts) || fail "no /var/log/cts"
    [ "$got" = "750 root:cts" ] || fail "/var/log/cts: $got, expected 750 root:cts"
    grp=$(inct stat -c '%a %U:%G' /etc/cts/ctsd.yaml)
    [ "$grp" = "640 root:cts" ] || fail "/etc/cts/ctsd.yaml: $grp, expected 640 root:cts"
    say "cts: $pw; /var/log/cts $got; /etc/cts/ctsd.yaml $grp"
    figures="user cts, groups cts and cts-admin, /var/log/cts $got"
}

start_s=
check_start() {
    # The deploy's directory (the workers' cwd), which the package leaves to the deploy.
    inct install -d -o cts -g cts /var/www/cts
    write_config /etc/cts/ctsd.yaml
    local t0 t1 out status
    t0=$(date +%s%N)
    if ! inct systemctl start ctsd; then
        inct journalctl -u ctsd -n 30 --no-pager
        fail "systemctl start ctsd failed"
        return 1
    fi
    t1=$(date +%s%N)
    # At once, no retry: every instance must answer now, and quickly (a worker still in its
    # 1.5 s start delay would keep the connection waiting in the backlog).
    out=$(clients --once --timeout 5 "${seed_targets[@]}") || fail "right after start: $out"
    start_s=$(seconds "$t0" "$t1" 2)
    [ "$(kv max_ms "$out")" -lt 500 ] || fail "right after start an answer took $(kv max_ms "$out") ms"
    awk -v s="$start_s" 'BEGIN { exit !(s >= 1.4) }' ||
        fail "systemctl start returned after ${start_s}s, before the workers' 1.5 s start delay"
    # For information: LimitNOFILE=65536, capped by the limits the container itself got.
    # shellcheck disable=SC2016 # expanded by the container's sh
    say "ctsd's open files limit, soft and hard:" \
        "$(inct sh -c 'sed -n "s/^Max open files *//p" "/proc/$1/limits"' sh "$(main_pid)" | tr -s ' ')"
    status=$(inct systemctl status ctsd --no-pager --lines=0 || true)
    grep -E '^ +(Active|Status|Main PID):' <<<"$status" | indent
    grep -q 'Active: active (running)' <<<"$status" || fail "not active (running)"
    local text
    text=$(prop ctsd StatusText)
    [ "$text" = "3/3 instances running, 7/7 workers ready" ] || fail "STATUS=$text"
    figures="start ${start_s}s; then all 3 answered at once (max $(kv max_ms "$out") ms); STATUS=\"$text\""
}

check_journal() {
    local pid lines
    pid=$(main_pid)
    lines=$(inct journalctl -u ctsd --no-pager -o cat "_PID=$pid" SYSLOG_IDENTIFIER=ctsd)
    grep -q "^ctsd .* running 3 instances" <<<"$lines" ||
        fail "no 'ctsd ... running 3 instances' line from ctsd (pid $pid)"
    grep -q "^ready$" <<<"$lines" || fail "no 'ready' line from ctsd"
    grep -m 1 "running 3 instances" <<<"$lines" | cut -c1-150 | indent
    figures="$(wc -l <<<"$lines") lines from ctsd (pid $pid) in the journal"
}

# Delegate=yes: ctsd puts each worker in a cgroup of its own below its unit's.
check_delegation() {
    local pid line w cg
    pid=$(main_pid)
    line=$(inct journalctl -u ctsd --no-pager -o cat "_PID=$pid" | grep -m 1 -E 'cgroup' || true)
    say "ctsd: $line"
    [[ "$line" == "each worker runs in a cgroup of its own under "* ]] || fail "ctsd: $line"
    w=$(pids_of cts-demo-worker | cut -d' ' -f1)
    cg=$(inct sed -n 's/^0:://p' "/proc/$w/cgroup")
    say "worker $w: cgroup $cg"
    [[ "$cg" == /system.slice/ctsd.service/ctsd-$pid/w* ]] || fail "worker $w is in cgroup $cg"
    figures="worker $w in $cg"
}

check_reload() {
    local pid turkey_before c out
    pid=$(main_pid)
    turkey_before=$(instance_pids turkey)
    write_config /etc/cts/ctsd.yaml 4 "Hashemite Kingdom of Jordan"
    c=$(cursor)
    inct systemctl reload ctsd || fail "systemctl reload ctsd failed"
    journal_since "$c" -u ctsd -o cat | grep 'reload' | indent
    [ "$(main_pid)" = "$pid" ] || fail "ctsd restarted (pid $pid -> $(main_pid))"
    [ "$(instance_pids turkey)" = "$turkey_before" ] ||
        fail "turkey's workers changed: $turkey_before -> $(instance_pids turkey)"
    [ "$(instance_pids iraq | wc -w)" = 4 ] || fail "iraq has workers '$(instance_pids iraq)', not 4"
    out=$(clients --once "${seed_targets[@]}") || fail "after reload: $out"
    [[ "$(kv names "$out")" == *Hashemite_Kingdom_of_Jordan ]] || fail "jordan's name not applied: $out"
    local text
    text=$(prop ctsd StatusText)
    [ "$text" = "3/3 instances running, 8/8 workers ready" ] || fail "STATUS=$text"
    figures="iraq 3->4 workers, jordan renamed, turkey untouched, same ctsd pid; STATUS=\"$text\""
}

check_reload_invalid() {
    local pid all_before c log
    pid=$(main_pid)
    all_before=$(pids_of cts-demo-worker)
    # jordan on iraq's port
    write_config /etc/cts/ctsd.yaml 4 "Hashemite Kingdom of Jordan" 8002
    c=$(cursor)
    if inct systemctl reload ctsd 2>"$run/reload-invalid.err"; then
        fail "systemctl reload accepted a file with a duplicate port"
    fi
    log=$(journal_since "$c" -u ctsd -o cat)
    head -n 8 <<<"$log" | indent
    grep -q "reload rejected, nothing changed" <<<"$log" ||
        fail "no 'reload rejected, nothing changed' in the journal"
    grep -q "port 8002 is already used by instance iraq" <<<"$log" ||
        fail "the journal does not say which port clashes"
    [ "$(main_pid)" = "$pid" ] || fail "ctsd restarted"
    [ "$(prop ctsd ActiveState)" = active ] || fail "ctsd is $(prop ctsd ActiveState)"
    [ "$(pids_of cts-demo-worker)" = "$all_before" ] || fail "workers changed"
    clients --once "${seed_targets[@]}" >/dev/null || fail "an instance stopped answering"
    # Back to the valid file.
    write_config /etc/cts/ctsd.yaml 4 "Hashemite Kingdom of Jordan"
    figures="reload exited non-zero; journal: \"reload rejected, nothing changed\";"
    figures+=" same $(wc -w <<<"$all_before") workers"
}

# A shorter watchdog for the test (30 s in the unit): a runtime drop-in, gone at the end.
watchdog_sec=5
dropin_dir=/run/systemd/system/ctsd.service.d

check_restart_fdstore() {
    printf '[Service]\nWatchdogSec=%ss\n' "$watchdog_sec" | put "$dropin_dir/50-test-watchdog.conf"
    inct systemctl daemon-reload
    local pid c out
    pid=$(main_pid)
    clients --seconds 7 --threads 2 "${seed_targets[@]}" >"$run/restart.clients" 2>"$run/restart.err" &
    client_pid=$!
    sleep 1.5
    c=$(cursor)
    inct systemctl restart ctsd || fail "systemctl restart ctsd failed"
    wait "$client_pid" || fail "the clients failed: $(cat "$run/restart.err")"
    client_pid=
    out=$(cat "$run/restart.clients")
    say "clients: $out"
    indent <"$run/restart.err"
    [ "$(main_pid)" != "$pid" ] || fail "ctsd was not restarted"
    journal_since "$c" -u ctsd -o cat | grep -c 'using the socket passed by systemd as `store\.' |
        grep -qx 3 || fail "the new ctsd did not take the 3 ports from the fd store"
    [ "$(kv refused "$out")" = 0 ] || fail "$(kv refused "$out") connections refused"
    local bad
    bad=$(kv failed "$out")
    [ "$bad" = 0 ] || fail "$bad requests failed (reset $(kv reset "$out"), timeout" \
        "$(kv timeout "$out"), bad $(kv bad "$out"), other $(kv other "$out"))"
    [ "$(kv ok "$out")" -gt 0 ] || fail "no request answered"
    figures="$(kv requests "$out") requests, $(kv refused "$out") refused, $bad failed,"
    figures+=" slowest $(kv max_ms "$out") ms; 3 ports from the fd store"
}

# A package upgrade of a running ctsd: dpkg runs the postinst with `configure <old version>`,
# which runs `ctsctl upgrade`; the same ctsd process (pid) goes on with the same workers.
check_upgrade() {
    local pid before c out said
    pid=$(main_pid)
    before=$(pids_of cts-demo-worker)
    clients --seconds 6 --threads 2 "${seed_targets[@]}" >"$run/upgrade.clients" 2>"$run/upgrade.err" &
    client_pid=$!
    sleep 1.5
    c=$(cursor)
    inct sh -c 'cd /root/ctsd-test && dpkg -i ./ctsd_*.deb' >"$run/dpkg-upgrade.log" 2>&1 ||
        fail "dpkg -i (an upgrade) failed: $(tail -n 5 "$run/dpkg-upgrade.log")"
    wait "$client_pid" || fail "the clients failed: $(cat "$run/upgrade.err")"
    client_pid=
    out=$(cat "$run/upgrade.clients")
    said=$(grep 'ctsd upgraded' "$run/dpkg-upgrade.log" || true)
    say "postinst: ${said:-$(tail -n 3 "$run/dpkg-upgrade.log")}"
    say "clients: $out"
    indent <"$run/upgrade.err"
    [ -n "$said" ] || fail "the postinst did not upgrade ctsd in place"
    [ "$(main_pid)" = "$pid" ] || fail "ctsd's pid changed ($pid -> $(main_pid)): restarted, not upgraded"
    [ "$(prop ctsd ActiveState)" = active ] || fail "ctsd is $(prop ctsd ActiveState)"
    [ "$(pids_of cts-demo-worker)" = "$before" ] || fail "workers changed: $before -> $(pids_of cts-demo-worker)"
    journal_since "$c" -u ctsd -o cat | grep -q "took over from ctsd" ||
        fail "no 'took over from ctsd' in the journal"
    [ "$(kv refused "$out")" = 0 ] || fail "$(kv refused "$out") connections refused"
    [ "$(kv failed "$out")" = 0 ] || fail "$(kv failed "$out") requests failed"
    [ "$(kv ok "$out")" -gt 0 ] || fail "no request answered"
    # The new binary pings the watchdog (WatchdogSec=5s here) from the same pid.
    sleep "$watchdog_sec"
    [ "$(main_pid)" = "$pid" ] || fail "ctsd's pid changed after the upgrade (the watchdog?)"
    figures="same pid (also $watchdog_sec s later: the watchdog is fed), same $(wc -w <<<"$before") workers; $(kv requests "$out") requests,"
    figures+=" $(kv refused "$out") refused, $(kv failed "$out") failed;"
    figures+=" control paused $(sed -n 's/.*paused \([0-9]*\) ms.*/\1/p' <<<"$said") ms"
}

watchdog_s=
check_watchdog() {
    local pid old_workers t0 t1 i new out c
    pid=$(main_pid)
    old_workers=$(pids_of cts-demo-worker)
    [ "$(environ_of "$pid" WATCHDOG_USEC)" = "$((watchdog_sec * 1000000))" ] ||
        fail "ctsd does not run with WATCHDOG_USEC for ${watchdog_sec}s"
    c=$(cursor)
    clients --seconds $((watchdog_sec + 6)) --threads 1 "${seed_targets[@]}" \
        >"$run/watchdog.clients" 2>"$run/watchdog.err" &
    client_pid=$!
    t0=$(date +%s%N)
    inct kill -STOP "$pid"
    new=
    for ((i = 0; i < 600; i++)); do
        new=$(main_pid)
        if [ "$new" != "$pid" ] && [ "$new" != 0 ] && [ "$(prop ctsd ActiveState)" = active ]; then
            break
        fi
        sleep 0.1
    done
    t1=$(date +%s%N)
    watchdog_s=$(seconds "$t0" "$t1" 1)
    journal_since "$c" -o cat -u ctsd |
        grep -E 'Watchdog|SIGABRT|Main process exited|Scheduled restart|^ready$' | indent
    if [ "$new" = "$pid" ] || [ "$new" = 0 ]; then
        fail "ctsd (pid $pid) was not restarted"
    fi
    journal_since "$c" -u ctsd -o cat | grep -q "Watchdog timeout" ||
        fail "no 'Watchdog timeout' in the journal"
    inct test -e "/proc/$pid" && fail "the old ctsd (pid $pid) is still there"
    local left=""
    for w in $old_workers; do
        inct test -e "/proc/$w" && left+=" $w"
    done
    [ -z "$left" ] || fail "workers of the old ctsd still running:$left"
    wait "$client_pid" || true
    client_pid=
    out=$(cat "$run/watchdog.clients")
    say "clients meanwhile: $out"
    indent <"$run/watchdog.err"
    clients --once "${seed_targets[@]}" >/dev/null || fail "not every instance answers after the restart"
    # Refused: none, the fd store keeps the ports. Failed: requests in flight on the old
    # workers, which systemd SIGKILLs with the hung ctsd (KillMode=mixed), are lost.
    [ -n "$(kv refused "$out")" ] || fail "no figures from the clients: $(cat "$run/watchdog.err")"
    [ "$(kv refused "$out")" = 0 ] ||
        fail "$(kv refused "$out") connections refused while ctsd was stopped and restarted"
    # The kernel writes a core file for SIGABRT where the host's core_pattern says; none may
    # land in the container's root (ctsd's cwd).
    if inct test -e /core; then
        fail "SIGABRT left /core in the container"
        inct rm -f /core
    fi
    figures="SIGSTOP -> running again in ${watchdog_s}s (WatchdogSec=${watchdog_sec}s, RestartSec=2s);"
    figures+=" $(wc -w <<<"$old_workers") old workers gone; clients: $(kv requests "$out") requests,"
    figures+=" $(kv refused "$out") refused, $(kv failed "$out") failed (cut on SIGKILLed workers)"
}

salt_call() {
    inct /opt/salt/bin/salt-call --local -c /root/ctsd-test/salt --retcode-passthrough \
        --out=json "$@"
}
# salt_summary FILE: "N states, N changed (ids), N failed", from state.apply's JSON.
salt_summary() {
    inct python3 -c '
import json, sys
ret = json.load(sys.stdin)["local"]
if isinstance(ret, list):
    sys.exit("errors: " + " | ".join(ret))
changed = [v["__id__"] for v in ret.values() if v.get("changes")]
failed = [v["__id__"] + ": " + str(v.get("comment"))[:200] for v in ret.values() if not v.get("result")]
print("%d states, %d changed (%s), %d failed %s" % (len(ret), len(changed), " ".join(changed) or "-",
      len(failed), " | ".join(failed)))' <"$1"
}

check_salt() {
    local s=/root/ctsd-test/salt pid out first second c
    mkdir -p "$merged$s/pillar"
    cat >"$merged$s/minion" <<EOF
file_client: local
root_dir: $s/run
file_roots: {base: [/root/ctsd-test/salt-states]}
pillar_roots: {base: [$s/pillar]}
log_file: $s/minion.log
log_level_logfile: info
EOF
    printf "base:\n  '*':\n    - project\n    - ctsd\n" >"$merged$s/pillar/top.sls"
    # Shaped like the deploy's conf/pillar/project.sls: other tools' keys beside `instances`
    # and inside its entries, which the state leaves out of ctsd.yaml.
    cat >"$merged$s/pillar/project.sls" <<'EOF'
project_name: cts
domain: cts.example.org
instances:
  turkey: {name: Turkey, prefix: /TR, currency: TRY, port: 8001,
           db_name: cts_tr, domain: tr.cts.example.org}
  iraq:   {name: Iraq, prefix: /IQ, currency: IQD, port: 8002, workers: 3,
           db_name: cts_iq, domain: iq.cts.example.org}
  jordan: {name: Jordan, prefix: /JO, currency: JOD, port: 8003,
           db_name: cts_jo, domain: jo.cts.example.org}
secrets: {db: not-a-secret}
EOF
    cat >"$merged$s/pillar/ctsd.sls" <<EOF
ctsd:
  source: deb
  deb: /root/ctsd-test/$(basename "$deb")
  config:
    ctsd: {environment: staging}
    defaults:
      workers: 2
      # The demo worker is a worker, not a preload loader.
      preload: false
      command: [/usr/local/bin/cts-demo-worker, --start-delay-ms, "300"]
      cwd: /var/www/cts
      ready: {notify: true, timeout: 10s}
      stop_timeout: 10s
  instances:
    jordan: {stop_timeout: 15s}
  # Written to /etc/cts/secrets/<key>.env (root, 0600), each instance's env_file.
  secrets:
    jordan: {SECRET_KEY: not-a-secret, DB_PASSWORD: 'jo "quoted" \$x'}
EOF
    pid=$(main_pid)
    c=$(cursor)
    salt_call state.apply ctsd >"$run/salt-1.json" 2>"$run/salt-1.err" ||
        fail "first salt-call state.apply ctsd failed"
    first=$(salt_summary "$run/salt-1.json" 2>&1)
    say "first apply: $first"
    [[ "$first" == *" 0 failed"* ]] || fail "first apply: $first"
    [[ "$first" == *ctsd-config* ]] || fail "first apply did not change /etc/cts/ctsd.yaml"
    inct grep -q '^# /etc/cts/ctsd.yaml, managed by Salt' /etc/cts/ctsd.yaml ||
        fail "/etc/cts/ctsd.yaml is not Salt's"
    out=$(inct ctsd --check --config /etc/cts/ctsd.yaml 2>&1) || fail "ctsd --check: $out"
    say "ctsd --check: $out"
    [[ "$out" == *"3 instances (turkey :8001 /TR, iraq :8002 /IQ, jordan :8003 /JO), 7 workers"* ]] ||
        fail "rendered file: $out"
    # Neither the deploy's other keys nor a secret's value are in ctsd.yaml.
    if inct grep -q -E 'project_name|db_name|domain|not-a-secret|quoted' /etc/cts/ctsd.yaml; then
        fail "the deploy's other keys or a secret reached ctsd.yaml"
    fi
    local mode
    mode=$(inct stat -c '%a %U:%G' /etc/cts/secrets/jordan.env)
    [ "$mode" = "600 root:root" ] || fail "/etc/cts/secrets/jordan.env: '$mode', expected 600 root:root"
    local jw
    jw=$(instance_pids jordan | cut -d' ' -f1)
    [ "$(environ_of "$jw" DB_PASSWORD)" = "jo \"quoted\" \$x" ] ||
        fail "jordan's worker $jw has DB_PASSWORD='$(environ_of "$jw" DB_PASSWORD)' from the secrets"
    [ "$(main_pid)" = "$pid" ] || fail "ctsd was restarted, not reloaded"
    journal_since "$c" -u ctsd -o cat | grep -q '^Reloaded ctsd.service' ||
        fail "ctsd was not reloaded after Salt changed its file"
    [ "$(prop ctsd UnitFileState)" = enabled ] || fail "ctsd is not enabled"
    out=$(clients --once "${seed_targets[@]}") || fail "after the first apply: $out"
    local text
    text=$(prop ctsd StatusText)
    [ "$text" = "3/3 instances running, 7/7 workers ready" ] || fail "STATUS=$text"
    local workers_before
    workers_before=$(pids_of cts-demo-worker)
    salt_call state.apply ctsd >"$run/salt-2.json" 2>"$run/salt-2.err" ||
        fail "second salt-call state.apply ctsd failed"
    second=$(salt_summary "$run/salt-2.json" 2>&1)
    say "second apply: $second"
    [[ "$second" == *" 0 changed (-), 0 failed"* ]] || fail "second apply: $second"
    [ "$(pids_of cts-demo-worker)" = "$workers_before" ] || fail "the second apply touched the workers"
    figures="salt $(inct /opt/salt/bin/salt-call --version | cut -d' ' -f2): 1st apply"
    figures+=" ${first%% failed*} failed; ctsd --check ok; reloaded (same pid); secrets reach jordan;"
    figures+=" 2nd apply changed nothing"
}

check_socket_unit() {
    local unit=/etc/systemd/system/ctsd-jordan.socket c out pid names t0 t1
    # The example, as its comments say: the instance's port (80 here) in the socket and the yaml.
    inct sed 's/^ListenStream=127.0.0.1:8003$/ListenStream=127.0.0.1:80/' \
        /usr/share/doc/ctsd/examples/ctsd-jordan.socket >"$merged$unit"
    if ! grep -q '^ListenStream=127.0.0.1:80$' "$merged$unit"; then
        fail "no ListenStream line to change in the example"
        return 1
    fi
    write_config /etc/cts/ctsd.yaml 3 Jordan 80
    inct systemctl stop ctsd
    inct systemctl daemon-reload
    inct systemctl enable --now ctsd-jordan.socket 2>&1 | indent
    c=$(cursor)
    inct systemctl start ctsd || fail "systemctl start ctsd with the socket unit failed"
    pid=$(main_pid)
    names=$(environ_of "$pid" LISTEN_FDNAMES)
    say "ctsd's LISTEN_FDNAMES=$names"
    [[ ":$names:" == *:jordan:* ]] || fail "LISTEN_FDNAMES ($names) has no jordan"
    journal_since "$c" -u ctsd -o cat | grep -qF "using the socket passed by systemd as \`jordan\`" ||
        fail "ctsd did not say it took the socket named jordan"
    out=$(clients --once 8001=turkey 8002=iraq 80=jordan) || fail "with the socket unit: $out"
    inct systemctl stop ctsd
    [ "$(prop ctsd ActiveState)" = inactive ] || fail "ctsd is $(prop ctsd ActiveState) after stop"
    local listening
    listening=$(inct ss -Hltn | awk '{ print $4 }' | sort | tr '\n' ' ')
    say "listening while ctsd is stopped: $listening"
    [[ "$listening" == *"127.0.0.1:80 "* ]] || fail "port 80 is not listening while ctsd is stopped"
    # A request now waits in the socket's backlog and starts ctsd (the socket's Service=).
    t0=$(date +%s%N)
    out=$(clients --once --timeout 20 80=jordan) || fail "port 80 after stopping ctsd: $out"
    t1=$(date +%s%N)
    [ "$(kv refused "$out")" = 0 ] || fail "port 80 refused a connection while ctsd was stopped"
    [ "$(prop ctsd ActiveState)" = active ] || fail "the request did not start ctsd again"
    figures="LISTEN_FDNAMES=$names; ctsd stopped: port 80 accepted, answered after"
    figures+=" $(seconds "$t0" "$t1" 1)s (ctsd started by the socket)"
}

# The unit's exposure may not grow past this (systemd 252's scale; 4.7 before the unit dropped
# ProtectControlGroups= and gained SystemCallFilter=).
max_exposure=3.5
exposure=
check_security() {
    local out
    out=$(inct systemd-analyze security --no-pager ctsd.service) || true
    printf '%s\n' "$out" >"$run/security.txt"
    exposure=$(sed -n 's/.*Overall exposure level for ctsd.service: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p' <<<"$out")
    [ -n "$exposure" ] || { fail "no exposure level from systemd-analyze security"; return 1; }
    grep -E '^✗' <<<"$out" | indent | head -n 40
    awk -v e="${exposure% *}" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }' ||
        fail "exposure ${exposure% *} is above $max_exposure: the unit lost some hardening"
    # What the hardening must leave alone (the unit's comments say why): no NoNewPrivileges
    # for ctsd or its workers, whatever the seccomp options imply elsewhere.
    local pid w nnp
    pid=$(main_pid)
    w=$(pids_of cts-demo-worker | cut -d' ' -f1)
    nnp=$(inct grep -h -E '^(NoNewPrivs|Seccomp):' "/proc/$pid/status" "/proc/$w/status" | tr -s '\t\n' '  ')
    say "ctsd (pid $pid) and worker $w: $nnp"
    [ "$nnp" = "NoNewPrivs: 0 Seccomp: 2 NoNewPrivs: 0 Seccomp: 2 " ] ||
        fail "expected NoNewPrivs 0 and a seccomp filter for ctsd and its workers: $nnp"
    figures="exposure $exposure, at most $max_exposure (systemd-analyze security, systemd"
    figures+=" $(inct systemctl --version | sed -n '1s/systemd \([0-9]*\).*/\1/p'))"
}

check_purge() {
    if ! inct apt purge -y ctsd >"$run/apt-purge.log" 2>&1; then
        tail -n 20 "$run/apt-purge.log"
        fail "apt purge ctsd failed"
    fi
    grep -E '^(Removing|Purging)' "$run/apt-purge.log" | indent
    local procs listening
    procs=$(for p in ctsd ctsctl cts-demo-worker; do inct pgrep -a -x "$p"; done)
    [ -z "$procs" ] || fail "processes left: $procs"
    listening=$(inct ss -Hltn | awk '{ print $4 }' | grep -E ':(80|800[123])$' | tr '\n' ' ' || true)
    [ -z "$listening" ] || fail "still listening: $listening"
    local st
    st=$(inct systemctl is-enabled ctsd-jordan.socket 2>&1 || true)
    [ "$st" = disabled ] || fail "ctsd-jordan.socket is $st after purge, not disabled (prerm)"
    st=$(inct systemctl is-active ctsd-jordan.socket 2>&1 || true)
    [ "$st" = inactive ] || fail "ctsd-jordan.socket is $st after purge"
    snapshot >"$run/files.after"
    # Kept, as Debian policy asks or as the test made them: the accounts (policy: never removed,
    # files may still belong to them; the account files' backups come with them), the deploy's
    # /var/www/cts, the demo worker, the admin's socket unit, the secrets Salt wrote.
    local kept='/etc/(passwd|group|shadow|gshadow)-|/var/www|/var/www/cts'
    kept+='|/usr/local/bin/cts-demo-worker|/etc/systemd/system/ctsd-jordan.socket'
    kept+='|/etc/cts|/etc/cts/secrets|/etc/cts/secrets/(turkey|iraq|jordan)\.env'
    comm -13 "$run/files.before" "$run/files.after" | grep -v -x -E "$kept" >"$run/files.stray" || true
    if [ -s "$run/files.stray" ]; then
        sed 's/^/   stray: /' "$run/files.stray"
        fail "$(wc -l <"$run/files.stray") stray file(s) after purge:" \
            "$(head -n 3 "$run/files.stray" | tr '\n' ' ')"
    fi
    local gone
    gone=$(comm -23 "$run/files.before" "$run/files.after" | head -n 5 | tr '\n' ' ')
    [ -z "$gone" ] || fail "purge removed what was there before: $gone"
    inct getent passwd cts >/dev/null || fail "user cts removed (policy keeps it)"
    figures="no process, no listener, no stray file; kept: users cts, groups cts and cts-admin"
    figures+=" (policy), Salt's /etc/cts/secrets (the admin's)"
}

poweroff_s=
check_poweroff() {
    local t0=$SECONDS
    inct systemctl poweroff --no-block || fail "systemctl poweroff failed"
    wait_gone "$nspawn_pid" 60 || { fail "the container did not stop within 60 s"; return 1; }
    local status=0
    wait "$nspawn_pid" || status=$?
    nspawn_pid=
    leader=
    poweroff_s=$((SECONDS - t0))
    [ "$status" = 0 ] || fail "systemd-nspawn exited with status $status"
    figures="container stopped in ${poweroff_s}s"
}

run_check "apt install"          check_install
run_check "sysusers/tmpfiles"    check_accounts
run_check "start"                check_start
run_check "journal"              check_journal
run_check "cgroup delegation"    check_delegation
run_check "reload"               check_reload
run_check "reload (invalid)"     check_reload_invalid
run_check "restart (fd store)"   check_restart_fdstore
run_check "upgrade (in place)"   check_upgrade
run_check "watchdog"             check_watchdog
run_check "salt"                 check_salt
run_check "socket unit (port 80)" check_socket_unit
run_check "security"             check_security
run_check "apt purge"            check_purge
run_check "poweroff"             check_poweroff

total_s=$((SECONDS - started))
printf '\n== summary (build %ss, root file system %ss, boot %ss, total %ss)\n' \
    "$build_s" "$rootfs_s" "$boot_s" "$total_s"
printf '%s\n' "${results[@]}"
passed=$((${#results[@]} - problems))
printf '\nsystemd: %s passed, %s failed\n' "$passed" "$problems"
[ "$problems" -eq 0 ]
