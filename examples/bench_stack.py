#!/usr/bin/env python3
"""What users pay for the whole stack: the Django example (examples/cts-django) served under
each way of running it, side by side, measured over every process of the stack.

    bash tests/e2e/setup.sh && cargo build --release
    target/e2e/venv/bin/python examples/bench_stack.py [--instances 3] [--workers 4] [--modes ...]

Modes (--modes, comma-separated, default all):

    ctsd-preload   ctsd in preload mode: a loader per instance (`python -m cts_preload`, gunicorn's
                   sync worker class) imports the application once and forks `workers` workers
    ctsd-slots     ctsd, `workers` slots of `gunicorn --workers 1 --preload` per instance
    ctsd-arbiter   ctsd, 1 slot of `gunicorn --workers N --preload` per instance
    supervisord    supervisord + `gunicorn -w N --preload` per instance (the deploy CTS ran)
    gunicorn       `gunicorn -w N --preload` per instance started directly, restarted by HUP

Per mode, one line (the format is stable, for comparing runs): processes of the stack, total
PSS (`/proc/PID/smaps_rollup`, summed), idle wake-ups per second (voluntary + involuntary
context switches of every thread over 10 idle seconds), start to every instance serving,
SIGKILL of one serving process until a replacement answers (the median of --kills), failed requests of a client loop
during a restart of one instance, during a SIGKILL of one of its serving processes, and during
a broken deploy (code that cannot import, then a restart: whether the old workers keep
serving, and whether the restart command said it failed).

Traffic goes to 127.0.0.1 only; every process started is stopped by its pid at the end, also
on failure. SQLite databases in a temporary directory.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cts-django"
VENV = REPO / "target" / "e2e" / "venv"
RELEASE = REPO / "target" / "release"
SEED = [("turkey", "Turkey", "/TR", "TRY"), ("iraq", "Iraq", "/IQ", "IQD"),
        ("jordan", "Jordan", "/JO", "JOD"), ("egypt", "Egypt", "/EG", "EGP"),
        ("kuwait", "Kuwait", "/KW", "KWD"), ("lebanon", "Lebanon", "/LB", "LBP")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, prefix, timeout=5.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{prefix}/api/", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def ppid_map():
    parents = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
                parents[int(p)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return parents


def tree(roots):
    """Every live process under `roots`, the roots included."""
    parents = ppid_map()
    children = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [r for r in roots if r in parents]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def switches(pids):
    """Context switches (voluntary + involuntary) of every thread of `pids`, by (pid, tid)."""
    counts = {}
    for pid in pids:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                total = 0
                for line in Path(f"/proc/{pid}/task/{t}/status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
                counts[(pid, t)] = total
        except OSError:
            pass
    return counts


def wakeups(before, after):
    """Switches between two samples of `switches`: threads in both, plus threads started
    meanwhile (a thread that ended meanwhile, such as an idle runtime worker thread, is left
    out rather than counted negative)."""
    return sum(n - before.get(k, 0) for k, n in after.items())


def leaves(roots):
    """Processes that serve requests: those of the stack without children (gunicorn workers)."""
    pids = tree(roots)
    parents = ppid_map()
    has_child = {parents.get(p) for p in pids}
    return [p for p in pids if p not in has_child and p not in roots]


def serving(roots, key):
    """The serving processes of instance `key` (their environment says CTS_INSTANCE=key)."""
    want = f"CTS_INSTANCE={key}".encode()
    out = []
    for pid in leaves(roots):
        try:
            if want in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                out.append(pid)
        except OSError:
            pass
    return out


class Loop:
    """A client loop on one instance, counting answers and failures."""

    def __init__(self, port, prefix):
        self.port, self.prefix = port, prefix
        self.ok = self.failed = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        end = time.monotonic() + 120
        while not self.stop and time.monotonic() < end:
            if get(self.port, self.prefix, timeout=10):
                self.ok += 1
            else:
                self.failed += 1

    def finish(self):
        self.stop = True
        self.thread.join()
        return self.ok, self.failed


class Stack:
    """One mode: how to start it, restart one instance, and stop it."""

    def __init__(self, mode, instances, workers, work):
        self.mode, self.instances, self.workers, self.work = mode, instances, workers, work
        self.procs = []
        self.env = dict(os.environ, CTS_DATA_DIR=str(work / "data"), PYTHONDONTWRITEBYTECODE="1")
        self.app = work / "app"

    def inst_env(self, key, name, prefix, cur, port):
        return dict(self.env, CTS_INSTANCE=key, CTS_INSTANCE_NAME=name, CTS_PREFIX=prefix,
                    CTS_CURRENCY=cur, PORT=str(port), SCRIPT_NAME=prefix,
                    DJANGO_SETTINGS_MODULE=f"cts.settings.{key}" if key in
                    ("turkey", "iraq", "jordan") else "cts.settings.local")

    def start(self):
        gunicorn = str(VENV / "bin" / "gunicorn")
        if self.mode == "ctsd-preload":
            python = VENV / "bin" / "python"
            lines = [f"ctsd: {{socket: {self.work}/ctsd.sock, log_dir: {self.work}/log, bind: 127.0.0.1}}",
                     "defaults:",
                     f"  workers: {self.workers}",
                     "  preload: true",
                     f"  command: [{python}, -m, cts_preload, \"cts.wsgi:application\"]",
                     f"  env: {{PYTHONPATH: {REPO / 'python'}}}",
                     f"  cwd: {self.app}",
                     "  ready: {timeout: 60s}",
                     "instances:"]
        elif self.mode.startswith("ctsd"):
            slots, per = (self.workers, 1) if self.mode == "ctsd-slots" else (1, self.workers)
            lines = [f"ctsd: {{socket: {self.work}/ctsd.sock, log_dir: {self.work}/log, bind: 127.0.0.1}}",
                     "defaults:",
                     f"  workers: {slots}",
                     f"  command: [{gunicorn}, --workers, \"{per}\", --preload, --no-control-socket, \"cts.wsgi:application\"]",
                     f"  cwd: {self.app}",
                     "  ready: {notify: true, timeout: 60s}",
                     "instances:"]
        if self.mode.startswith("ctsd"):
            for key, name, prefix, cur, port in self.instances:
                # Keys beyond the seed's have no settings module of their own: the local one.
                extra = ("" if key in ("turkey", "iraq", "jordan")
                         else ", env: {DJANGO_SETTINGS_MODULE: cts.settings.local}")
                lines.append(f"  {key}: {{name: {name}, prefix: {prefix}, currency: {cur}, port: {port}{extra}}}")
            (self.work / "ctsd.yaml").write_text("\n".join(lines) + "\n")
            self.procs.append(subprocess.Popen([str(RELEASE / "ctsd"), "--config", str(self.work / "ctsd.yaml")],
                                               env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        elif self.mode == "supervisord":
            conf = ["[supervisord]", f"logfile={self.work}/supervisord.log", f"pidfile={self.work}/supervisord.pid",
                    "nodaemon=true", "[unix_http_server]", f"file={self.work}/supervisor.sock",
                    "[rpcinterface:supervisor]",
                    "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                    "[supervisorctl]", f"serverurl=unix://{self.work}/supervisor.sock"]
            for key, name, prefix, cur, port in self.instances:
                env = self.inst_env(key, name, prefix, cur, port)
                pairs = ",".join(f'{k}="{env[k]}"' for k in
                                 ("CTS_INSTANCE", "CTS_INSTANCE_NAME", "CTS_PREFIX", "CTS_CURRENCY",
                                  "SCRIPT_NAME", "DJANGO_SETTINGS_MODULE", "CTS_DATA_DIR"))
                conf += [f"[program:{key}]",
                         f"command={gunicorn} -w {self.workers} --preload --no-control-socket --bind 127.0.0.1:{port} cts.wsgi:application",
                         f"directory={self.app}", f"environment={pairs}", "stopasgroup=true", "killasgroup=true",
                         "startsecs=1", "stopwaitsecs=30", "autorestart=true"]
            (self.work / "supervisord.conf").write_text("\n".join(conf) + "\n")
            self.procs.append(subprocess.Popen([str(VENV / "bin" / "supervisord"), "-c", str(self.work / "supervisord.conf")],
                                               env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        else:
            for key, name, prefix, cur, port in self.instances:
                self.procs.append(subprocess.Popen(
                    [gunicorn, "-w", str(self.workers), "--preload", "--no-control-socket",
                     "--bind", f"127.0.0.1:{port}", "cts.wsgi:application"],
                    cwd=self.app, env=self.inst_env(key, name, prefix, cur, port),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def roots(self):
        return [p.pid for p in self.procs]

    def serving(self, key):
        """The processes that serve `key`: in preload mode the workers ctsd reports (the loader
        is a leaf of the tree too, and serves nothing)."""
        if self.mode != "ctsd-preload":
            return serving(self.roots(), key)
        r = subprocess.run([str(RELEASE / "ctsctl"), "--socket", f"{self.work}/ctsd.sock", "status", "--json", key],
                           capture_output=True)
        try:
            doc = json.loads(r.stdout)
            return [w["pid"] for w in doc["instances"][0]["workers"] if w["state"] == "ready"]
        except (ValueError, KeyError, IndexError):
            return []

    def restart(self, key):
        """Restarts one instance the mode's way; returns whether the command said it worked."""
        if self.mode.startswith("ctsd"):
            r = subprocess.run([str(RELEASE / "ctsctl"), "--socket", f"{self.work}/ctsd.sock", "restart", key],
                               capture_output=True)
            return r.returncode == 0
        if self.mode == "supervisord":
            r = subprocess.run([str(VENV / "bin" / "supervisorctl"), "-c", str(self.work / "supervisord.conf"),
                                "restart", key], capture_output=True, text=True)
            return r.returncode == 0 and "ERROR" not in r.stdout
        master = self.procs[[i[0] for i in self.instances].index(key)]
        before = set(leaves([master.pid]))
        os.kill(master.pid, signal.SIGHUP)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            now = set(leaves([master.pid]))
            if len(now) >= self.workers and not now & before:
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                for pid in tree([p.pid]):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                p.wait()


