//! Preload mode with the real programs: ctsd runs `python -m cts_preload app:application` from
//! the e2e virtualenv (gunicorn's sync worker class, without gunicorn's arbiter) as each
//! instance's loader, and the workers it forks. The application records every import of
//! itself, so a replacement forked from the loaded parent (no new import) is told apart from a
//! new interpreter.

use super::*;
use serde_json::Value;

/// The test application, version `version`; `broken` makes its import fail.
fn write_app(dir: &Path, version: &str, broken: bool) {
    let fail = if broken {
        "raise RuntimeError('boom: this release cannot be imported')\n"
    } else {
        ""
    };
    let app = format!(
        r#"import json, os
VERSION = "{version}"
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imports.log"), "a") as f:
    f.write("%d %s\n" % (os.getpid(), VERSION))
LOADED_BY = os.getpid()
{fail}
def application(environ, start_response):
    body = json.dumps({{"pid": os.getpid(), "loaded_by": LOADED_BY, "version": VERSION,
                       "instance": os.environ.get("CTS_INSTANCE")}}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"#
    );
    std::fs::write(dir.join("app.py"), app).expect("write app.py");
}

fn imports(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("imports.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// ctsd with one preload instance `jordan` of `workers` workers on the app in `app_dir`.
fn preload_config(dir: &Path, app_dir: &Path, port: u16, workers: u32) -> PathBuf {
    let env = setup();
    let yaml = format!(
        "ctsd:\n  socket: {dir}/ctsd.sock\n  log_dir: {dir}/log\n  bind: 127.0.0.1\n\
         defaults:\n  workers: {workers}\n  preload: true\n  \
         command: [{python}, -m, cts_preload, \"app:application\"]\n  \
         env: {{PYTHONPATH: {pythonpath}, PYTHONDONTWRITEBYTECODE: \"1\"}}\n  cwd: {app}\n  ready: {{timeout: 30s}}\n  \
         stop_timeout: 10s\n\
         instances:\n  jordan: {{name: Jordan, prefix: /JO, currency: JOD, port: {port}}}\n",
        dir = dir.display(),
        python = env["PYTHON"],
        pythonpath = repo().join("python").display(),
        app = app_dir.display(),
    );
    let path = dir.join("ctsd.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// SIGKILLs worker `victim` of jordan and waits until `workers` are ready again without it.
fn kill_and_wait(config: &Path, victim: u32, workers: usize) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill a worker");
    wait_until("a replacement is ready", || {
        let now = ready_pids(config, "jordan");
        now.len() == workers && !now.contains(&victim)
    });
}

fn answer(port: u16) -> Value {
    get_json(port, "/JO/")
}

/// A client looping on `port` until stopped: answered, failures.
struct Loop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Loop {
    fn start(port: u16) -> Loop {
        let (stop, ok) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, o) = (stop.clone(), ok.clone());
        let thread = std::thread::spawn(move || {
            let mut failed = Vec::new();
            let end = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                match get(port, "/JO/") {
                    Ok((200, _, _)) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((status, head, _)) => failed.push(format!("{status}: {head}")),
                    Err(e) => failed.push(e),
                }
            }
            failed
        });
        Loop {
            stop,
            ok,
            thread: Some(thread),
        }
    }

    fn wait_for_more(&self, n: u64) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        wait_until("the client loop goes on", || {
            self.ok.load(Ordering::Relaxed) >= target
        });
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self
            .thread
            .take()
            .map(|t| t.join().expect("client loop"))
            .unwrap_or_default();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_killed_preloaded_worker_is_forked_again_from_the_loaded_parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    std::fs::create_dir(&app).expect("mkdir");
    write_app(&app, "v1", false);
    let port = free_port();
    let config = preload_config(dir.path(), &app, port, 2);
    let _ctsd = start_ctsd(&config, dir.path());
    let first = answer(port);
    let loader = first["loaded_by"].as_u64().expect("loaded_by");
    assert_eq!(first["instance"], "jordan");
    // The loader's import (and, on the very first start, the one that lists the modules the
    // preload root imports).
    let imported = imports(&app).len();
    assert!(
        imported == 1 || imported == 2,
        "imports: {:?}",
        imports(&app)
    );
    let before = ready_pids(&config, "jordan");
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(
        !before.contains(&(loader as u32)),
        "the loader serves itself"
    );

    for round in 0..5 {
        let victim = ready_pids(&config, "jordan")[0];
        kill_and_wait(&config, victim, 2);
        let replacement: Vec<u32> = ready_pids(&config, "jordan")
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        assert!(!replacement.is_empty(), "round {round}");
        // Every answer, the replacement's included, comes from a fork of the same loader.
        for _ in 0..20 {
            let a = answer(port);
            assert_eq!(a["loaded_by"].as_u64(), Some(loader), "{a}");
        }
    }
    assert_eq!(
        imports(&app).len(),
        imported,
        "a replacement imported the application again: {:?}",
        imports(&app)
    );
    let restarts = status_of(&config, "jordan")["restarts"].as_u64();
    assert_eq!(restarts, Some(5));

    // Across `ctsctl upgrade` the loader is handed over too: a worker killed afterwards is
    // still forked from it.
    let out = ctsctl(&config).arg("upgrade").output().expect("upgrade");
    assert!(
        out.status.success(),
        "upgrade: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let victim = ready_pids(&config, "jordan")[0];
    kill_and_wait(&config, victim, 2);
    for _ in 0..20 {
        let a = answer(port);
        assert_eq!(a["loaded_by"].as_u64(), Some(loader), "{a}");
    }
    assert_eq!(imports(&app).len(), imported, "{:?}", imports(&app));
    // The loader came from the preload root (which imported the libraries for it).
    let stderr = std::fs::read_to_string(dir.path().join("ctsd.stderr")).unwrap_or_default();
    assert!(stderr.contains("forked by the preload root"), "{stderr}");
}

#[test]
fn a_preload_restart_loads_new_code_without_a_failed_request_and_refuses_code_that_cannot_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    std::fs::create_dir(&app).expect("mkdir");
    write_app(&app, "v1", false);
    let port = free_port();
    let config = preload_config(dir.path(), &app, port, 3);
    let _ctsd = start_ctsd(&config, dir.path());
    assert_eq!(answer(port)["version"], "v1");
    let imported = imports(&app).len();

    // New code, under a client loop.
    let clients = Loop::start(port);
    clients.wait_for_more(50);
    write_app(&app, "v2", false);
    let out = ctsctl(&config)
        .args(["restart", "jordan"])
        .output()
        .expect("restart");
    assert!(
        out.status.success(),
        "restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    clients.wait_for_more(50);
    let (ok, failed) = clients.finish();
    eprintln!(
        "preload: rolling restart onto v2 under load: {ok} requests, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    for _ in 0..20 {
        assert_eq!(answer(port)["version"], "v2");
    }
    let loads = imports(&app);
    assert_eq!(
        loads.len(),
        imported + 1,
        "one import for the new loader: {loads:?}"
    );
    let serving = ready_pids(&config, "jordan");

    // Code that cannot be imported: the restart fails with the error, the old workers serve.
    let clients = Loop::start(port);
    clients.wait_for_more(50);
    write_app(&app, "v3", true);
    let out = ctsctl(&config)
        .args(["restart", "jordan"])
        .output()
        .expect("restart");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "a restart onto broken code succeeded"
    );
    assert!(
        said.contains("boom: this release cannot be imported"),
        "the error is not shown: {said}"
    );
    clients.wait_for_more(50);
    let (ok, failed) = clients.finish();
    eprintln!(
        "preload: restart onto code that cannot import: {ok} requests, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert_eq!(
        ready_pids(&config, "jordan"),
        serving,
        "the old workers moved"
    );
    for _ in 0..20 {
        assert_eq!(answer(port)["version"], "v2");
    }
    // And a crash is still replaced from the loader of the code that runs.
    let victim = serving[0];
    kill_and_wait(&config, victim, 3);
    for _ in 0..20 {
        assert_eq!(answer(port)["version"], "v2");
    }
}

#[test]
fn a_loader_that_hangs_on_import_is_stopped_at_the_ready_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    std::fs::create_dir(&app).expect("mkdir");
    // Imports forever (a database that never answers, say).
    std::fs::write(
        app.join("app.py"),
        "import time\nwhile True:\n    time.sleep(1)\n",
    )
    .expect("write app.py");
    let port = free_port();
    let config = preload_config(dir.path(), &app, port, 2);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("timeout: 30s", "timeout: 3s")).expect("config");
    // ctsd settles once the loader missed its deadline (the module listing imports the
    // application too, and misses the same deadline first).
    let mut ctsd = start_ctsd(&config, dir.path());
    let mut last = Value::Null;
    wait_until("jordan reports why it does not run", || {
        last = status_of(&config, "jordan");
        last["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("not ready within 3s"))
    });
    assert_ne!(last["state"], "running", "{last}");
    // And it stops promptly: nothing waits for a loader that never answers.
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ctsd.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if let Ok(Some(_)) = ctsd.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        matches!(ctsd.child.try_wait(), Ok(Some(_))),
        "ctsd did not stop within {WAIT:?}"
    );
    eprintln!(
        "preload: a loader hanging on import: ctsd stopped {:?} after SIGTERM",
        t.elapsed()
    );
}
