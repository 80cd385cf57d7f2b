//! Per-instance logs: workers' output and ctsd's events, whole lines only.

use crate::util::*;
use std::collections::BTreeMap;

#[test]
fn output_of_flooding_workers_lands_whole_in_the_instance_log() {
    // Two workers each write 2 MB of numbered 100-byte lines at start, at full speed, into the
    // same file; no line may be split, lost or spliced.
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 2, command: {}",
        demo(&["--flood", "2000000"])
    ));
    let d = Daemon::start(vec![inst, Inst::new("iraq", "Iraq", "/IQ", "IQD")], "");
    let pids = d.wait_running("jordan");
    let complete = || {
        let log = d.log("jordan");
        pids.iter().all(|p| log.contains(&format!("{p} 19999 ")))
    };
    assert!(
        wait_until(WAIT, complete),
        "the flood did not reach the log"
    );
    let log = d.log("jordan");
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for line in log.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(pid), Some(seq), Some(pad)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(pid), Ok(seq)) = (pid.parse::<u32>(), seq.parse::<u64>()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        assert_eq!(
            line.len(),
            99,
            "a flood line was split or spliced: {line:?}"
        );
        assert!(pad.bytes().all(|b| b == b'x'), "{line:?}");
        let want = next.entry(pid).or_insert(0);
        assert_eq!(seq, *want, "worker {pid}: line lost or duplicated");
        *want += 1;
    }
    assert_eq!(
        next.values().copied().collect::<Vec<_>>(),
        vec![20_000, 20_000]
    );
    // Nothing of jordan's went to iraq.
    assert!(!d.log("iraq").contains(" 19999 x"));
}

#[test]
fn ctsd_events_about_the_instance_are_in_its_log() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let pids = d.wait_running("jordan");
    let victim = *pids.iter().next().expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    assert!(wait_until(WAIT, || d
        .log("jordan")
        .contains(&format!("pid {victim} killed by SIGKILL"))));
    let log = d.log("jordan");
    for p in &pids {
        assert!(
            log.contains(&format!("worker 0 pid {p} started"))
                || log.contains(&format!("worker 1 pid {p} started")),
            "{log}"
        );
    }
    assert!(log.contains("ctsd: worker"), "{log}");
    assert!(log.contains("restarting it now"), "{log}");
}

#[test]
fn a_last_line_without_newline_is_kept_when_a_worker_exits() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 1, command: {}",
        demo(&[
            "--crash-after",
            "1",
            "--partial-line",
            "last words without newline"
        ])
    ));
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    d.wait_running("jordan");
    assert!(get(port, "/").is_ok());
    assert!(
        wait_until(WAIT, || d
            .log("jordan")
            .contains("last words without newline\n")),
        "{}",
        d.log("jordan")
    );
}
