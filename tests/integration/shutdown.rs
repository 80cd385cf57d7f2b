//! SIGTERM/SIGINT: every worker stopped, nothing outlives ctsd, the socket file removed.

use crate::util::*;
use nix::sys::signal::Signal;

#[test]
fn sigterm_stops_every_worker_and_exits_0() {
    let mut d = Daemon::start(three(), "");
    let mut pids = std::collections::BTreeSet::new();
    for k in ["turkey", "iraq", "jordan"] {
        pids.extend(d.wait_running(k));
    }
    assert_eq!(pids.len(), 6);
    let status = d.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    for pid in pids {
        assert!(!pid_alive(pid), "worker {pid} outlived ctsd");
    }
    assert!(!d.socket.exists(), "control socket removed");
    let log = d.log("jordan");
    assert!(
        log.contains("stopped (exited with status 0)"),
        "graceful stop logged: {log}"
    );
}

#[test]
fn sigint_works_like_sigterm() {
    let mut d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let pids = d.wait_running("jordan");
    assert_eq!(d.signal_and_wait(Signal::SIGINT).code(), Some(0));
    assert!(pids.iter().all(|p| !pid_alive(*p)));
}

#[test]
fn a_worker_ignoring_sigterm_is_killed_after_stop_timeout() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "command: {}, stop_timeout: 1s",
        demo(&["--ignore-sigterm"])
    ));
    let mut d = Daemon::start(vec![inst], "");
    let pids = d.wait_running("jordan");
    let status = d.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    for pid in pids {
        assert!(!pid_alive(pid), "worker {pid} survived");
    }
    assert!(
        d.log("jordan")
            .contains("did not stop within 1s; sent SIGKILL"),
        "{}",
        d.log("jordan")
    );
}

#[test]
fn a_second_sigterm_kills_at_once() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "command: {}, stop_timeout: 1h",
        demo(&["--ignore-sigterm"])
    ));
    let mut d = Daemon::start(vec![inst], "");
    let pids = d.wait_running("jordan");
    let ctsd = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(ctsd, Signal::SIGTERM).expect("first SIGTERM");
    // The first one is being handled: status shows jordan stopping, its worker hanging on.
    assert!(wait_until(WAIT, || d.instance("jordan")["state"] == "stopping"));
    let out = d.ctl(&["restart", "jordan"]);
    assert_eq!(
        out.status.code(),
        Some(cts_proto::exit_codes::SHUTTING_DOWN.into()),
        "no restart while shutting down"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("shutting down"));
    let status = d.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    assert!(pids.iter().all(|p| !pid_alive(*p)));
}

#[test]
fn sigkill_of_ctsd_takes_the_workers_with_it() {
    let mut d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let pids = d.wait_running("jordan");
    d.signal_and_wait(Signal::SIGKILL);
    assert!(
        wait_until(WAIT, || pids.iter().all(|p| !pid_alive(*p))),
        "the parent-death signal killed every worker"
    );
}
