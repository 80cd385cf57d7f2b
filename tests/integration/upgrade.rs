//! `ctsctl upgrade`: ctsd execs a new binary in place (here the same one, or a wrapper of it)
//! and the new process takes over every worker, pipe, listener and the control socket. Under
//! a client loop on every port and a `status` loop on the control socket: no request fails,
//! no worker restarts, a line half written before the upgrade is completed after it, and the
//! workers are supervised as before (a crash is replaced, SIGTERM stops them all).

use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// turkey with a celery stand-in, a singleton beat holding `lock`, and `partial`, which writes
/// half a line, waits for `go` to exist, then finishes the line.
fn programs(lock: &Path, go: &Path) -> String {
    let celery = demo(&["--no-socket", "--tick-ms", "100"]);
    let beat = demo(&["--no-socket", "--lock", &lock.display().to_string()]);
    let script = format!(
        "printf 'first half'; while [ ! -e {} ]; do sleep 0.05; done; printf ' second half\\n'; exec sleep 600",
        go.display()
    );
    format!(
        "programs: {{celery: {{command: {celery}}}, beat: {{command: {beat}, singleton: true}}, \
         partial: {{command: {}, ready: {{notify: false, after: 100ms}}}}}}",
        yaml_list(&["sh", "-c", &script])
    )
}

/// Every pool's (name → worker pids), and its restart counter.
fn pools(d: &Daemon) -> BTreeMap<String, (Vec<u64>, u64)> {
    let mut out = BTreeMap::new();
    for inst in d.status()["instances"].as_array().into_iter().flatten() {
        let key = inst["key"].as_str().unwrap_or_default().to_owned();
        let programs = inst["programs"].as_array().cloned().unwrap_or_default();
        let named =
            std::iter::once((key.clone(), inst.clone())).chain(programs.into_iter().map(|p| {
                (
                    format!("{key}:{}", p["name"].as_str().unwrap_or_default()),
                    p,
                )
            }));
        for (name, pool) in named {
            let pids = pool["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w["pid"].as_u64())
                .collect();
            out.insert(name, (pids, pool["restarts"].as_u64().unwrap_or(0)));
        }
    }
    out
}

/// `ctsctl status` in a loop: how many answered, the failures, the slowest answer.
struct StatusLoop {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u32, Vec<String>, Duration)>>,
}

impl StatusLoop {
    fn start(socket: &Path) -> StatusLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, socket) = (stop.clone(), socket.to_owned());
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
            let end = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                let t = Instant::now();
                let out = std::process::Command::new(ctsctl_bin())
                    .args(["--socket".as_ref(), socket.as_os_str(), "status".as_ref()])
                    .env_remove("CTSD_SOCKET")
                    .output()
                    .expect("run ctsctl");
                slowest = slowest.max(t.elapsed());
                if out.status.success() {
                    ok += 1;
                } else {
                    failed.push(format!(
                        "{}: {}{}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            (ok, failed, slowest)
        });
        StatusLoop {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u32, Vec<String>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("status loop"))
            .unwrap_or_default()
    }
}

impl Drop for StatusLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_all_ready(d: &Daemon) {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = d.status();
        last["instances"].as_array().into_iter().flatten().all(|i| {
            i["state"] == "running"
                && i["programs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|p| p["state"] == "running")
        })
    });
    assert!(ok, "not everything runs: {last:#}\n{}", d.stderr());
}