def measure(mode, instances, workers, base, kills):
    work = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-", dir=base))
    shutil.copytree(EXAMPLE, work / "app", ignore=shutil.ignore_patterns("run", "var", "__pycache__"))
    stack = Stack(mode, instances, workers, work)
    (work / "data").mkdir()
    for key, *_ in instances:
        env = dict(stack.env, DJANGO_SETTINGS_MODULE=f"cts.settings.{key}" if key in
                   ("turkey", "iraq", "jordan") else "cts.settings.local", CTS_INSTANCE=key)
        subprocess.run([str(VENV / "bin" / "python"), "manage.py", "migrate", "--noinput"], cwd=work / "app",
                       env=env, check=True, stdout=subprocess.DEVNULL)
    row = {"mode": mode}
    try:
        t = time.monotonic()
        stack.start()
        pending = list(instances)
        while pending and time.monotonic() - t < 120:
            pending = [i for i in pending if not get(i[4], i[2], timeout=1)]
            time.sleep(0.02)
        row["start"] = time.monotonic() - t if not pending else float("nan")
        time.sleep(3)
        pids = tree(stack.roots())
        row["procs"] = len(pids)
        row["pss"] = sum(pss_kib(p) for p in pids) / 1024
        s0 = switches(pids)
        time.sleep(10)
        row["wakeups"] = wakeups(s0, switches(tree(stack.roots()))) / 10

        key, name, prefix, cur, port = instances[-1]
        # SIGKILL of one of the instance's serving processes until a replacement answers.
        times = []
        for _ in range(kills):
            serving_now = stack.serving(key)
            if not serving_now:
                sys.exit(f"{mode}: nothing serves {key}: see {work}")
            victim = serving_now[0]
            t = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            while time.monotonic() - t < 30:
                now = stack.serving(key)
                if victim not in now and len(now) >= workers and get(port, prefix, 2):
                    break
                time.sleep(0.001)
            times.append((time.monotonic() - t) * 1000)
            time.sleep(1)
        row["respawn"] = sorted(times)[len(times) // 2]

        loop = Loop(port, prefix)
        time.sleep(0.5)
        stack.restart(key)
        time.sleep(0.5)
        row["restart_failed"] = loop.finish()

        time.sleep(1)
        loop = Loop(port, prefix)
        time.sleep(0.5)
        os.kill(stack.serving(key)[-1], signal.SIGKILL)
        time.sleep(2)
        row["kill_failed"] = loop.finish()

        # A broken deploy: the code cannot import; restart; are requests still answered?
        wsgi = work / "app" / "cts" / "wsgi.py"
        good = wsgi.read_text()
        wsgi.write_text("raise ImportError('broken deploy')\n" + good)
        time.sleep(0.5)
        loop = Loop(port, prefix)
        time.sleep(0.5)
        said_ok = stack.restart(key)
        time.sleep(3)
        row["broken"] = (*loop.finish(), said_ok)
        wsgi.write_text(good)
    finally:
        stack.stop()
        if sys.exc_info()[0] is None:
            shutil.rmtree(work, ignore_errors=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--modes", default="ctsd-preload,ctsd-slots,ctsd-arbiter,supervisord,gunicorn")
    ap.add_argument("--kills", type=int, default=5, help="SIGKILLs whose median is kill->ok")
    args = ap.parse_args()
    for need in (VENV / "bin" / "gunicorn", VENV / "bin" / "supervisord", RELEASE / "ctsd", RELEASE / "ctsctl"):
        if not need.exists():
            sys.exit(f"{need} is missing: run `bash tests/e2e/setup.sh && cargo build --release`")
    # Beyond the seed's countries, made-up ones on the example's `local` settings.
    seed = SEED + [(f"c{i:02d}", f"Country{i:02d}", f"/C{i:02d}", "USD")
                   for i in range(len(SEED), args.instances)]
    instances = [(k, n, p, c, free_port()) for k, n, p, c in seed[:args.instances]]
    print(f"whole stack: {args.instances} instances x {args.workers} workers, Django example, SQLite")
    print(f"{'mode':<13} {'procs':>5} {'PSS MiB':>8} {'wakeups/s':>9} {'start s':>7} {'kill->ok ms':>11} "
          f"{'restart failed':>15} {'kill failed':>12} {'broken deploy failed, restart said':>35}")
    base = tempfile.mkdtemp(prefix="bench-stack-")
    try:
        for mode in args.modes.split(","):
            r = measure(mode, instances, args.workers, base, args.kills)
            ok, failed = r["restart_failed"]
            kok, kfailed = r["kill_failed"]
            bok, bfailed, said = r["broken"]
            print(f"{mode:<13} {r['procs']:>5} {r['pss']:>8.0f} {r['wakeups']:>9.1f} {r['start']:>7.2f} "
                  f"{r['respawn']:>11.0f} {f'{failed} of {ok + failed}':>15} {f'{kfailed} of {kok + kfailed}':>12} "
                  f"{f'{bfailed} of {bok + bfailed}, ' + ('ok' if said else 'failed'):>35}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
