"""A Python stand-in for ctsd in preload mode: what the Rust side has to do, small enough to
read, used by test_preload.py and by examples/bench_preload.py. Not shipped, not ctsd.

It does what docs/preload.md asks of ctsd: becomes a child subreaper, binds each instance's
port, starts one loader per instance (`python3 -m cts_preload`) with the socket on fd 3 and a
SOCK_SEQPACKET channel on fd 4, asks it for workers (stdout and stderr pipes by SCM_RIGHTS, a
per-worker NOTIFY_SOCKET and CTS_WORKER tag in the spawn's environment), reaps them as their
subreaper, replaces a worker that died, rolls restarts onto a new loader, and stops everything
by pid. One event-loop thread (selectors, no timeout: it sleeps when nothing happens); the
public methods are called from other threads and wait for the loop's results.

As a program (for the benchmark), it reads JSON commands from stdin, one a line, and answers
each with one JSON line on stdout:

    {"cmd": "start", "instances": [{"key", "port", "workers", "argv", "env", "cwd"}, ...]}
    {"cmd": "start", "instances": [...], "shared": {"argv", "env", "cwd"}}
                                       the same with the loaders forked from one shared root
    {"cmd": "kill", "key": K}          SIGKILL one worker; answers the replacement's timings
    {"cmd": "restart", "key": K}       rolling restart onto a new loader
    {"cmd": "status"}                  loaders and workers with their pids
    {"cmd": "stop"}                    stops everything, answers, exits
"""

import array
import ctypes
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
CONTROL_FD = 4
PYTHON_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def alive(pid):
    """Whether pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def parent_of(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


class Failed(Exception):
    """A start or restart that did not happen; the message is the loader's error."""


class Stream:
    """One pipe ctsd reads: a worker's or loader's stdout or stderr, split into lines."""

    def __init__(self, fd, owner, name):
        self.fd, self.owner, self.name = fd, owner, name
        self.partial = b""


class LoaderProc:
    def __init__(self, inst, generation):
        self.inst, self.generation = inst, generation
        self.pid = None
        self.ctl = None
        self.state = "loading"  # loading | ready | failed | exited
        self.failure = None
        self.status = None
        self.pending = []  # worker ids with a spawn sent and no answer yet
        self.started = time.monotonic()
        self.ready_at = None


class Root:
    """The process shared by several instances' loaders (``cts_preload --root``)."""

    def __init__(self):
        self.pid = None
        self.ctl = None
        self.state = "loading"
        self.failure = None
        self.status = None
        self.children = {}  # request id -> LoaderProc
        self.pending = []


class Worker:
    def __init__(self, inst, wid, loader):
        self.inst, self.wid, self.loader = inst, wid, loader
        self.pid = None
        self.notify = None
        self.state = "spawning"  # spawning | starting | ready | stopping | exited | failed
        self.asked = time.monotonic()
        self.pid_at = self.ready_at = self.exited_at = None
        self.status = None
        self.error = None
        self.replaces = None  # the worker this one replaces after its exit


class Instance:
    def __init__(self, key, port, workers, argv, env, cwd):
        self.key, self.port, self.size = key, port, workers
        self.argv, self.env, self.cwd = argv, env, cwd
        self.listener = socket.create_server(("127.0.0.1", port), backlog=1024)
        self.listener.set_inheritable(False)
        self.loader = None  # the current one
        self.loaders = []  # every loader started and not reaped yet
        self.shared = None  # (root argv, root env) when loaders come from a shared root
        self.workers = {}
        self.generations = 0
        self.running = True