#[test]
fn an_upgrade_keeps_every_worker_pipe_and_request() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (lock, go) = (scratch.path().join("beat.lock"), scratch.path().join("go"));
    let turkey = Inst::new("turkey", "Turkey", "/TR", "TRY").with(&programs(&lock, &go));
    let jordan = Inst::new("jordan", "Jordan", "/JO", "JOD");
    let mut d = Daemon::start(vec![turkey, jordan], "");
    wait_all_ready(&d);
    let before = pools(&d);
    let ctsd = d.pid();
    let celery_log = d.log_dir.join("turkey/celery.log");
    let ticks = || {
        std::fs::read_to_string(&celery_log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let loops = [
        Looper::start(d.port("turkey")),
        Looper::start(d.port("jordan")),
    ];
    let status = StatusLoop::start(&d.socket);
    for l in &loops {
        l.wait_for_more(20);
    }

    let out = d.ctl(&["upgrade"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "upgrade failed: {said}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.stderr()
    );
    assert!(said.contains("taken over, none restarted"), "{said}");
    eprintln!("{}", said.trim());
    for l in &loops {
        l.wait_for_more(20);
    }
    let ticks_after = ticks();
    let (answered, failed, slowest) = status.finish();
    let stats: Vec<LoopStats> = loops.into_iter().map(Looper::finish).collect();
    eprintln!(
        "requests during the upgrade: {} ok, {} failed; status: {answered} ok, {} failed, slowest {slowest:?}",
        stats.iter().map(|s| s.ok).sum::<u64>(),
        stats.iter().map(|s| s.failures.len()).sum::<usize>(),
        failed.len()
    );
    for s in &stats {
        assert!(s.failures.is_empty(), "requests failed: {:?}", s.failures);
    }
    assert!(failed.is_empty(), "status failed: {failed:?}");

    // Same process, same workers, no restart.
    assert_eq!(d.pid(), ctsd);
    assert!(pid_alive(ctsd));
    assert_eq!(pools(&d), before, "{}", d.stderr());
    assert!(d.stderr().contains("took over from ctsd"), "{}", d.stderr());

    // The half line written before the upgrade is one line after it.
    std::fs::write(&go, "").expect("write go");
    let partial = d.log_dir.join("turkey/partial.log");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&partial)
            .unwrap_or_default()
            .contains("first half second half")),
        "partial.log: {:?}",
        std::fs::read_to_string(&partial)
    );
    // Output goes on being read.
    assert!(wait_until(WAIT, || ticks() > ticks_after + 3));

    // Supervised as before: a killed worker is replaced, a killed singleton too.
    let web = before["turkey"].0[0] as i32;
    kill(Pid::from_raw(web), Signal::SIGKILL).expect("kill a web worker");
    let beat = before["turkey:beat"].0[0] as i32;
    kill(Pid::from_raw(beat), Signal::SIGKILL).expect("kill beat");
    assert!(
        wait_until(WAIT, || {
            let now = pools(&d);
            now["turkey"].1 == 1
                && now["turkey"].0.len() == 2
                && !now["turkey"].0.contains(&(web as u64))
                && now["turkey:beat"].1 == 1
                && now["turkey:beat"].0.len() == 1
        }),
        "{:#?}\n{}",
        pools(&d),
        d.stderr()
    );
    wait_all_ready(&d);
    assert!(
        !Path::new(&format!("{}.overlap", lock.display())).exists(),
        "two beats were alive at once"
    );

    // A second upgrade, of workers the first one adopted.
    let again = pools(&d);
    let out = d.ctl(&["upgrade"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pools(&d), again);

    // And SIGTERM stops every one of them.
    let all: Vec<u64> = again.values().flat_map(|(p, _)| p.clone()).collect();
    assert!(d.signal_and_wait(Signal::SIGTERM).success());
    for pid in all {
        assert!(
            wait_until(WAIT, || !pid_alive(pid as u32)),
            "worker {pid} outlived ctsd"
        );
    }
}

#[test]
fn an_upgrade_that_cannot_happen_changes_nothing() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let before = d.wait_running("jordan");
    let refused = |args: &[&str], why: &str| {
        let out = d.ctl(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(why), "{args:?}: {err}");
        assert!(
            err.contains("nothing changed") || err.contains("kept running"),
            "{err}"
        );
        assert_eq!(d.pids("jordan"), before, "{args:?} moved a worker");
    };
    refused(
        &["upgrade", "--binary", "/nonexistent/ctsd"],
        "cannot run /nonexistent/ctsd",
    );
    refused(&["upgrade", "--binary", "/bin/true"], "did not answer");

    // The file says something else than what runs.
    let text = std::fs::read_to_string(&d.config).expect("config");
    std::fs::write(&d.config, text.replace("workers: 2", "workers: 3")).expect("write");
    refused(&["upgrade"], "differs from what runs");
    std::fs::write(&d.config, &text).expect("write");

    // A binary that passes the check and is gone when ctsd execs it: the exec fails, and this
    // ctsd takes its own handover back.
    let wrapper = d.dir.path().join("ctsd-vanishing");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nrm -f \"$0\"\nexec {} \"$@\"\n", ctsd_bin()),
    )
    .expect("write wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let looper = Looper::start(d.port("jordan"));
    looper.wait_for_more(10);
    refused(
        &["upgrade", "--binary", &wrapper.display().to_string()],
        "kept running",
    );
    looper.wait_for_more(10);
    let stats = looper.finish();
    assert!(stats.failures.is_empty(), "{:?}", stats.failures);
    // Still supervised.
    let one = *before.iter().next().expect("a worker");
    kill(Pid::from_raw(one as i32), Signal::SIGKILL).expect("kill");
    assert!(
        wait_until(WAIT, || {
            let now = d.pids("jordan");
            now.len() == 2 && !now.contains(&one)
        }),
        "{}",
        d.stderr()
    );
}
