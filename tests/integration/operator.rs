//! What operators trip over: `status` as a verdict for scripts, and the CLI's own papercuts.

use crate::util::*;
use cts_proto::exit_codes;

#[test]
fn status_exits_with_a_verdict_and_quiet_prints_nothing() {
    let crashing = Inst::new("iraq", "Iraq", "/IQ", "IQD").with(&format!(
        "command: {}, restart: {{crash_loop: {{restarts: 1, within: 1m}}}}",
        demo(&["--crash-at-start"])
    ));
    let d = Daemon::start(
        vec![Inst::new("jordan", "Jordan", "/JO", "JOD"), crashing],
        "",
    );
    d.wait_running("jordan");
    let code = |args: &[&str]| d.ctl(args).status.code();

    let all_good = d.ctl(&["status", "jordan"]);
    assert_eq!(all_good.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&all_good.stdout).contains("jordan"));

    assert!(
        wait_until(WAIT, || d.instance("iraq")["state"] == "failing"),
        "iraq fails"
    );
    let quiet = d.ctl(&["status", "--quiet"]);
    assert_eq!(quiet.status.code(), Some(exit_codes::FAILING.into()));
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{quiet:?}"
    );
    assert_eq!(code(&["status"]), Some(exit_codes::FAILING.into()));
    // The JSON document carries the states itself.
    assert_eq!(code(&["status", "--json"]), Some(0));

    let out = d.ctl(&["stop", "iraq"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(code(&["status", "-q"]), Some(exit_codes::STOPPED.into()));
    assert_eq!(code(&["status", "-q", "jordan"]), Some(0));
}