class Ctsd:
    def __init__(self, python=sys.executable, log=None):
        become_subreaper()
        self.python = python
        self.lock = threading.RLock()
        self.cv = threading.Condition(self.lock)
        self.instances = {}
        self.streams = {}
        self.lines = []  # (owner label, stream name, line) of every pipe
        self.log = log
        self.counter = 0
        self.reaped = {}  # pid -> (exit status, monotonic time) of every child reaped
        self.roots = []  # shared roots running
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # SIGCHLD through the wake-up pipe (written by the C-level handler, in any thread).
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="emulated-ctsd", daemon=True)
        self.thread.start()

    # ---- the event loop -------------------------------------------------------------------

    def _loop(self):
        while not self.closed:
            events = self.sel.select()
            with self.lock:
                for key, _ in events:
                    kind, obj = key.data
                    if kind == "wake":
                        try:
                            while os.read(self.wake_r, 512):
                                pass
                        except BlockingIOError:
                            pass
                        self._drain_channels()  # answers before reaping: see docs/preload.md
                        self._reap()
                    elif kind == "ctl":
                        self._channel(obj)
                    elif kind == "notify":
                        self._notified(obj)
                    elif kind == "stream":
                        self._read(obj)
                self.cv.notify_all()

    def _drain_channels(self):
        for root in self.roots:
            if root.ctl is not None:
                self._channel(root, drain=True)
        for inst in self.instances.values():
            for ld in inst.loaders:
                if ld.ctl is not None:
                    self._channel(ld, drain=True)

    def _channel(self, ld, drain=False):
        while ld.ctl is not None:
            try:
                msg = ld.ctl.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self._close_channel(ld)
                return
            self._message(ld, msg)
            if not drain:
                return

    def _close_channel(self, ld):
        if ld.ctl is not None:
            self.sel.unregister(ld.ctl)
            ld.ctl.close()
            ld.ctl = None

    def _message(self, ld, msg):
        word, _, rest = msg.partition(b" ")
        now = time.monotonic()
        if isinstance(ld, Root) and word in (b"pid", b"error"):
            rid, _, arg = rest.partition(b" ")
            child = ld.children.pop(rid.decode(), None)
            if child is not None and word == b"pid":
                child.pid = int(arg)
                self._maybe_loader_exited(child)
            elif child is not None:
                child.state, child.failure = "failed", arg.decode(errors="replace")
                child.inst.loaders.remove(child)
                self._close_channel(child)
            return
        if word == b"ready":
            ld.state, ld.ready_at = "ready", now
        elif word == b"failed":
            ld.state, ld.failure = "failed", rest.decode(errors="replace")
        elif word in (b"pid", b"error"):
            wid, _, arg = rest.partition(b" ")
            wid = wid.decode()
            if wid in ld.pending:
                ld.pending.remove(wid)
            w = ld.inst.workers.get(wid)
            if w is None:
                return
            if word == b"pid":
                w.pid, w.pid_at = int(arg), now
                if w.state == "spawning":
                    w.state = "starting"
                self._maybe_exited(w)
            else:
                w.state, w.error = "failed", arg.decode(errors="replace")
                self._drop_worker_fds(w)

    def _maybe_loader_exited(self, ld):
        if ld.pid in self.reaped:
            self._loader_exited(ld, self.reaped[ld.pid][0])

    def _loader_exited(self, ld, status):
        ld.status = status
        if ld.state != "failed":
            ld.state = "exited"
        if ld.ctl is not None:
            self._channel(ld, drain=True)
        if ld in ld.inst.loaders:
            ld.inst.loaders.remove(ld)

    def _maybe_exited(self, w):
        """A worker reaped before its pid answer was read (cannot happen when the channel is
        drained first, which is what this checks)."""
        if w.pid in self.reaped and w.state != "exited":
            self._worker_exited(w, *self.reaped[w.pid])

    def _notified(self, w):
        try:
            data = w.notify.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if b"READY=1" in data.split(b"\n") and w.state in ("spawning", "starting"):
            w.state, w.ready_at = "ready", time.monotonic()

    def _read(self, st):
        try:
            data = os.read(st.fd, 65536)
        except BlockingIOError:
            return
        if not data:
            if st.partial:
                self._line(st, st.partial)
            self.sel.unregister(st.fd)
            os.close(st.fd)
            del self.streams[st.fd]
            return
        data = st.partial + data
        *lines, st.partial = data.split(b"\n")
        for line in lines:
            self._line(st, line)

    def _line(self, st, line):
        text = line.decode(errors="replace")
        self.lines.append((st.owner, st.name, text))
        if self.log:
            self.log.write(f"{st.owner} {st.name}: {text}\n")
            self.log.flush()

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            now = time.monotonic()
            self.reaped[pid] = (status, now)
            for root in list(self.roots):
                if root.pid == pid:
                    root.status = status
                    if root.state != "failed":
                        root.state = "exited"
                    self._close_channel(root)
                    self.roots.remove(root)
            for inst in self.instances.values():
                for ld in list(inst.loaders):
                    if ld.pid == pid:
                        self._loader_exited(ld, status)
                for w in list(inst.workers.values()):
                    if w.pid == pid:
                        self._worker_exited(w, status, now)

    def _worker_exited(self, w, status, now):
        was_stopping = w.state == "stopping"
        w.state, w.status, w.exited_at = "exited", status, now
        self._drop_worker_fds(w)
        inst = w.inst
        del inst.workers[w.wid]
        if inst.running and not was_stopping and inst.loader and inst.loader.state == "ready":
            self._spawn(inst, inst.loader, replaces=w)

    def _drop_worker_fds(self, w):
        if w.notify is not None:
            self.sel.unregister(w.notify)
            w.notify.close()
            w.notify = None

    # ---- actions (called with the lock held) -----------------------------------------------

    def _pipe(self, owner, name):
        r, w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(r, False)
        st = Stream(r, owner, name)
        self.streams[r] = st
        self.sel.register(r, selectors.EVENT_READ, ("stream", st))
        return w

    def _start_loader(self, inst):
        inst.generations += 1
        ld = LoaderProc(inst, inst.generations)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        label = f"{inst.key}/loader{ld.generation}"
        out_w, err_w = self._pipe(label, "stdout"), self._pipe(label, "stderr")
        env = dict(inst.env)
        env.update(LISTEN_FDS="1", LISTEN_FDNAMES=inst.key, CTS_PRELOAD_FD=str(CONTROL_FD),
                   CTS_INSTANCE=inst.key, CTS_WORKER=f"{os.getpid()}:{inst.key}:loader{ld.generation}")
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ld.pid = self._posix_spawn(inst.argv, env, inst.cwd, [devnull, out_w, err_w,
                                                                  inst.listener.fileno(), theirs.fileno()])
        finally:
            for fd in (devnull, out_w, err_w):
                os.close(fd)
            theirs.close()
        inst.loaders.append(ld)
        ours.setblocking(False)
        ld.ctl = ours
        self.sel.register(ours, selectors.EVENT_READ, ("ctl", ld))
        return ld

    def _posix_spawn(self, argv, env, cwd, fds):
        """Starts python -m cts_preload argv with fds[i] on fd i (None: closed), in its own
        process group, from cwd."""
        env = dict(env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PYTHON_DIR, env.get("PYTHONPATH")) if p)
        # Every source above the targets first, so that no dup2 lands on a source (and a dup2
        # onto itself would keep FD_CLOEXEC).
        temps = [(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10), target)
                 for target, fd in enumerate(fds) if fd is not None]
        actions = [(os.POSIX_SPAWN_DUP2, t, target) for t, target in temps]
        here = os.getcwd()
        try:
            # posix_spawn has no chdir action before Python 3.13: spawn from the instance's
            # directory (the lock is held: no other spawn of this process runs meanwhile).
            os.chdir(cwd or here)
            return os.posix_spawn(self.python, [self.python, "-m", "cts_preload", *argv],
                                  {k: str(v) for k, v in env.items()}, file_actions=actions,
                                  setpgroup=0)
        finally:
            os.chdir(here)
            for t, _ in temps:
                os.close(t)

    def _start_root(self, argv, env, cwd):
        root = Root()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_w, err_w = self._pipe("root", "stdout"), self._pipe("root", "stderr")
        env = dict(env, CTS_PRELOAD_FD=str(CONTROL_FD))
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            root.pid = self._posix_spawn(["--root", *argv], env, cwd,
                                         [devnull, out_w, err_w, None, theirs.fileno()])
        finally:
            for fd in (devnull, out_w, err_w):
                os.close(fd)
            theirs.close()
        self.roots.append(root)
        ours.setblocking(False)
        root.ctl = ours
        self.sel.register(ours, selectors.EVENT_READ, ("ctl", root))
        return root

    def _loader_from_root(self, root, inst):
        inst.generations += 1
        ld = LoaderProc(inst, inst.generations)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        label = f"{inst.key}/loader{ld.generation}"
        out_w, err_w = self._pipe(label, "stdout"), self._pipe(label, "stderr")
        env = dict(inst.env)
        env.update(LISTEN_FDS="1", LISTEN_FDNAMES=inst.key, CTS_INSTANCE=inst.key,
                   CTS_WORKER=f"{os.getpid()}:{inst.key}:loader{ld.generation}")
        rid = f"{inst.key}.{ld.generation}"
        msg = b"\0".join([f"loader {rid}".encode(), *(f"{k}={v}".encode() for k, v in env.items())])
        fds = [inst.listener.fileno(), theirs.fileno(), out_w, err_w]
        try:
            root.ctl.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", fds).tobytes())])
        finally:
            for fd in (out_w, err_w):
                os.close(fd)
            theirs.close()
        root.children[rid] = ld
        inst.loaders.append(ld)
        ours.setblocking(False)
        ld.ctl = ours
        self.sel.register(ours, selectors.EVENT_READ, ("ctl", ld))
        return ld

    def _spawn(self, inst, ld, replaces=None):
        self.counter += 1
        wid = f"w{self.counter}"
        w = Worker(inst, wid, ld)
        w.replaces = replaces
        name = f"cts-emu-{os.getpid()}-{inst.key}-{wid}"
        w.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        w.notify.bind("\0" + name)
        w.notify.setblocking(False)
        self.sel.register(w.notify, selectors.EVENT_READ, ("notify", w))
        label = f"{inst.key}/{wid}"
        out_w, err_w = self._pipe(label, "stdout"), self._pipe(label, "stderr")
        env = [f"CTS_WORKER={os.getpid()}:{inst.key}:{wid}", f"NOTIFY_SOCKET=@{name}",
               f"CTS_WORKER_ID={wid}"]
        msg = b"\0".join([f"spawn {wid}".encode(), *(e.encode() for e in env)])
        inst.workers[wid] = w
        ld.pending.append(wid)
        try:
            ld.ctl.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", [out_w, err_w]).tobytes())])
        except (OSError, AttributeError) as e:
            w.state, w.error = "failed", f"channel: {e}"
            ld.pending.remove(wid)
        finally:
            os.close(out_w)
            os.close(err_w)
        return w

    def _signal(self, pid, sig):
        try:
            os.killpg(pid, sig)  # the worker's process group (pgid = pid)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # ---- the public side -------------------------------------------------------------------

    def wait(self, predicate, timeout, what):
        with self.cv:
            if not self.cv.wait_for(predicate, timeout):
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")

    def _ready_root(self, argv, env, cwd, timeout):
        with self.lock:
            root = self._start_root(argv, env, cwd)
        self.wait(lambda: root.state != "loading", timeout, "the shared root")
        if root.state != "ready":
            self.wait(lambda: root.status is not None, timeout, "the failed root to exit")
            raise Failed(f"the shared root failed: {root.failure}")
        return root

    def _close_root(self, root, timeout):
        with self.lock:
            self._close_channel(root)  # EOF: the root exits
        self.wait(lambda: root.status is not None, timeout, "the shared root to exit")

    def _await_loader(self, inst, ld, timeout):
        """Waits for ld's answer; raises Failed with its error."""
        self.wait(lambda: ld.state != "loading", timeout, f"{inst.key}'s loader")
        if ld.state != "ready":
            if ld.pid is None:
                raise Failed(f"{inst.key}: the root could not fork a loader: {ld.failure}")
            self.wait(lambda: ld.status is not None, timeout, f"{inst.key}'s failed loader to exit")
            with self.lock:
                self._close_channel(ld)
            code = os.waitstatus_to_exitcode(ld.status)
            raise Failed(f"{inst.key}: the new code cannot be loaded (loader exit {code}):\n"
                         f"{ld.failure or ''}")
        return ld

    def _load(self, inst, timeout):
        """Starts a loader for inst (from a new shared root when inst.shared) and waits for
        its answer; raises Failed with its error."""
        if inst.shared is None:
            with self.lock:
                ld = self._start_loader(inst)
            return self._await_loader(inst, ld, timeout)
        root = self._ready_root(*inst.shared, inst.cwd, timeout)
        try:
            with self.lock:
                ld = self._loader_from_root(root, inst)
            return self._await_loader(inst, ld, timeout)
        finally:
            self._close_root(root, timeout)

    def start_shared(self, specs, root_argv, root_env, cwd, timeout=60):
        """Starts instances whose loaders are forked from one shared root (which imports the
        libraries once for all of them); the root exits once they are loaded."""
        root = self._ready_root(root_argv, root_env, cwd, timeout)
        try:
            with self.lock:
                pairs = []
                for spec in specs:
                    inst = Instance(spec["key"], spec["port"], spec["workers"], spec["argv"],
                                    dict(spec["env"]), cwd)
                    inst.shared = (root_argv, root_env)
                    self.instances[inst.key] = inst
                    pairs.append((inst, self._loader_from_root(root, inst)))
            for inst, ld in pairs:
                inst.loader = self._await_loader(inst, ld, timeout)
        finally:
            self._close_root(root, timeout)
        with self.lock:
            ws = [self._spawn(inst, inst.loader) for inst, _ in pairs for _ in range(inst.size)]
        self.wait(lambda: all(w.state not in ("spawning", "starting") for w in ws), timeout,
                  "the workers")
        bad = [w for w in ws if w.state != "ready"]
        if bad:
            raise Failed(f"workers not ready: {[(w.wid, w.state, w.error) for w in bad]}")

    def _add_worker(self, inst, ld, timeout):
        with self.lock:
            w = self._spawn(inst, ld)
        self.wait(lambda: w.state in ("ready", "failed", "exited"), timeout, f"worker {w.wid}")
        if w.state != "ready":
            raise Failed(f"{inst.key}: worker {w.wid}: {w.error or w.state}")
        return w

    def start(self, key, port, workers, argv, env, cwd=None, timeout=60):
        """Starts one instance: loader, then its workers; returns when all are ready."""
        env = dict(env)
        if cwd:
            env["PWD"] = cwd
        with self.lock:
            inst = Instance(key, port, workers, argv, env, cwd)
            self.instances[key] = inst
        inst.loader = self._load(inst, timeout)
        with self.lock:
            ws = [self._spawn(inst, inst.loader) for _ in range(workers)]
        self.wait(lambda: all(w.state != "spawning" and w.state != "starting" for w in ws),
                  timeout, f"{key}'s workers")
        bad = [w for w in ws if w.state != "ready"]
        if bad:
            raise Failed(f"{key}: workers not ready: {[(w.wid, w.state, w.error) for w in bad]}")
        return inst

    def workers(self, key):
        with self.lock:
            return [w for w in self.instances[key].workers.values()]

    def kill(self, key, timeout=30):
        """SIGKILLs one ready worker; returns (victim pid, replacement pid, ms kill -> reaped,
        -> pid answer, -> READY=1)."""
        with self.lock:
            victim = next(w for w in self.instances[key].workers.values() if w.state == "ready")
            t0 = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)

        def replacement():
            for w in self.instances[key].workers.values():
                if w.replaces is victim and w.state in ("ready", "failed", "exited"):
                    return w
            return None

        self.wait(lambda: replacement() is not None, timeout, "the replacement")
        r = replacement()
        return {"victim": victim.pid, "pid": r.pid, "state": r.state,
                "reaped_ms": (victim.exited_at - t0) * 1000, "pid_ms": (r.pid_at - t0) * 1000,
                "ready_ms": (r.ready_at - t0) * 1000 if r.ready_at else None}

    def restart(self, key, timeout=60):
        """Rolling restart: a new loader loads the code on disk; only once it is ready are the
        workers replaced one by one (new one ready, then the old one stopped). A loader that
        cannot load leaves everything as it was and raises Failed."""
        inst = self.instances[key]
        new = self._load(inst, timeout)
        with self.lock:
            old_loader, inst.loader = inst.loader, new
            olds = [w for w in inst.workers.values() if w.loader is old_loader]
        for old in olds:
            self._add_worker(inst, new, timeout)
            with self.lock:
                if old.state != "exited":
                    old.state = "stopping"
                    self._signal(old.pid, signal.SIGTERM)
        self.wait(lambda: all(o.state == "exited" for o in olds), timeout, "the old workers")
        with self.lock:
            self._close_channel(old_loader)  # EOF: the old loader exits
        self.wait(lambda: old_loader.status is not None, timeout, "the old loader")
        return new

    def stop(self, timeout=30):
        """Stops every worker (SIGTERM to its group, SIGKILL after timeout) and every loader
        (end of file on its channel), all by pid."""
        with self.lock:
            for root in self.roots:
                self._close_channel(root)
            for inst in self.instances.values():
                inst.running = False
                for w in inst.workers.values():
                    if w.pid and w.state != "exited":
                        w.state = "stopping"
                        self._signal(w.pid, signal.SIGTERM)
                for ld in inst.loaders:
                    self._close_channel(ld)
        try:
            self.wait(lambda: not self.live_pids(), timeout, "everything to stop")
        except TimeoutError:
            pass
        finally:
            self.kill_everything()

    def live_pids(self):
        with self.lock:
            pids = []
            pids += [r.pid for r in self.roots if r.pid and r.status is None]
            for inst in self.instances.values():
                pids += [ld.pid for ld in inst.loaders if ld.pid]
                pids += [w.pid for w in inst.workers.values() if w.pid and w.state != "exited"]
            return pids

    def kill_everything(self):
        """SIGKILL by pid to whatever is still alive of what this started; waits for them."""
        for pid in self.live_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.wait(lambda: not self.live_pids(), 10, "the killed processes")
        except TimeoutError:
            pass

    def close(self):
        self.stop()
        self.closed = True
        os.write(self.wake_w, b"x")
        self.thread.join(5)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for inst in self.instances.values():
            inst.listener.close()

    def status(self):
        with self.lock:
            return {key: {"loader": inst.loader.pid if inst.loader else None,
                          "workers": [w.pid for w in inst.workers.values() if w.pid]}
                    for key, inst in self.instances.items()}


