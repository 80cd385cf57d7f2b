//! Crash restarts: replacement, backoff, crash loop, isolation between instances.

use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn kill_9_one_worker_is_replaced_and_no_connection_is_refused() {
    let d = Daemon::start(three(), "");
    let port = d.port("turkey");
    let before = d.wait_running("turkey");
    let looper = Looper::start(port);
    looper.wait_for_more(20);
    let victim = *before.iter().next().expect("a worker");
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill -9");
    let mut after = before.clone();
    assert!(
        wait_until(WAIT, || {
            after = d.pids("turkey");
            after.len() == 2 && !after.contains(&victim)
        }),
        "worker {victim} was not replaced: {after:?}"
    );
    d.wait_running("turkey");
    looper.wait_for_more(20);
    let stats = looper.finish();
    assert!(
        !stats.failures.contains(&Failure::Refused),
        "a connection was refused during the crash: {stats:?}"
    );
    let t = d.instance("turkey");
    assert_eq!(t["restarts"], 1);
    assert!(
        t["last_exit"].as_str().unwrap_or("").contains("SIGKILL"),
        "{t}"
    );
    // The other instances did not notice.
    assert_eq!(d.instance("iraq")["restarts"], 0);
}

#[test]
fn kill_9_every_worker_port_still_accepts_and_answers_again() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let port = d.port("jordan");
    let pids = d.wait_running("jordan");
    for pid in &pids {
        kill(Pid::from_raw(*pid as i32), Signal::SIGKILL).expect("kill -9");
    }
    // Right away, with no worker at all: the kernel still accepts (the backlog) ...
    let v =
        get(port, "/").expect("the request waits in the backlog and is answered by a new worker");
    assert_eq!(v["instance"], "jordan");
    assert!(!pids.contains(&(v["pid"].as_u64().unwrap_or(0) as u32)));
    let now = d.wait_running("jordan");
    assert!(now.is_disjoint(&pids));
}

#[test]
fn a_worker_crashing_at_start_makes_its_instance_failing_and_others_keep_serving() {
    let mut insts = three();
    insts[1] = insts[1]
        .clone()
        .with(&format!("command: {}", demo(&["--crash-at-start"])));
    let d = Daemon::start(insts, "");
    let mut iraq = serde_json::Value::Null;
    assert!(
        wait_until(WAIT, || {
            iraq = d.instance("iraq");
            iraq["state"] == "failing"
        }),
        "iraq never became failing: {iraq}\n{}",
        d.stderr()
    );
    assert!(iraq["restarts"].as_u64().unwrap_or(0) > 5, "{iraq}");
    assert!(
        iraq["last_exit"]
            .as_str()
            .unwrap_or("")
            .contains("exited with status 3"),
        "{iraq}"
    );
    for key in ["turkey", "jordan"] {
        d.wait_running(key);
        let v = get(d.port(key), "/").expect("the other instances serve");
        assert_eq!(v["instance"], key);
        assert_eq!(d.instance(key)["restarts"], 0);
    }
    let log = d.log("iraq");
    assert!(
        log.contains("crashing at start"),
        "the worker's own stderr is in its log: {log}"
    );
    assert!(
        log.contains("failing:"),
        "ctsd's event is in the log: {log}"
    );
    let text = String::from_utf8_lossy(&d.ctl(&["status"]).stdout).to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("iraq") && l.contains("failing") && l.contains("status 3")),
        "{text}"
    );
}

#[test]
fn crash_after_n_requests_is_replaced_without_failed_requests() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 2, command: {}",
        demo(&["--crash-after", "30"])
    ));
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    d.wait_running("jordan");
    let looper = Looper::start(port);
    // 150 requests: each worker crashes after its 30th answer, so several generations serve.
    looper.wait_for_more(150);
    let stats = looper.finish();
    assert!(
        stats.failures.is_empty(),
        "requests failed while workers exited: {:?}",
        stats.failures
    );
    assert!(
        stats.pids.len() >= 3,
        "workers were replaced: {:?}",
        stats.pids
    );
    assert!(d.instance("jordan")["restarts"].as_u64().unwrap_or(0) >= 2);
}
