//! `ctsctl reload [--dry-run]` and SIGHUP: exactly the instances whose configuration changed
//! are touched, each in the way its change needs; an invalid file changes nothing.

use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn four() -> Vec<Inst> {
    let mut v = three();
    v.push(Inst::new("egypt", "Egypt", "/EG", "EGP"));
    v
}

#[test]
fn reload_applies_a_plan_that_touches_only_what_changed() {
    let insts = four();
    let d = Daemon::start(insts.clone(), "");
    let before: std::collections::BTreeMap<&str, _> = ["turkey", "iraq", "jordan", "egypt"]
        .iter()
        .map(|k| (*k, d.wait_running(k)))
        .collect();
    let turkey_port = d.port("turkey");

    // turkey removed, iraq scaled, jordan's command changed, egypt unchanged, kuwait added.
    let kuwait = Inst::new("kuwait", "Kuwait", "/KW", "KWD");
    let mut new: Vec<Inst> = insts
        .into_iter()
        .filter(|i| i.key != "turkey")
        .map(|i| match i.key.as_str() {
            "iraq" => i.with("workers: 3"),
            "jordan" => i.with(&format!("command: {}", demo(&["--delay-ms", "1"]))),
            _ => i,
        })
        .collect();
    new.push(kuwait.clone());
    write_config(d.dir.path(), &new, "");

    let out = d.ctl(&["reload", "--dry-run"]);
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "iraq: scale (workers 2 → 3)",
        "jordan: rolling restart (command)",
        "egypt: none",
        "kuwait: start",
        "turkey: stop",
    ] {
        assert!(plan.contains(line), "plan lacks `{line}`:\n{plan}");
    }
    assert!(plan.contains("dry run"));
    assert_eq!(
        d.pids("turkey"),
        before["turkey"],
        "a dry run changes nothing"
    );

    let out = d.ctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.stderr()
    );
    let keys: Vec<String> = d.status()["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["key"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        ["iraq", "jordan", "egypt", "kuwait"],
        "new order, turkey gone"
    );
    assert!(
        matches!(get(turkey_port, "/"), Err(Failure::Refused)),
        "turkey's port is closed"
    );
    assert!(
        wait_until(WAIT, || before["turkey"].iter().all(|p| !pid_alive(*p))),
        "turkey's workers stopped"
    );

    let iraq = d.wait_running("iraq");
    assert_eq!(iraq.len(), 3);
    assert!(
        before["iraq"].is_subset(&iraq),
        "scaling kept iraq's workers"
    );
    assert!(
        d.wait_running("jordan").is_disjoint(&before["jordan"]),
        "jordan rolled"
    );
    assert_eq!(d.wait_running("egypt"), before["egypt"], "egypt untouched");
    d.wait_running("kuwait");
    assert_eq!(
        get(kuwait.port, "/").expect("kuwait serves")["currency"],
        "KWD"
    );
}

#[test]
fn an_invalid_file_is_rejected_with_its_errors_and_nothing_changes() {
    let insts = three();
    let d = Daemon::start(insts.clone(), "");
    let before: Vec<_> = ["turkey", "iraq", "jordan"]
        .iter()
        .map(|k| d.wait_running(k))
        .collect();
    let mut bad = insts;
    bad[2] = bad[2].clone().with("wokers: 3");
    bad[1].currency = "iqd".into();
    write_config(d.dir.path(), &bad, "");
    let out = d.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("instances.jordan.wokers") && err.contains("instances.iraq.currency"),
        "{err}"
    );
    assert!(err.contains("nothing changed"), "{err}");
    let after: Vec<_> = ["turkey", "iraq", "jordan"]
        .iter()
        .map(|k| d.pids(k))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn a_port_change_rebinds_and_rolls_onto_the_new_port() {
    let insts = vec![
        Inst::new("jordan", "Jordan", "/JO", "JOD"),
        Inst::new("iraq", "Iraq", "/IQ", "IQD"),
    ];
    let d = Daemon::start(insts.clone(), "");
    let before = d.wait_running("jordan");
    let iraq = d.wait_running("iraq");
    let old_port = d.port("jordan");
    let mut new = insts;
    new[0].port = free_port();
    write_config(d.dir.path(), &new, "");
    let out = d.ctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("jordan: rebind (port)"));
    let v = get(new[0].port, "/").expect("jordan answers on its new port");
    assert_eq!(v["instance"], "jordan");
    assert!(d.wait_running("jordan").is_disjoint(&before));
    assert!(
        wait_until(WAIT, || matches!(get(old_port, "/"), Err(Failure::Refused))),
        "the old port is closed once its workers are gone"
    );
    assert_eq!(d.pids("iraq"), iraq);
    assert_eq!(d.instance("jordan")["port"], new[0].port);
}

#[test]
fn sighup_reloads_too() {
    let insts = vec![Inst::new("jordan", "Jordan", "/JO", "JOD")];
    let d = Daemon::start(insts.clone(), "");
    d.wait_running("jordan");
    write_config(d.dir.path(), &[insts[0].clone().with("workers: 3")], "");
    kill(Pid::from_raw(d.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    assert!(wait_until(WAIT, || d.instance("jordan")["desired_workers"] == 3));
    assert_eq!(d.wait_running("jordan").len(), 3);
}

#[test]
fn reload_after_a_scale_returns_to_the_files_workers() {
    let mut insts = three();
    insts[1] = insts[1].clone().with("workers: 2");
    let d = Daemon::start(insts, "");
    let turkey = d.wait_running("turkey");
    assert_eq!(d.wait_running("iraq").len(), 2);

    let out = d.ctl(&["scale", "iraq", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scaled = d.wait_running("iraq");
    assert_eq!(scaled.len(), 4);
    assert_eq!(d.instance("iraq")["desired_workers"], 4);

    // The file still says 2: the daemon compares it with the 4 that run, not with the 2 it
    // was started with.
    let out = d.ctl(&["reload", "--dry-run"]);
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{plan}");
    for line in [
        "iraq: scale (workers 4 → 2)",
        "turkey: none",
        "jordan: none",
    ] {
        assert!(plan.contains(line), "plan lacks `{line}`:\n{plan}");
    }

    let out = d.ctl(&["reload"]);
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{plan}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.stderr()
    );
    assert!(plan.contains("iraq: scale (workers 4 → 2)"), "{plan}");
    assert_eq!(d.instance("iraq")["desired_workers"], 2);
    let mut down = d.pids("iraq");
    assert!(
        wait_until(WAIT, || {
            down = d.pids("iraq");
            down.len() == 2
        }),
        "iraq drained back to the file's 2: {down:?}"
    );
    assert!(scaled.is_superset(&down), "scaled back, not restarted");
    assert_eq!(d.pids("turkey"), turkey, "turkey untouched");

    // Now the daemon's copy and the file agree again.
    let out = d.ctl(&["reload", "--dry-run"]);
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(plan.contains("iraq: none"), "{plan}");
}
