"""cts_preload: import a WSGI application once, then fork its workers on ctsd's request.

ctsd runs ONE loader per instance::

    python3 -m cts_preload [--worker-class sync|gthread|stdlib] [--threads N] [--timeout S]
                           [--gc freeze|collect-freeze|none] [--warm PATH [--warm-times N]]
                           [--module-cache FILE] MODULE:CALLABLE

or, shared by several instances of the same code (see "the root" below)::

    python3 -m cts_preload --root [--module-cache FILE] [--preimport MOD,...] [options]
                           MODULE:CALLABLE

with the instance's listening socket on fd 3 (``LISTEN_FDS=1``) and one end of a Unix
``SOCK_SEQPACKET`` socketpair on the fd that ``CTS_PRELOAD_FD`` names. The loader imports the
application (Django set-up included) with the garbage collector off, freezes what it loaded
(``gc.freeze()``: the workers then never write to those objects' GC headers, so the pages stay
shared copy-on-write; the collector is on again in the workers) and says ``ready <pid>`` on
the channel. From then on it only answers ``spawn`` requests, and exits when the channel
reaches end of file (ctsd closed its end, or died). It never wakes up by itself.

The protocol (one message per ``send``; the channel keeps message boundaries):

ctsd to loader:
    ``spawn <id>`` [``\\0KEY=VALUE``]... [``\\0KEY``]...
        with SCM_RIGHTS: the worker's stdout and its stderr, in that order (no fds: the worker
        keeps the loader's). ``<id>`` is ctsd's name for the worker (ASCII, no space, no NUL).
        ``KEY=VALUE`` entries are set in the worker's environment, a bare ``KEY`` is removed
        from it (``CTS_WORKER``, ``NOTIFY_SOCKET``, ...).

loader to ctsd:
    ``ready <loader pid>``       the application is loaded: the loader takes spawn requests.
    ``failed <traceback>``       the application cannot be loaded; the loader exits with
                                 status 4 (the traceback also goes to its stderr).
    ``pid <id> <pid>``           the worker ``<id>`` was forked; it is ctsd's child (reparented
                                 to ctsd, its subreaper), in its own process group (pgid = pid).
    ``error <id> <message>``     the worker could not be forked (nothing is left running).

The root (``--root``) imports only libraries (the modules of ``--preimport`` and of the
``--module-cache`` file, which every loader rewrites with the standard-library and
site-packages modules it has once loaded), never the application, and answers:

    ``loader <id>`` [``\\0KEY=VALUE``]... [``\\0KEY``]...
        with SCM_RIGHTS: the instance's listening socket, the new loader's end of its own
        channel, its stdout, its stderr. The root forks a loader for that instance (the
        environment applied, the socket on fd 3) and answers ``pid <id> <pid>`` or ``error <id>
        <message>``; the new loader then speaks on its own channel as above (``ready`` or
        ``failed``). ctsd closes the root's channel once it needs no more loaders from it.

Each ``spawn`` or ``loader`` gets exactly one ``pid`` or ``error`` answer, in order. A forked
process does not run any of the application's code before its ``pid`` answer has been sent
(ctsd reads the answers before it reaps: see docs/preload.md). A worker sends ``READY=1`` to ``NOTIFY_SOCKET`` (when
its environment has one) as it starts accepting on fd 3. SIGTERM: the worker finishes the
request in hand and exits 0.

This module is standard library only; gunicorn (when installed) provides the ``sync`` and
``gthread`` worker classes, ``stdlib`` is a small server of this module's own.
"""

import ctypes
import gc
import os
import signal
import socket
import struct
import sys
import threading
import traceback

CONTROL_FD_VAR = "CTS_PRELOAD_FD"
LISTEN_FD = 3
MAX_MESSAGE = 64 * 1024
MAX_FDS = 4

EXIT_USAGE = 2
EXIT_LOAD_FAILED = 4
EXIT_REQUEST_TIMEOUT = 124
EXIT_SETUP_FAILED = 70

