"""cts_preload under an emulation of ctsd (emulated_ctsd.py): the test acts as ctsd, a child
subreaper that binds a loopback port, starts the loader and asks it for workers.

    target/e2e/venv/bin/python -m unittest discover -s python/tests -v

With a python that has gunicorn (the e2e venv) every worker class is tested; with a plain
python3 only `stdlib`. Every process started is stopped by pid at the end, also on failure.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import emulated_ctsd  # noqa: E402

APPS = os.path.join(HERE, "apps")
try:
    import gunicorn  # noqa: F401

    CLASSES = ["sync", "gthread", "stdlib"]
except ImportError:
    CLASSES = ["stdlib"]
KILLS = 21


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path="/", timeout=10):
    """(status, body) of GET path on 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def switches(pids):
    total = 0
    for pid in pids:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                            total += int(line.split()[1])
        except OSError:
            pass
    return total


class PreloadTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cts-preload-test-")
        self.count_file = os.path.join(self.dir, "imports")
        self.ctsd = emulated_ctsd.Ctsd(python=sys.executable)
        self.started = set()

    def tearDown(self):
        try:
            self.started.update(self.ctsd.live_pids())
            self.ctsd.close()
            left = [p for p in self.started if emulated_ctsd.alive(p)]
            self.assertEqual(left, [], "processes left running")
        finally:
            for pid in self.started:  # whatever survived, by pid
                if emulated_ctsd.alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, workers, worker_class="sync", app="counting_app:application", key="t",
              extra_env=None, extra_args=()):
        port = free_port()
        env = dict(os.environ, COUNT_FILE=self.count_file, **(extra_env or {}))
        self.ctsd.start(key, port, workers, ["--worker-class", worker_class, *extra_args, app],
                        env, cwd=APPS)
        self.started.update(self.ctsd.live_pids())
        return port

    def imports(self):
        with open(self.count_file) as f:
            return [int(line) for line in f.read().split()]

    def test_killed_worker_is_replaced_by_a_fork_quickly(self):
        """SIGKILL of the only worker: kill -> replacement forked (pid answer), READY=1, and an
        HTTP answer from it (the request waits in the backlog until it accepts); >= 20 times.
        The application was imported once, by the loader."""
        for cls in CLASSES:
            with self.subTest(worker_class=cls):
                key = f"k-{cls}"
                port = self.start(1, cls, key=key)
                loader = self.ctsd.instances[key].loader.pid
                ready, answered = [], []
                for _ in range(KILLS):
                    victim = self.ctsd.workers(key)[0].pid
                    t0 = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                    status, body = get(port, "/")
                    answered.append((time.monotonic() - t0) * 1000)
                    self.assertEqual(status, 200)
                    self.assertNotIn(f'"pid": {victim},'.encode(), body)
                    self.ctsd.wait(lambda: (ws := self.ctsd.workers(key)) and ws[0].state == "ready",
                                   10, "the replacement")
                    w = self.ctsd.workers(key)[0]
                    ready.append((w.ready_at - t0) * 1000)
                    self.started.add(w.pid)
                    self.assertEqual(emulated_ctsd.parent_of(w.pid), os.getpid())
                print(f"\n{cls}: kill -> READY=1 median {statistics.median(ready):.1f} ms, "
                      f"kill -> HTTP answer median {statistics.median(answered):.1f} ms "
                      f"(max {max(answered):.1f}) over {KILLS}", file=sys.stderr)
                self.assertEqual(self.ctsd.instances[key].loader.pid, loader)
                self.assertLess(statistics.median(answered), 500)
        loaders = [inst.loader.pid for inst in self.ctsd.instances.values()]
        self.assertEqual(sorted(self.imports()), sorted(loaders), "one import per loader, none per worker")

    def test_workers_are_ctsds_children_in_their_own_group_with_their_environment(self):
        for cls in CLASSES:
            with self.subTest(worker_class=cls):
                key = f"e-{cls}"
                port = self.start(2, cls, key=key, extra_env={"SCRIPT_NAME": "/JO"})
                loader = self.ctsd.instances[key].loader.pid
                for w in self.ctsd.workers(key):
                    self.assertEqual(emulated_ctsd.parent_of(w.pid), os.getpid())
                    self.assertEqual(os.getpgid(w.pid), w.pid)
                    self.assertNotEqual(w.pid, loader)
                status, body = get(port, "/JO/api/")
                self.assertEqual(status, 200)
                data = json.loads(body)
                self.assertEqual((data["script_name"], data["path"]), ("/JO", "/api/"))
                self.assertEqual(data["listen_pid"], str(data["pid"]))
                self.assertTrue(data["worker"].startswith(f"{os.getpid()}:{key}:w"), data["worker"])
                self.assertEqual(data["ppid"], os.getpid())

    def test_output_reaches_each_workers_pipes_in_whole_lines(self):
        port = self.start(2, CLASSES[0], key="out")
        for _ in range(20):
            self.assertEqual(get(port, "/print")[0], 200)
        self.ctsd.stop()
        lines = [(o, s, t) for o, s, t in self.ctsd.lines if o.startswith("out/w")]
        out = [t for o, s, t in lines if s == "stdout" and t.startswith("line from")]
        err = [t for o, s, t in lines if s == "stderr" and t.startswith("error line from")]
        self.assertEqual((len(out), len(err)), (20, 20), lines)
        for o, s, t in lines:
            if t.startswith("line from"):
                self.assertEqual(len(t.split(": ", 1)[1]), 200)
                self.assertEqual(s, "stdout")

    def test_idle_stack_does_not_wake_up(self):
        for cls in CLASSES:
            with self.subTest(worker_class=cls):
                key = f"i-{cls}"
                port = self.start(2, cls, key=key)
                self.assertEqual(get(port)[0], 200)
                pids = [self.ctsd.instances[key].loader.pid] + [w.pid for w in self.ctsd.workers(key)]
                time.sleep(0.5)
                s0 = switches(pids)
                time.sleep(3)
                woke = switches(pids) - s0
                print(f"\n{cls}: {woke} context switches of the loader and 2 workers in 3 idle s",
                      file=sys.stderr)
                self.assertLessEqual(woke, 2)

    def test_sigterm_finishes_the_request_in_hand(self):
        for cls in CLASSES:
            with self.subTest(worker_class=cls):
                key = f"s-{cls}"
                port = self.start(1, cls, key=key)
                w = self.ctsd.workers(key)[0]
                result = {}
                th = threading.Thread(target=lambda: result.update(r=get(port, "/slow?0.6")))
                th.start()
                time.sleep(0.2)
                with self.ctsd.lock:
                    w.state = "stopping"  # not replaced: ctsd stopped it
                    os.kill(w.pid, signal.SIGTERM)
                th.join(10)
                self.assertEqual(result["r"][0], 200)
                self.ctsd.wait(lambda: w.status is not None, 10, "the worker's exit")
                self.assertEqual(os.waitstatus_to_exitcode(w.status), 0)

    def test_a_request_over_the_timeout_is_cut_and_its_worker_replaced(self):
        for cls in [c for c in CLASSES if c != "gthread"]:
            with self.subTest(worker_class=cls):
                key = f"t-{cls}"
                port = self.start(1, cls, key=key, extra_args=["--timeout", "0.3"])
                w = self.ctsd.workers(key)[0]
                t0 = time.monotonic()
                self.assertEqual(get(port, "/slow?3")[0], 500)
                self.assertLess(time.monotonic() - t0, 2)
                self.ctsd.wait(lambda: w.status is not None, 10, "the worker's exit")
                self.assertEqual(os.waitstatus_to_exitcode(w.status), 124)
                self.assertEqual(get(port, "/")[0], 200)  # served by its replacement
                err = "\n".join(t for o, s, t in self.ctsd.lines if o == f"{key}/{w.wid}")
                self.assertIn("request timeout after 0.3 s", err)

    def test_application_that_cannot_import_fails_the_loader_with_its_traceback(self):
        with self.assertRaises(emulated_ctsd.Failed) as cm:
            self.start(2, CLASSES[0], app="broken_app:application", key="broken")
        self.assertIn("loader exit 4", str(cm.exception))
        self.assertIn("Traceback", str(cm.exception))
        self.assertIn("ImportError: broken deploy", str(cm.exception))
        stderr = "\n".join(t for o, s, t in self.ctsd.lines if o.startswith("broken/") and s == "stderr")
        self.assertIn("ImportError: broken deploy", stderr)
        self.assertEqual(self.ctsd.workers("broken"), [])

    def test_rolling_restart_loses_no_request_and_a_broken_one_keeps_the_old_workers(self):
        for cls in CLASSES:
            with self.subTest(worker_class=cls):
                key = f"r-{cls}"
                port = self.start(3, cls, key=key)
                old_loader = self.ctsd.instances[key].loader.pid
                old = {w.pid for w in self.ctsd.workers(key)}
                counts = {"ok": 0, "failed": 0, "errors": []}
                stop = threading.Event()

                def loop():
                    while not stop.is_set():
                        try:
                            status = get(port, "/", timeout=10)[0]
                        except OSError as e:
                            status = repr(e)
                        counts["ok" if status == 200 else "failed"] += 1
                        if status != 200:
                            counts["errors"].append((time.monotonic(), status))

                th = threading.Thread(target=loop)
                th.start()
                try:
                    time.sleep(0.3)
                    self.ctsd.restart(key)
                    self.started.update(self.ctsd.live_pids())
                    time.sleep(0.3)
                finally:
                    stop.set()
                    th.join()
                self.assertEqual(counts["failed"], 0, counts)
                self.assertGreater(counts["ok"], 10)
                new = {w.pid for w in self.ctsd.workers(key)}
                self.assertFalse(new & old)
                self.assertEqual(len(new), 3)
                self.assertFalse(emulated_ctsd.alive(old_loader), "the old loader exited")

                # The code on disk breaks: the restart fails, with the error, and the workers
                # of the good code keep serving.
                loader = self.ctsd.instances[key].loader.pid
                self.ctsd.instances[key].argv[-1] = "broken_app:application"
                with self.assertRaises(emulated_ctsd.Failed) as cm:
                    self.ctsd.restart(key)
                self.assertIn("ImportError: broken deploy", str(cm.exception))
                self.assertEqual({w.pid for w in self.ctsd.workers(key)}, new)
                self.assertEqual(self.ctsd.instances[key].loader.pid, loader)
                self.assertTrue(emulated_ctsd.alive(loader))
                for _ in range(10):
                    self.assertEqual(get(port)[0], 200)

    def test_instances_share_one_root_that_imports_the_libraries(self):
        """Two instances' loaders forked from one root: each imports the application (the root
        only the libraries of the module list), serves with its own environment, restarts on
        its own from a new root, and a broken restart keeps its workers."""
        cache = os.path.join(self.dir, "modules")
        with open(cache, "w") as f:
            f.write("json\nhttp.server\nno_such_module_at_all\n")
        ports = {key: free_port() for key in ("a", "b")}
        base = dict(os.environ, COUNT_FILE=self.count_file)
        argv = ["--worker-class", CLASSES[0], "--module-cache", cache, "counting_app:application"]
        specs = [{"key": key, "port": port, "workers": 2, "argv": argv,
                  "env": dict(base, CTS_INSTANCE=key)} for key, port in ports.items()]
        self.ctsd.start_shared(specs, argv, base, APPS)  # the root's command is the loaders'
        self.started.update(self.ctsd.live_pids())
        self.assertEqual(self.ctsd.roots, [], "the root exits once the loaders are loaded")
        loaders = {key: self.ctsd.instances[key].loader.pid for key in ports}
        self.assertEqual(sorted(self.imports()), sorted(loaders.values()))
        for key, port in ports.items():
            data = json.loads(get(port, "/")[1])
            self.assertEqual(data["instance"], key)
            self.assertEqual(data["ppid"], os.getpid())
            self.assertEqual(emulated_ctsd.parent_of(loaders[key]), os.getpid())
        with open(cache) as f:
            cached = f.read().split()
        self.assertIn("json", cached)
        self.assertIn("http.client", cached)
        self.assertNotIn("counting_app", cached)
        self.assertNotIn("no_such_module_at_all", cached)

        self.ctsd.restart("a")
        self.started.update(self.ctsd.live_pids())
        self.assertNotEqual(self.ctsd.instances["a"].loader.pid, loaders["a"])
        self.assertEqual(self.ctsd.instances["b"].loader.pid, loaders["b"])
        self.assertEqual(json.loads(get(ports["a"], "/")[1])["instance"], "a")
        argv, env = self.ctsd.instances["b"].shared  # the root's command is the loaders'
        self.ctsd.instances["b"].shared = ([*argv[:-1], "broken_app:application"], env)
        with self.assertRaises(emulated_ctsd.Failed) as cm:
            self.ctsd.restart("b")
        self.assertIn("ImportError: broken deploy", str(cm.exception))
        self.assertEqual(json.loads(get(ports["b"], "/")[1])["instance"], "b")
        self.assertEqual(self.ctsd.roots, [])

    def test_warm_up_requests_run_in_the_loader_and_a_failing_one_is_not_fatal(self):
        port = self.start(1, CLASSES[0], key="warm", extra_args=["--warm", "/warm", "--warm-times", "3"])
        loader = self.ctsd.instances["warm"].loader.pid
        with open(self.count_file + ".warm") as f:
            self.assertEqual(f.read().split(), [str(loader)] * 3)
        self.assertEqual(get(port)[0], 200)
        port = self.start(1, CLASSES[0], key="warmfail", extra_args=["--warm", "/fail"])
        self.assertEqual(get(port)[0], 200)
        stderr = "\n".join(t for o, s, t in self.ctsd.lines if o.startswith("warmfail/loader"))
        self.assertIn("RuntimeError: this path fails", stderr)

    def test_loader_exits_at_end_of_file_and_its_workers_stay(self):
        port = self.start(2, CLASSES[0], key="eof")
        ld = self.ctsd.instances["eof"].loader
        with self.ctsd.lock:
            self.ctsd._close_channel(ld)
        self.ctsd.wait(lambda: ld.status is not None, 10, "the loader's exit")
        self.assertEqual(os.waitstatus_to_exitcode(ld.status), 0)
        self.assertEqual(get(port)[0], 200)
        self.assertEqual(len(self.ctsd.workers("eof")), 2)

if __name__ == "__main__":
    unittest.main()
