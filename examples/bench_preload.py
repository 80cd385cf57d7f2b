#!/usr/bin/env python3
"""Preload mode, measured before ctsd has it: the Django example (examples/cts-django) served by
cts_preload loaders under a Python EMULATION of ctsd (python/tests/emulated_ctsd.py), side by
side in one run with the classic deploy (supervisord + `gunicorn -w N --preload` per instance)
and with real ctsd running one `gunicorn --workers N --preload` per instance.

    bash tests/e2e/setup.sh && cargo build --release --bin ctsd --bin ctsctl
    target/e2e/venv/bin/python examples/bench_preload.py [--instances 3] [--workers 4] \
        [--requests 2000] [--kills 20] [--modes ...] [--target DIR]

Modes (--modes, comma-separated, default all):

    supervisord         supervisord + `gunicorn -w N --preload` per instance (the classic deploy)
    ctsd-arbiter        ctsd, 1 slot x `gunicorn --workers N --preload` per instance
    emu-sync            EMULATED ctsd + cts_preload, gunicorn's sync worker, gc.freeze()
    emu-sync-nofreeze   the same with `--gc none` (no gc.freeze())
    emu-sync-warm       as emu-sync, plus 20 warm-up GETs of /hits/ (no side effect) in the
                        loader before forking (`--warm /hits/ --warm-times 20`)
    emu-gthread         gunicorn's gthread worker, 2 threads per worker
    emu-stdlib          cts_preload's own stdlib server (wsgiref's handler), gc.freeze()
    emu-shared          as emu-sync, but every instance's loader is forked from ONE root that
                        imported the libraries (the module list of `--list-modules`, made
                        before the timed start, as a previous start would have left it)
    emu-shared-warm     emu-shared plus emu-sync-warm's warm-up, in each instance's loader
    emu-shared-stdlib   emu-shared with the stdlib server instead of gunicorn's sync worker
    emu-shared-stdlib-warm   the same plus the warm-up

More than 6 instances: the extra ones (i7, i8, ...) use cts.settings.local with their own
prefix (/I7, ...), all on one SQLite file.

The emulated modes' figures leave the emulator (a Python process standing in for ctsd) out of
the totals and add the real ctsd's own PSS and wake-ups measured in the ctsd-arbiter mode of
the same run (when that mode is run): that is what the stack would be with ctsd itself.

Per mode: processes, total PSS (`/proc/PID/smaps_rollup`, summed) after start and again after
`--requests` requests per instance (copy-on-write sharing decays as workers touch pages), idle
wake-ups/s (voluntary + involuntary context switches of every thread over 10 idle seconds),
start to every instance serving, SIGKILL of one worker until its replacement is accepting
(median of `--kills`; emulated: until the replacement's READY=1; classic: until a new worker
process exists and the port answers, as examples/bench_stack.py measures), failed requests of a
client loop during a restart, and during a broken deploy (code that cannot import, then a
restart: failed requests, and whether the restart said it failed), and the 1-minute load
average at the mode's end (timings taken beside a compiler are noisy; PSS and wake-ups much
less). A second table breaks PSS down by process role.

Traffic goes to 127.0.0.1 only; every process started is stopped by its pid at the end, also on
failure. SQLite databases in a temporary directory.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_stack as bs  # noqa: E402

REPO = bs.REPO
EMULATOR = REPO / "python" / "tests" / "emulated_ctsd.py"
EMU_MODES = {
    "emu-sync": ["--worker-class", "sync"],
    "emu-sync-nofreeze": ["--worker-class", "sync", "--gc", "none"],
    "emu-sync-warm": ["--worker-class", "sync", "--warm", "/hits/", "--warm-times", "20"],
    "emu-gthread": ["--worker-class", "gthread", "--threads", "2"],
    "emu-stdlib": ["--worker-class", "stdlib"],
    "emu-shared": ["--worker-class", "sync", "--module-cache", "{cache}"],
    "emu-shared-warm": ["--worker-class", "sync", "--module-cache", "{cache}", "--warm",
                        "/hits/", "--warm-times", "20"],
}
EMU_MODES["emu-shared-stdlib"] = ["--worker-class", "stdlib", "--module-cache", "{cache}"]
EMU_MODES["emu-shared-stdlib-warm"] = [*EMU_MODES["emu-shared-stdlib"], "--warm", "/hits/", "--warm-times", "20"]
SHARED = {"emu-shared", "emu-shared-warm", "emu-shared-stdlib", "emu-shared-stdlib-warm"}
ALL_MODES = ["supervisord", "ctsd-arbiter", *EMU_MODES]


def rollup(pid):
    """(Pss, Private_Clean + Private_Dirty) in KiB from /proc/PID/smaps_rollup."""
    pss = private = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                private += int(line.split()[1])
    except OSError:
        pass
    return pss, private


class EmuStack:
    """The emulated ctsd (one Python process, subreaper of the loaders' workers)."""

    def __init__(self, mode, instances, workers, work, python):
        self.mode, self.instances, self.workers, self.work = mode, instances, workers, work
        self.python = python
        self.proc = None
        self.lock = threading.Lock()
        base = bs.Stack("supervisord", instances, workers, work)  # for inst_env
        self.root_env = dict(base.env)
        self.specs = []
        cache = str(work / "modules")
        for key, name, prefix, cur, port in instances:
            env = base.inst_env(key, name, prefix, cur, port)
            args = [a.replace("{prefix}", prefix).replace("{cache}", cache) for a in EMU_MODES[mode]]
            self.specs.append({"key": key, "port": port, "workers": workers,
                               "argv": [*args, "cts.wsgi:application"], "env": env,
                               "cwd": str(work / "app")})
        self.shared = None
        if mode in SHARED:
            # What a previous start would have left: the libraries the application imports.
            spec = self.specs[0]
            out = subprocess.run([python, "-m", "cts_preload", "--list-modules", "cts.wsgi:application"],
                                 cwd=spec["cwd"], env=dict(spec["env"], PYTHONPATH=str(REPO / "python")),
                                 check=True, capture_output=True, text=True).stdout
            Path(cache).write_text(out)
            self.shared = {"argv": spec["argv"], "env": self.root_env, "cwd": spec["cwd"]}

    def call(self, **req):
        with self.lock:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited (log: {self.work}/emulator.log)")
        return json.loads(line)

    def start(self):
        env = dict(os.environ, EMULATED_CTSD_PYTHON=self.python,
                   EMULATED_CTSD_LOG=str(self.work / "emulator.log"))
        self.proc = subprocess.Popen([self.python, str(EMULATOR)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=lambda: self.call(cmd="start", instances=self.specs, shared=self.shared),
                         daemon=True).start()

    def roots(self):
        return [self.proc.pid]

    def roles(self):
        st = self.call(cmd="status")["status"]
        return {"supervisor": [self.proc.pid],
                "parent": [s["loader"] for s in st.values()],
                "worker": [p for s in st.values() for p in s["workers"]]}

    def worker_pids(self, key):
        return self.call(cmd="status")["status"][key]["workers"]

    def kill(self, key):
        r = self.call(cmd="kill", key=key)
        if not r.get("ok") or r.get("state") != "ready":
            raise RuntimeError(f"kill: {r}")
        return r["ready_ms"]

    def restart(self, key):
        return self.call(cmd="restart", key=key)["ok"]

    def stop(self):
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.call(cmd="stop")
            self.proc.wait(timeout=60)
        except Exception:
            for pid in bs.tree([self.proc.pid]):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()


class ClassicStack(bs.Stack):
    """supervisord or ctsd with gunicorn arbiters (examples/bench_stack.py's code paths)."""

    def roles(self):
        parents = bs.ppid_map()
        root = self.procs[0].pid
        pids = bs.tree([root])
        parent = [p for p in pids if parents.get(p) == root]
        return {"supervisor": [root], "parent": parent,
                "worker": [p for p in pids if p != root and p not in parent]}

    def worker_pids(self, key):
        return bs.serving(self.roots(), key)

    def kill(self, key):
        _, _, prefix, _, port = next(i for i in self.instances if i[0] == key)
        victim = self.worker_pids(key)[0]
        t = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() - t < 30:
            now = self.worker_pids(key)
            if victim not in now and len(now) >= self.workers and bs.get(port, prefix, 2):
                break
            time.sleep(0.001)
        return (time.monotonic() - t) * 1000


def traffic(instances, requests):
    """`requests` GETs of /api/ per instance, one client thread per instance; failures."""
    failed = [0]

    def run(port, prefix):
        for _ in range(requests):
            if not bs.get(port, prefix, timeout=10):
                failed[0] += 1

    ths = [threading.Thread(target=run, args=(i[4], i[2])) for i in instances]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return failed[0]


def breakdown(stack, skip_supervisor):
    """PSS and private KiB per role."""
    out = {}
    for role, pids in stack.roles().items():
        vals = [rollup(p) for p in pids]
        out[role] = {"n": len(vals), "pss": sum(v[0] for v in vals),
                     "private": sum(v[1] for v in vals)}
    return out


def measure(mode, instances, workers, base, args, python):
    work = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-", dir=base))
    shutil.copytree(bs.EXAMPLE, work / "app", ignore=shutil.ignore_patterns("run", "var", "__pycache__"))
    (work / "data").mkdir()
    if mode in EMU_MODES:
        stack = EmuStack(mode, instances, workers, work, python)
    else:
        stack = ClassicStack(mode, instances, workers, work)
    for settings in sorted({k if k in ("turkey", "iraq", "jordan") else "local" for k, *_ in instances}):
        env = dict(os.environ, CTS_DATA_DIR=str(work / "data"), PYTHONDONTWRITEBYTECODE="1",
                   DJANGO_SETTINGS_MODULE=f"cts.settings.{settings}", CTS_INSTANCE=settings)
        subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=work / "app",
                       env=env, check=True, stdout=subprocess.DEVNULL)
    emulated = mode in EMU_MODES
    row = {"mode": mode}
    try:
        t = time.monotonic()
        stack.start()
        pending = list(instances)
        while pending and time.monotonic() - t < 120:
            pending = [i for i in pending if not bs.get(i[4], i[2], timeout=1)]
            time.sleep(0.02)
        row["start"] = time.monotonic() - t if not pending else float("nan")
        if emulated:  # every worker, not only the first one answering
            while len([p for i in instances for p in stack.worker_pids(i[0])]) < len(instances) * workers:
                time.sleep(0.02)
            row["start"] = time.monotonic() - t
        time.sleep(3)
        roles = stack.roles()
        skip = set(roles["supervisor"]) if emulated else set()
        pids = [p for p in bs.tree(stack.roots()) if p not in skip]
        row["procs"] = len(pids)
        row["pss"] = sum(bs.pss_kib(p) for p in pids) / 1024
        row["breakdown"] = breakdown(stack, emulated)
        s0 = bs.switches(pids)
        sup0 = bs.switches(roles["supervisor"])
        time.sleep(10)
        pids = [p for p in bs.tree(stack.roots()) if p not in skip]
        row["wakeups"] = bs.wakeups(s0, bs.switches(pids)) / 10
        row["sup_wakeups"] = bs.wakeups(sup0, bs.switches(roles["supervisor"])) / 10

        row["traffic_failed"] = traffic(instances, args.requests)
        time.sleep(1)
        pids = [p for p in bs.tree(stack.roots()) if p not in skip]
        row["pss_after"] = sum(bs.pss_kib(p) for p in pids) / 1024
        row["breakdown_after"] = breakdown(stack, emulated)

        key, name, prefix, cur, port = instances[-1]
        kills = []
        for _ in range(args.kills):
            kills.append(stack.kill(key))
            time.sleep(0.05)
        row["kill"] = statistics.median(kills) if kills else float("nan")
        time.sleep(1)

        loop = bs.Loop(port, prefix)
        time.sleep(0.5)
        stack.restart(key)
        time.sleep(0.5)
        row["restart_failed"] = loop.finish()

        wsgi = work / "app" / "cts" / "wsgi.py"
        good = wsgi.read_text()
        wsgi.write_text("raise ImportError('broken deploy')\n" + good)
        time.sleep(0.5)
        loop = bs.Loop(port, prefix)
        time.sleep(0.5)
        said_ok = stack.restart(key)
        time.sleep(3)
        row["broken"] = (*loop.finish(), said_ok)
        row["load"] = os.getloadavg()[0]
        wsgi.write_text(good)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--requests", type=int, default=2000, help="per instance, before the 2nd PSS")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--modes", default=",".join(ALL_MODES))
    ap.add_argument("--target", default=str(REPO / "target"),
                    help="the cargo target directory with e2e/venv and release/ctsd, ctsctl")
    args = ap.parse_args()
    target = Path(args.target)
    bs.VENV = target / "e2e" / "venv"
    modes = args.modes.split(",")
    python = str(bs.VENV / "bin" / "python")
    base = tempfile.mkdtemp(prefix="bench-preload-")
    try:
        if "ctsd-arbiter" in modes:
            # A copy: a cargo build replacing the binaries during the run does not matter.
            (Path(base) / "bin").mkdir()
            for b in ("ctsd", "ctsctl"):
                if not (target / "release" / b).exists():
                    sys.exit(f"{target}/release/{b} is missing: cargo build --release --bin ctsd --bin ctsctl")
                shutil.copy2(target / "release" / b, Path(base) / "bin" / b)
            bs.RELEASE = Path(base) / "bin"
        for need in (bs.VENV / "bin" / "gunicorn", bs.VENV / "bin" / "supervisord"):
            if not need.exists():
                sys.exit(f"{need} is missing: run `bash tests/e2e/setup.sh`")
        seeds = bs.SEED + [(f"i{n}", f"I{n}", f"/I{n}", "XXX") for n in range(len(bs.SEED) + 1, args.instances + 1)]
        instances = [(k, n, p, c, bs.free_port()) for k, n, p, c in seeds[:args.instances]]
        print(f"whole stack: {args.instances} instances x {args.workers} workers, Django example, SQLite; "
              f"emu-* = cts_preload under an EMULATED ctsd (Python), totals without the emulator "
              f"plus real ctsd's own figures from ctsd-arbiter")
        rows = []
        for mode in modes:
            rows.append(measure(mode, instances, args.workers, base, args, python))
            print(f"  {mode} done", file=sys.stderr, flush=True)
        report(rows, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def report(rows, args):
    real = next((r for r in rows if r["mode"] == "ctsd-arbiter"), None)
    ctsd_pss = real["breakdown"]["supervisor"]["pss"] / 1024 if real else 0.0
    ctsd_wake = real["sup_wakeups"] if real else 0.0
    classic = next((r for r in rows if r["mode"] == "supervisord"), None)
    print(f"{'mode':<22} {'procs':>5} {'PSS MiB':>8} {'after traffic':>13} {'wakeups/s':>9} "
          f"{'start s':>7} {'kill->accept ms':>15} {'restart failed':>15} "
          f"{'broken deploy failed, restart said':>35} {'load':>5}   ratios to classic: PSS, after, wake-ups, start")
    for r in rows:
        emu = r["mode"] in EMU_MODES
        pss = r["pss"] + (ctsd_pss if emu else 0)
        after = r["pss_after"] + (ctsd_pss if emu else 0)
        wake = r["wakeups"] + (ctsd_wake if emu else 0)
        procs = r["procs"] + (1 if emu else 0)
        ok, failed = r["restart_failed"]
        bok, bfailed, said = r["broken"]
        ratios = ""
        if classic:
            ratios = (f"{pss / classic['pss']:.2f}x {after / classic['pss_after']:.2f}x "
                      f"{wake / classic['wakeups'] if classic['wakeups'] else float('nan'):.2f}x "
                      f"{r['start'] / classic['start']:.2f}x")
        print(f"{r['mode']:<22} {procs:>5} {pss:>8.0f} {after:>13.0f} {wake:>9.1f} {r['start']:>7.2f} "
              f"{r['kill']:>15.1f} {f'{failed} of {ok + failed}':>15} "
              f"{f'{bfailed} of {bok + bfailed}, ' + ('ok' if said else 'failed'):>35} {r['load']:>5.1f}   {ratios}")
    print()
    print(f"PSS by role, MiB (after start / after {args.requests} requests per instance); "
          f"private = Private_Clean + Private_Dirty")
    print(f"{'mode':<22} {'supervisor':>14} {'parents (n)':>20} {'per parent':>12} {'workers (n)':>20} "
          f"{'per worker':>12} {'worker private':>16}")
    for r in rows:
        b, a = r["breakdown"], r["breakdown_after"]

        def pair(key, field="pss", per=False):
            x, y = b[key][field] / 1024, a[key][field] / 1024
            if per:
                x, y = x / max(b[key]["n"], 1), y / max(a[key]["n"], 1)
            return f"{x:.1f}/{y:.1f}"

        parents = f"{pair('parent')} ({b['parent']['n']})"
        workers = f"{pair('worker')} ({b['worker']['n']})"
        print(f"{r['mode']:<22} {pair('supervisor'):>14} {parents:>20} "
              f"{pair('parent', per=True):>12} {workers:>20} "
              f"{pair('worker', per=True):>12} {pair('worker', 'private', per=True):>16}")
    print(f"\n(emulated modes: supervisor = the Python emulator, left out of the totals; real ctsd "
          f"added instead: {ctsd_pss:.1f} MiB, {ctsd_wake:.1f} wake-ups/s)")


if __name__ == "__main__":
    main()
