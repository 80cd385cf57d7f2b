//! scale, signal, reopen-logs, shutdown, completions.

use crate::util::*;

#[test]
fn scale_adds_and_drains_workers_without_touching_the_others() {
    let d = Daemon::start(three(), "");
    let before = d.wait_running("jordan");
    let turkey = d.wait_running("turkey");
    let out = d.ctl(&["scale", "jordan", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = d.wait_running("jordan");
    assert_eq!(up.len(), 4);
    assert!(
        before.is_subset(&up),
        "the running workers were kept: {before:?} ⊄ {up:?}"
    );
    let out = d.ctl(&["scale", "jordan", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut down = d.pids("jordan");
    assert!(wait_until(WAIT, || {
        down = d.pids("jordan");
        down.len() == 1
    }));
    assert!(
        up.is_superset(&down),
        "draining keeps a running worker: {down:?}"
    );
    assert_eq!(d.instance("jordan")["desired_workers"], 1);
    assert_eq!(
        d.instance("jordan")["restarts"],
        0,
        "drained workers are not crashes"
    );
    assert_eq!(d.pids("turkey"), turkey);
    assert!(get(d.port("jordan"), "/").is_ok());

    // A number out of range is a usage error, like one that is no number at all.
    let out = d.ctl(&["scale", "jordan", "0"]);
    assert_eq!(out.status.code(), Some(2), "0 workers is refused");
    let out = d.ctl(&["scale", "jordan", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    let out = d.ctl(&["scale", "jordn", "2"]);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn signal_reaches_every_worker_of_the_instance_only() {
    let d = Daemon::start(three(), "");
    let jordan = d.wait_running("jordan");
    let iraq = d.wait_running("iraq");
    // TERM makes the demo workers exit: ctsd sees them go and replaces them.
    let out = d.ctl(&["signal", "jordan", "SIGTERM"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent SIGTERM to 2 workers"));
    assert!(wait_until(WAIT, || d.pids("jordan").is_disjoint(&jordan)));
    d.wait_running("jordan");
    assert_eq!(d.pids("iraq"), iraq);
    let out = d.ctl(&["signal", "jordan", "FROB"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown signal is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("USR1"));
    let out = d.ctl(&["signal", "jordan"]);
    assert_eq!(out.status.code(), Some(2), "no signal named");
}

#[test]
fn reopen_logs_starts_a_new_file_after_an_external_move() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    let dir = d.log_dir.join("jordan");
    std::fs::rename(dir.join("output.log"), dir.join("output.log.1")).expect("logrotate's mv");
    let out = d.ctl(&["reopen-logs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Something to log: a request (the demo worker writes an access line).
    assert!(wait_until(WAIT, || {
        let _ = get(d.port("jordan"), "/after-reopen");
        d.log("jordan").contains("/after-reopen")
    }));
    assert!(!std::fs::read_to_string(dir.join("output.log.1"))
        .unwrap_or_default()
        .contains("/after-reopen"));
}

#[test]
fn shutdown_stops_ctsd_like_sigterm() {
    let mut d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let pids = d.wait_running("jordan");
    let out = d.ctl(&["shutdown"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = d.wait_exit(WAIT).expect("ctsd exits");
    assert_eq!(st.code(), Some(0));
    assert!(pids.iter().all(|p| !pid_alive(*p)));
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(ctsctl_bin())
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("ctsctl") && text.contains("restart"),
            "{shell}: {text}"
        );
    }
}