def serve_commands():
    """The benchmark's interface: JSON commands on stdin, JSON answers on stdout."""
    log = open(os.environ["EMULATED_CTSD_LOG"], "a") if os.environ.get("EMULATED_CTSD_LOG") else None
    ctsd = Ctsd(python=os.environ.get("EMULATED_CTSD_PYTHON", sys.executable), log=log)
    out = sys.stdout
    try:
        for line in sys.stdin:
            req = json.loads(line)
            cmd = req["cmd"]
            try:
                if cmd == "start":
                    # All instances at once, as ctsd starts them.
                    t = time.monotonic()
                    errors = []

                    def start(spec):
                        try:
                            ctsd.start(**spec)
                        except Exception as e:
                            errors.append(f"{type(e).__name__}: {e}")

                    if req.get("shared"):
                        sh = req["shared"]
                        ths = [threading.Thread(target=lambda: ctsd.start_shared(
                            req["instances"], sh["argv"], sh["env"], sh["cwd"]))]
                        start = None
                    else:
                        ths = [threading.Thread(target=start, args=(i,)) for i in req["instances"]]
                    for th in ths:
                        th.start()
                    for th in ths:
                        th.join()
                    ans = {"ok": not errors, "seconds": time.monotonic() - t, "errors": errors}
                elif cmd == "kill":
                    ans = {"ok": True, **ctsd.kill(req["key"])}
                elif cmd == "restart":
                    try:
                        ctsd.restart(req["key"])
                        ans = {"ok": True}
                    except Failed as e:
                        ans = {"ok": False, "error": str(e)}
                elif cmd == "status":
                    ans = {"ok": True, "status": ctsd.status(), "self": os.getpid()}
                elif cmd == "stop":
                    ctsd.stop()
                    ans = {"ok": True}
                else:
                    ans = {"ok": False, "error": f"unknown command {cmd}"}
            except Exception as e:  # the benchmark shows it
                ans = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            out.write(json.dumps(ans) + "\n")
            out.flush()
            if cmd == "stop":
                break
    finally:
        ctsd.close()


if __name__ == "__main__":
    serve_commands()