WORKER_CLASSES = ("sync", "gthread", "stdlib")

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option, value):
    if _libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_process_name(name):
    """The name `ps -o comm` and `top` show (15 bytes at most); failures are ignored."""
    try:
        buf = ctypes.create_string_buffer(name.encode()[:15])
        _libc.prctl(_PR_SET_NAME, buf, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def notify(state):
    """sd_notify: sends ``state`` to ``$NOTIFY_SOCKET`` when set (a path or an ``@abstract``
    name). Errors are written to stderr, never raised: readiness is ctsd's business."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
    except OSError as e:
        print(f"cts_preload: cannot notify {state!r}: {e}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Loading


def import_app(spec):
    """``module:callable`` (``module`` alone means ``module:application``), imported."""
    import importlib

    module, _, name = spec.partition(":")
    name = name or "application"
    if not module:
        raise ImportError(f"no module in {spec!r} (expected MODULE:CALLABLE)")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def _django_close_connections():
    """Connections the application opened at import would be shared by every worker: close
    them (Django opens them lazily, so there usually are none)."""
    db = sys.modules.get("django.db")
    if db is not None:
        try:
            db.connections.close_all()
        except Exception as e:  # a broken backend must not stop the loader
            print(f"cts_preload: closing Django's connections: {e}", file=sys.stderr, flush=True)


def warm(app, path):
    """Runs one GET ``path`` (below the instance's prefix, ``$SCRIPT_NAME``) through the
    application in the loader, so that what the first
    request imports or builds lazily (URLconf, views, database backend) is shared by the
    workers instead of being made again in each. The answer is thrown away."""
    import io

    environ = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": os.environ.get("SCRIPT_NAME", "").rstrip("/"),
        "PATH_INFO": path,
        "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status = []
    result = app(environ, lambda s, h, exc_info=None: status.append(s) or (lambda b: None))
    try:
        for _ in result:
            pass
    finally:
        if hasattr(result, "close"):
            result.close()
    return status[0] if status else None


# ---------------------------------------------------------------------------------------------
# Servers: how a forked worker serves fd 3. Built in the loader (imports happen before the
# fork, so they are shared), run in the worker.


class RequestTimer:
    """A per-request time limit without any timer when idle: SIGALRM is armed when a request
    is accepted and disarmed when it is answered. On expiry the request is interrupted
    (``RequestTimeout``, which ``except Exception`` does not catch), the stack is written to
    stderr and the worker exits with status 124 after answering 500."""

    def __init__(self, seconds):
        self.seconds = float(seconds or 0)
        self.expired = False

    def install(self):
        if self.seconds > 0:
            signal.signal(signal.SIGALRM, self._expire)

    def arm(self):
        if self.seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def disarm(self):
        if self.seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _expire(self, signum, frame):
        self.expired = True
        sys.stderr.write(f"cts_preload: request timeout after {self.seconds:g} s in worker "
                         f"{os.getpid()}; the request was at:\n")
        traceback.print_stack(frame, file=sys.stderr)
        sys.stderr.flush()
        raise RequestTimeout()


class RequestTimeout(BaseException):
    """Raised into a request that exceeded ``--timeout``."""


class StdlibServer:
    """A minimal synchronous HTTP/1.0 server from the standard library (wsgiref's request
    handler): one request per connection, like gunicorn's sync worker. Idle, it blocks in
    epoll_wait on fd 3 (registered EPOLLEXCLUSIVE: one worker is woken per connection) and on
    the signal wake-up pipe, with no timeout."""

    name = "stdlib"

    def __init__(self, app, timeout):
        from wsgiref.simple_server import WSGIRequestHandler  # imported in the loader

        self.app = app
        self.timer = RequestTimer(timeout)
        script_name = os.environ.get("SCRIPT_NAME", "").rstrip("/")

        class Handler(WSGIRequestHandler):
            def get_environ(self):
                env = super().get_environ()
                path = env.get("PATH_INFO", "")
                # As gunicorn does: the prefix ctsd puts in SCRIPT_NAME leaves PATH_INFO.
                if script_name and (path == script_name or path.startswith(script_name + "/")):
                    env["SCRIPT_NAME"] = script_name
                    env["PATH_INFO"] = path[len(script_name):]
                return env

            def log_request(self, code="-", size="-"):  # no access log, as gunicorn's default
                pass

        self.handler = Handler

    def serve(self):
        listener = socket.socket(fileno=LISTEN_FD)
        listener.setblocking(False)
        host, port = listener.getsockname()[:2]
        app = self.app

        class Server:  # what wsgiref's handler reads of its server
            base_environ = {"SERVER_NAME": str(host), "GATEWAY_INTERFACE": "CGI/1.1",
                            "SERVER_PORT": str(port), "REMOTE_HOST": "", "CONTENT_LENGTH": "",
                            "SCRIPT_NAME": ""}

            @staticmethod
            def get_app():
                return app

        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        state = {"stop": False}

        def on_term(signum, frame):
            state["stop"] = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        self.timer.install()
        import select

        poller = select.epoll()
        poller.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        poller.register(wake_r, select.EPOLLIN)
        notify("READY=1")
        while not state["stop"]:
            for fd, _ in poller.poll():
                if fd == wake_r:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
            while not state["stop"]:
                if not self._accept(listener, Server):
                    break
                if self.timer.expired:
                    return EXIT_REQUEST_TIMEOUT
        # EPOLLEXCLUSIVE woke only this worker for a connection that may have arrived as it was
        # told to stop: no other worker was woken for it. Once out of the wait queue (close),
        # take that one connection, if any; later ones wake the other workers.
        poller.close()
        self._accept(listener, Server)
        return EXIT_REQUEST_TIMEOUT if self.timer.expired else 0

    def _accept(self, listener, server):
        """Serves one connection if one is waiting; whether one was."""
        try:
            conn, addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        self._handle(conn, addr, server)
        return True

    def _handle(self, conn, addr, server):
        conn.setblocking(True)
        self.timer.arm()
        try:
            self.handler(conn, addr, server)
        except RequestTimeout:
            try:
                conn.sendall(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
        except OSError:
            pass  # the client went away
        finally:
            self.timer.disarm()
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()


def make_server(kind, app, threads, timeout):
    if kind == "stdlib":
        return StdlibServer(app, timeout)
    from . import _gunicorn

    return _gunicorn.GunicornServer(kind, app, threads, timeout)


# ---------------------------------------------------------------------------------------------
# The loader


class Loader:
    """Answers requests on the channel: ``spawn`` (a worker, in an instance's loader) or
    ``loader`` (an instance's loader, in the shared root)."""

    def __init__(self, channel, supervisor, server=None, args=None):
        self.channel = channel
        self.supervisor = supervisor  # ctsd's pid: every child must end up its child
        self.server = server  # None in the root
        self.args = args

    def send(self, text):
        self.channel.send(text if isinstance(text, bytes) else text.encode())

    def run(self):
        """Answers requests until the channel reaches end of file."""
        fd_space = socket.CMSG_SPACE(MAX_FDS * 4)
        while True:
            try:
                msg, anc, flags, _ = self.channel.recvmsg(MAX_MESSAGE, fd_space)
            except ConnectionResetError:
                return 0
            fds = []
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.extend(struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]))
            if not msg and not fds:
                return 0  # end of file: ctsd closed its end
            try:
                self.handle(msg, fds, flags)
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def handle(self, msg, fds, flags):
        fields = msg.split(b"\0")
        words = fields[0].split(b" ")
        wid = words[1].decode(errors="replace") if len(words) > 1 else "-"
        want = b"spawn" if self.server is not None else b"loader"
        nfds = (0, 2) if want == b"spawn" else (4,)
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            return self.send(f"error {wid} message or fds truncated")
        if words[0] != want or len(words) != 2 or not words[1]:
            return self.send(f"error {wid} unknown request {fields[0][:80]!r}")
        if len(fds) not in nfds:
            return self.send(f"error {wid} expected {' or '.join(map(str, nfds))} fds, got {len(fds)}")
        env, unset = {}, []
        for entry in fields[1:]:
            if not entry:
                continue
            key, eq, value = entry.partition(b"=")
            if eq:
                env[os.fsdecode(key)] = os.fsdecode(value)
            else:
                unset.append(os.fsdecode(key))
        self.fork(wid, env, unset, fds)

    def fork(self, wid, env, unset, fds):
        """Double fork: the intermediate child forks the new process and exits, so that one is
        reparented to ctsd (the subreaper). The new process waits on `go` until the loader has
        checked the reparenting and sent the pid."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid_r, pid_w = os.pipe()
        go_r, go_w = os.pipe()
        try:
            middle = os.fork()
        except OSError as e:
            for fd in (pid_r, pid_w, go_r, go_w):
                os.close(fd)
            return self.send(f"error {wid} fork: {e}")
        if middle == 0:  # the intermediate child: fork, say the pid, exit
            code = 1
            try:
                os.close(pid_r)
                os.close(go_w)
                pid = os.fork()
                if pid == 0:
                    os.close(pid_w)
                    child_main(self, env, unset, fds, go_r)  # never returns
                try:
                    os.setpgid(pid, pid)  # also done by the child: whichever runs first
                except OSError:
                    pass
                os.write(pid_w, struct.pack("i", pid))
                code = 0
            finally:
                os._exit(code)
        os.close(pid_w)
        os.close(go_r)
        try:
            data = b""
            while len(data) < 4:
                chunk = os.read(pid_r, 4 - len(data))
                if not chunk:
                    break
                data += chunk
            os.close(pid_r)
            _, status = os.waitpid(middle, 0)
            if len(data) != 4:
                return self.send(f"error {wid} fork failed (intermediate status "
                                 f"{os.waitstatus_to_exitcode(status)})")
            (pid,) = struct.unpack("i", data)
            parent = _parent_of(pid)
            if parent != self.supervisor:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return self.send(f"error {wid} process {pid} was adopted by {parent}, not by "
                                 f"{self.supervisor}: is ctsd a child subreaper?")
            self.send(f"pid {wid} {pid}")
            os.write(go_w, b"g")
        finally:
            os.close(go_w)
        return None


def _parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def child_main(parent, env, unset, fds, go_r):
    """A forked worker (or, in the root, an instance's loader): never returns (os._exit)."""
    code = EXIT_SETUP_FAILED
    try:
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        go = os.read(go_r, 1)
        os.close(go_r)
        if go != b"g":
            os._exit(EXIT_SETUP_FAILED)  # the loader refused or died: nobody expects us
        # Now ctsd's child: die with it, as ctsd's other workers do (ctsd's own spawn sets
        # SIGKILL too). Set only now: the death signal also fires on the reparenting itself.
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent.supervisor:
            os._exit(EXIT_SETUP_FAILED)  # ctsd died between the check and here
        parent.channel.close()
        # Received fds may sit on 1, 2 or 3: move them all out of the way first.
        import fcntl

        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]
        for fd in fds:
            os.close(fd)
        if parent.server is None:  # an instance's loader: its socket on 3, its own channel
            listen, channel, *moved = moved
            os.dup2(listen, LISTEN_FD)
            os.close(listen)
        for target, fd in zip((1, 2), moved):
            os.dup2(fd, target)
            os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                    signal.SIGUSR2, signal.SIGCHLD, signal.SIGALRM, signal.SIGWINCH,
                    signal.SIGABRT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for key in unset:
            os.environ.pop(key, None)
        os.environ.update(env)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ.pop(CONTROL_FD_VAR, None)
        try:
            sys.stdout.reconfigure(line_buffering=True)  # one write per line into the pipe
        except (AttributeError, ValueError):
            pass
        if parent.server is None:
            code = load_and_serve(parent.args, socket.socket(fileno=channel), parent.supervisor)
        else:
            set_process_name("cts-worker")
            gc.enable()  # off in the loader since its start (--gc freeze)
            code = parent.server.serve()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # as a gunicorn worker's sys.exit would (logging flush)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# ---------------------------------------------------------------------------------------------
# The modules a root imports for every instance: the application's libraries (standard library
# and site-packages), not the application's own modules, which may read instance settings.


def library_modules():
    """Names of the loaded modules that come from the standard library or site-packages."""
    import sysconfig

    roots = tuple(os.path.join(os.path.realpath(p), "") for key, p in sysconfig.get_paths().items()
                  if key in ("stdlib", "platstdlib", "purelib", "platlib"))
    names = []
    for name, mod in list(sys.modules.items()):
        if mod is None or name in ("__main__", "__mp_main__") or name.startswith("cts_preload"):
            continue
        path = getattr(mod, "__file__", None)
        if path is None or os.path.realpath(path).startswith(roots):
            names.append(name)
    return sorted(names)


def write_module_cache(path):
    """Writes the library modules this loader has into ``path`` (atomically), for the next
    root; errors are only reported."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write("".join(f"{n}\n" for n in library_modules()))
        os.replace(tmp, path)
    except OSError as e:
        print(f"cts_preload: cannot write the module list {path}: {e}", file=sys.stderr, flush=True)


def preimport(names):
    """Imports each module that can be imported; returns how many could not."""
    import importlib

    failed = 0
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            failed += 1
    return failed


def parse_args(argv):
    import argparse

    p = argparse.ArgumentParser(prog="python3 -m cts_preload",
                                description="Import a WSGI application once and fork its "
                                            "workers on ctsd's request (see docs/preload.md).")
    p.add_argument("app", metavar="MODULE:CALLABLE")
    p.add_argument("--worker-class", choices=WORKER_CLASSES, default="sync",
                   help="sync (gunicorn's, the default), gthread (gunicorn's) or stdlib")
    p.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="per-request limit in seconds for sync and stdlib workers (0: none); "
                        "armed per request, never a periodic timer")
    p.add_argument("--gc", choices=("freeze", "collect-freeze", "none"), default="freeze",
                   help="freeze (default): the collector is off from the start until the "
                        "workers, and gc.freeze() before forking, as Python's documentation "
                        "advises for fork without exec; collect-freeze: gc.collect() then "
                        "gc.freeze() before forking; none: neither (for measurements)")
    p.add_argument("--warm", metavar="PATH",
                   help="GET PATH (below $SCRIPT_NAME) through the application before forking "
                        "(a path without side "
                        "effects): what the first requests build or import, and the bytecode "
                        "the interpreter specializes as code runs, are then shared")
    p.add_argument("--warm-times", type=int, default=20, metavar="N",
                   help="how many times --warm's request runs (default 20: the interpreter "
                        "specializes code that has run a few times)")
    p.add_argument("--root", action="store_true",
                   help="be the root shared by several instances: import the libraries only "
                        "(--preimport, --module-cache) and fork instance loaders on request")
    p.add_argument("--preimport", metavar="MOD,...", default="",
                   help="modules the root imports (comma-separated)")
    p.add_argument("--module-cache", metavar="FILE",
                   help="the root imports the modules listed in FILE (one a line) when it "
                        "exists; each instance loader rewrites it with its library modules")
    p.add_argument("--list-modules", action="store_true",
                   help="import the application, print its library modules, exit")
    return p.parse_args(argv)


def load_and_serve(args, channel, supervisor):
    """An instance's loader: imports the application, says ready, answers spawns."""
    set_process_name("cts-preload")
    # The loader's own readiness goes on the channel; workers get their NOTIFY_SOCKET by spawn.
    loader_notify = os.environ.pop("NOTIFY_SOCKET", None)
    try:
        app = import_app(args.app)
        server = make_server(args.worker_class, app, args.threads, args.timeout)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        text = traceback.format_exc()
        sys.stderr.write(f"cts_preload: cannot load {args.app}:\n{text}")
        sys.stderr.flush()
        try:
            channel.send(b"failed " + text.encode(errors="replace")[-(MAX_MESSAGE - 16):])
        except OSError:
            pass
        return EXIT_LOAD_FAILED
    if args.warm:
        try:
            status = [warm(app, args.warm) for _ in range(max(1, args.warm_times))][-1]
            if not str(status).startswith(("2", "3")):
                print(f"cts_preload: the warm-up GET {args.warm} answered {status}",
                      file=sys.stderr, flush=True)
        except Exception:  # the application loaded: a failing warm-up only costs sharing
            print(f"cts_preload: the warm-up GET {args.warm} failed:\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
    _django_close_connections()
    if args.module_cache:
        write_module_cache(args.module_cache)
    return serve_requests(channel, supervisor, server, args, loader_notify)


def serve_requests(channel, supervisor, server, args, loader_notify=None):
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        print(f"cts_preload: threads started at import ({', '.join(others)}) do not exist in "
              f"the forked processes", file=sys.stderr, flush=True)
    if args.gc == "collect-freeze":
        gc.collect()
    if args.gc != "none":
        gc.freeze()
    try:
        channel.send(f"ready {os.getpid()}".encode())
    except OSError:
        return 0  # ctsd is gone already
    if loader_notify:
        os.environ["NOTIFY_SOCKET"] = loader_notify
        notify("READY=1")
        del os.environ["NOTIFY_SOCKET"]
    sys.stdout.flush()
    sys.stderr.flush()
    return Loader(channel, supervisor, server, args).run()


def root_main(args, channel, supervisor):
    """The root: imports the libraries every instance uses, then forks instance loaders."""
    set_process_name("cts-root")
    os.environ.pop("NOTIFY_SOCKET", None)
    names = [n for n in args.preimport.split(",") if n]
    if args.module_cache:
        try:
            with open(args.module_cache) as f:
                names += f.read().split()
        except FileNotFoundError:
            pass
    failed = preimport(names)
    conf = sys.modules.get("django.conf")
    if conf is not None and conf.settings.configured:
        text = ("the root's imports configured Django's settings (DJANGO_SETTINGS_MODULE="
                f"{os.environ.get('DJANGO_SETTINGS_MODULE')!r}): every instance would inherit "
                "them; give the root no instance settings")
        print(f"cts_preload: {text}", file=sys.stderr, flush=True)
        try:
            channel.send(f"failed {text}".encode())
        except OSError:
            pass
        return EXIT_LOAD_FAILED
    if failed:
        print(f"cts_preload: {failed} of {len(names)} modules could not be imported by the root "
              f"(each instance imports what it needs)", file=sys.stderr, flush=True)
    return serve_requests(channel, supervisor, None, args)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list_modules:
        import_app(args.app)
        print("\n".join(library_modules()))
        return 0
    fd_text = os.environ.pop(CONTROL_FD_VAR, "")
    try:
        fd = int(fd_text)
        channel = socket.socket(fileno=fd)
        if channel.type != socket.SOCK_SEQPACKET:
            raise ValueError("not a SOCK_SEQPACKET socket")
    except (ValueError, OSError) as e:
        print(f"cts_preload: {CONTROL_FD_VAR}={fd_text!r}: no control channel ({e})",
              file=sys.stderr)
        return EXIT_USAGE
    os.set_inheritable(fd, False)
    supervisor = os.getppid()
    if args.gc == "freeze":
        gc.disable()  # no holes freed among the long-lived objects that workers would fill
    if args.root:
        return root_main(args, channel, supervisor)
    return load_and_serve(args, channel, supervisor)
