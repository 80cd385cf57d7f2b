"""gunicorn's worker classes run without gunicorn's arbiter: ctsd is the arbiter.

Imported by the loader (so gunicorn's modules are shared by the workers), used in the worker.
Two things differ from a worker under gunicorn's arbiter:

- Nobody reads the heartbeat file, so the workers do not wake up to touch it: the sync worker
  waits for a connection without a timeout, and the gthread worker's poll loop only has a
  timeout while it keeps connections alive or waits for their first bytes. A hung request is
  cut by the per-request alarm of ``--timeout`` (sync) instead of the arbiter's check.
- The "parent" the workers compare ``getppid()`` with is ctsd (they are its children).
"""

import os
import time

from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn import sock as gsock
from gunicorn.workers.sync import SyncWorker
from gunicorn.workers.gthread import ThreadWorker

from . import LISTEN_FD, EXIT_REQUEST_TIMEOUT, RequestTimeout, RequestTimer, notify

# What select() gets instead of gunicorn's heartbeat interval (timeout / 2): no timer at all
# in practice (about 31 years).
NO_HEARTBEAT = 1e9


class _App:
    """What gunicorn's worker asks for the application: ``wsgi()``."""

    def __init__(self, app):
        self.app = app

    def wsgi(self):
        return self.app


class PreloadSyncWorker(SyncWorker):
    timer = None

    def run(self):
        self.timer.install()
        notify("READY=1")
        super().run()

    def handle(self, listener, client, addr):
        self.timer.arm()
        try:
            super().handle(listener, client, addr)
        except RequestTimeout:
            pass
        finally:
            self.timer.disarm()
        if self.timer.expired:
            self.alive = False


class PreloadThreadWorker(ThreadWorker):
    def run(self):
        notify("READY=1")
        super().run()

    def wait_for_and_dispatch_events(self, timeout):
        if self.alive:
            # Wake up only for the first kept-alive or pending connection's deadline.
            deadlines = [q[0].timeout for q in (self.keepalived_conns, self.pending_conns) if q]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        return super().wait_for_and_dispatch_events(timeout)


class GunicornServer:
    def __init__(self, kind, app, threads, timeout):
        self.name = kind
        self.app = _App(app)
        self.cfg = Config()
        self.cfg.set("threads", max(1, threads))
        self.cfg.set("proc_name", "cts-worker")
        self.cls = PreloadSyncWorker if kind == "sync" else PreloadThreadWorker
        self.timeout = timeout
        self.log = Logger(self.cfg)

    def serve(self):
        listeners = gsock.create_sockets(self.cfg, self.log, fds=[LISTEN_FD])
        worker = self.cls(1, os.getppid(), listeners, self.app, NO_HEARTBEAT, self.cfg, self.log)
        worker.pid = os.getpid()
        if self.cls is PreloadSyncWorker:
            worker.timer = RequestTimer(self.timeout)
        worker.init_process()  # runs the accept loop until SIGTERM
        timer = getattr(worker, "timer", None)
        if timer is not None and timer.expired:
            return EXIT_REQUEST_TIMEOUT
        return 0
