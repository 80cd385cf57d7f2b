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

#[test]
fn a_stopped_instance_refuses_connections_and_start_serves_again() {
    let d = Daemon::start(three(), "");
    d.wait_running("jordan");
    let port = d.port("jordan");
    assert!(get(port, "/").is_ok());
    let out = d.ctl(&["stop", "jordan"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(d.instance("jordan")["state"], "stopped");
    assert_eq!(d.instance("jordan")["listening"], false);
    // Refused at once, not left waiting in a backlog nobody accepts from.
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    let table = String::from_utf8_lossy(&d.ctl(&["status", "jordan"]).stdout).into_owned();
    assert!(table.contains(&format!("{port} closed")), "{table}");
    // The other instances keep their ports.
    assert!(get(d.port("iraq"), "/").is_ok());

    let out = d.ctl(&["start", "jordan"]);
    assert!(out.status.success(), "{out:?}");
    d.wait_running("jordan");
    assert_eq!(d.instance("jordan")["listening"], true);
    let answer = get(port, "/").expect("jordan serves again");
    assert_eq!(answer["instance"], "jordan");
    // A restart, unlike a stop, keeps the port: covered by the rolling-restart tests.
}

#[test]
fn a_scale_that_differs_from_the_file_is_shown() {
    let d = Daemon::start(three(), "");
    d.wait_running("iraq");
    let out = d.ctl(&["scale", "iraq", "3"]);
    assert!(out.status.success(), "{out:?}");
    d.wait_running("iraq");
    let iraq = d.instance("iraq");
    assert_eq!(iraq["desired_workers"], 3);
    assert_eq!(iraq["file_workers"], 2);
    assert!(d.instance("jordan").get("file_workers").is_none());
    let table = String::from_utf8_lossy(&d.ctl(&["status"]).stdout).into_owned();
    assert!(table.contains("3/3 (file: 2)"), "{table}");
    // Back to the file's number: no drift left to show.
    let out = d.ctl(&["scale", "iraq", "2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(d.instance("iraq").get("file_workers").is_none());
}

#[test]
fn a_misspelt_instance_gets_a_suggestion() {
    let d = Daemon::start(three(), "");
    let out = d.ctl(&["restart", "jordna"]);
    assert_eq!(out.status.code(), Some(exit_codes::UNKNOWN_INSTANCE.into()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown instance jordna (did you mean jordan?)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let out = d.ctl(&["status", "qwerty"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("did you mean"), "nothing close: {err}");
}

#[test]
fn bash_completes_instance_names_from_the_running_daemon() {
    let d = Daemon::start(three(), "");
    let out = d.ctl(&["list"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "turkey\niraq\njordan\n"
    );
    let script = format!(
        "source <(ctsctl completions bash)
         COMP_WORDS=(ctsctl --socket {socket} restart jo); COMP_CWORD=4
         _ctsctl_instances; echo \"${{COMPREPLY[*]}}\"
         COMP_WORDS=(ctsctl --socket {socket} status ''); COMP_CWORD=4
         _ctsctl_instances; echo \"${{COMPREPLY[*]}}\"",
        socket = d.socket.display()
    );
    let out = bash_with_ctsctl(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "jordan\nturkey iraq jordan\n", "{out:?}");
}

#[test]
fn start_up_errors_are_said_once_and_check_does_not_talk_of_starting() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let second = std::process::Command::new(ctsd_bin())
        .arg("--config")
        .arg(&d.config)
        .env_remove("CTSD_SOCKET")
        .output()
        .expect("a second ctsd");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(
        err.matches("another ctsd is already running").count(),
        1,
        "{err}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("ctsd.yaml");
    std::fs::write(&bad, "defaults: {command: [sh], wokers: 2}\n").expect("write");
    let check = std::process::Command::new(ctsd_bin())
        .args(["--check", "--config"])
        .arg(&bad)
        .output()
        .expect("ctsd --check");
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2));
    assert!(
        err.contains("is not valid (2 errors)") && !err.contains("nothing was started"),
        "{err}"
    );
    let run = std::process::Command::new(ctsd_bin())
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("ctsd");
    assert!(String::from_utf8_lossy(&run.stderr).contains("nothing was started"));
}

#[test]
fn a_restart_on_a_terminal_leaves_one_line() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED a_restart_on_a_terminal_leaves_one_line: no `script` to give ctsctl a terminal");
        return;
    }
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    let cmd = format!(
        "{} --socket {} restart jordan",
        ctsctl_bin(),
        d.socket.display()
    );
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    // What the terminal shows: \r moves to the start of the line, ESC[K erases from there.
    let mut screen: Vec<String> = vec![String::new()];
    let mut col = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let line = screen.last_mut().expect("a line");
        match c {
            '\r' => col = 0,
            '\n' => {
                screen.push(String::new());
                col = 0;
            }
            '\x1b' => {
                let _ = (chars.next(), chars.next()); // `[K`
                line.truncate(col);
            }
            c => {
                line.truncate(col);
                line.push(c);
                col += 1;
            }
        }
    }
    let shown: Vec<&String> = screen.iter().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(shown, ["jordan: 2 workers replaced"], "{text:?}");
}

#[test]
fn zsh_completes_instance_arguments_through_ctsctl_list() {
    let out = std::process::Command::new(ctsctl_bin())
        .args(["completions", "zsh"])
        .output()
        .expect("ctsctl completions zsh");
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("_ctsctl_instances() {"),
        "the helper is defined"
    );
    assert!(
        script.contains("Instance keys (e.g. jordan):_ctsctl_instances'"),
        "start/stop/restart complete instance names"
    );
    assert!(
        !script.contains("Instance key:_default'"),
        "no instance argument left out"
    );
    // The helper comes before the lines that register the completion function.
    let helper = script.find("_ctsctl_instances() {").unwrap_or(usize::MAX);
    let register = script.rfind("compdef _ctsctl ctsctl").unwrap_or(0);
    assert!(helper < register);
    if let Ok(zsh) = std::process::Command::new("zsh")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        let mut zsh = zsh;
        let _ = zsh.stdin.take().map(|mut s| s.write_all(script.as_bytes()));
        let status = zsh.wait().expect("zsh -n");
        assert!(status.success(), "zsh -n rejects the script");
    }
}

#[test]
fn a_stopped_instance_moved_by_a_reload_stays_closed_until_started() {
    let d = Daemon::start(three(), "");
    d.wait_running("jordan");
    assert!(d.ctl(&["stop", "jordan"]).status.success());
    let mut moved = d.instances.clone();
    moved[2].port = free_port();
    let new_port = moved[2].port;
    write_config(d.dir.path(), &moved, "");
    let out = d.ctl(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    let refused = std::net::TcpStream::connect(("127.0.0.1", new_port));
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "a stopped instance's new port must not accept connections nobody answers"
    );
    assert!(d.ctl(&["start", "jordan"]).status.success());
    d.wait_running("jordan");
    assert_eq!(
        get(new_port, "/").expect("served on the new port")["instance"],
        "jordan"
    );
}
