//! `programs:`: an instance's processes besides web (a celery worker, one beat), with the demo
//! worker's `--no-socket` mode standing in for them. A singleton's processes hold an exclusive
//! lock (`--lock`) for their whole life, so two alive at once leave a `.overlap` file behind:
//! the kernel's word, not a sample of the process table.

use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// jordan's `programs:` for `defaults`: celery ticking every 100 ms, and beat, a singleton
/// that takes 400 ms to stop (so an overlap would last), locking `lock`.
fn cts_programs(lock: &Path) -> String {
    let celery = demo(&["--no-socket", "--tick-ms", "100"]);
    let beat = demo(&[
        "--no-socket",
        "--stop-delay-ms",
        "400",
        "--lock",
        &lock.display().to_string(),
    ]);
    format!(
        "programs:\n  celery: {{command: {celery}, stop_timeout: 5s}}\n  \
         beat: {{command: {beat}, singleton: true}}\n"
    )
}

fn program(d: &Daemon, key: &str, name: &str) -> Value {
    let inst = d.instance(key);
    inst["programs"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no program {name} in {inst:#}"))
}

fn program_pids(d: &Daemon, key: &str, name: &str) -> BTreeSet<u32> {
    program(d, key, name)["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["pid"].as_u64())
        .map(|p| p as u32)
        .collect()
}

/// The program's pids once it runs with every process ready.
fn wait_program(d: &Daemon, key: &str, name: &str) -> BTreeSet<u32> {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = program(d, key, name);
        last["state"] == "running"
            && last["workers"].as_array().is_some_and(|ws| {
                ws.len() as u64 == last["desired_workers"].as_u64().unwrap_or(0)
                    && ws.iter().all(|w| w["state"] == "ready")
            })
    });
    assert!(ok, "{key}:{name} not running: {last:#}\n{}", d.stderr());
    program_pids(d, key, name)
}

/// Asserts that no two processes holding `lock` were ever alive at once.
fn assert_no_overlap(lock: &Path, when: &str) {
    let mut overlap = lock.as_os_str().to_owned();
    overlap.push(".overlap");
    let overlap = PathBuf::from(overlap);
    assert!(
        !overlap.exists(),
        "{when}: two processes of the singleton were alive at once: {}",
        std::fs::read_to_string(&overlap).unwrap_or_default()
    );
}

fn ctl_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.ctl(args);
    assert!(
        out.status.success(),
        "ctsctl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.stderr()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn programs_run_beside_web_with_their_own_log_status_and_environment() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let lock = tmp.path().join("beat.lock");
    let env_out = tmp.path().join("celery.env");
    // celery records its environment, then runs as the demo worker.
    let celery = format!(
        "env > {}; exec {} --no-socket --tick-ms 100",
        env_out.display(),
        worker_bin()
    );
    let jordan = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "env: {{QUEUE: \"queue_{{instance}}\"}}, programs: {{celery: {{command: {}, workers: 2}}}}",
        yaml_list(&["sh", "-c", &celery])
    ));
    let iraq = Inst::new("iraq", "Iraq", "/IQ", "IQD").with("programs: {beat: null}");
    let d = Daemon::start(vec![jordan, iraq], &cts_programs(&lock));
    d.wait_running("jordan");
    let celery_pids = wait_program(&d, "jordan", "celery");
    assert_eq!(celery_pids.len(), 2);
    wait_program(&d, "jordan", "beat");
    wait_program(&d, "iraq", "celery");

    // Status: web's fields where they were, a programs[] entry per program.
    let inst = d.instance("jordan");
    assert_eq!(inst["desired_workers"], 2);
    let names: Vec<&str> = inst["programs"]
        .as_array()
        .expect("programs")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["beat", "celery"]);
    let beat = program(&d, "jordan", "beat");
    assert_eq!(beat["singleton"], true);
    assert_eq!(beat["desired_workers"], 1);
    assert_eq!(beat["ready_workers"], 1);
    assert_eq!(beat["restarts"], 0);
    let iraq = d.instance("iraq");
    // What each process costs, from /proc: web's and the programs' alike.
    for w in [&inst["workers"][0], &beat["workers"][0]] {
        let (rss, pss) = (w["rss_kib"].as_u64(), w["pss_kib"].as_u64());
        assert!(
            rss.is_some_and(|r| r > 0) && pss.is_some_and(|p| p > 0 && p <= rss.unwrap_or(0)),
            "{w:#}"
        );
    }
    assert_eq!(
        iraq["programs"].as_array().map(Vec::len),
        Some(1),
        "{iraq:#}"
    );
    let table = ctl_ok(&d, &["status"]);
    let lines: Vec<&str> = table.lines().collect();
    let at = |name: &str| {
        lines
            .iter()
            .position(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{table}"))
    };
    assert!(at("jordan") < at("jordan:beat") && at("jordan:beat") < at("jordan:celery"));
    assert!(lines[at("jordan:beat")].contains("singleton"), "{table}");

    // The instance's environment, the program's own over it, and no socket.
    assert!(wait_until(WAIT, || std::fs::read_to_string(&env_out)
        .is_ok_and(|e| e.contains("CTS_INSTANCE=jordan"))));
    let env = std::fs::read_to_string(&env_out).expect("env");
    for want in ["QUEUE=queue_jordan", "CTS_PREFIX=/JO", "SCRIPT_NAME=/JO"] {
        assert!(env.lines().any(|l| l == want), "{want} not in\n{env}");
    }
    assert!(
        !env.contains("LISTEN_FDS"),
        "a program got a socket:\n{env}"
    );

    // Its output goes to celery.log, not output.log; `ctsctl logs jordan:celery` reads it.
    let celery_log = d.log_dir.join("jordan/celery.log");
    assert!(wait_until(WAIT, || std::fs::read_to_string(&celery_log)
        .is_ok_and(|l| l.contains("tick 3 "))));
    assert!(
        !d.log("jordan").contains("tick "),
        "celery's lines in output.log"
    );
    let logs = ctl_ok(&d, &["logs", "jordan:celery", "-n", "200"]);
    assert!(logs.contains("tick "), "{logs}");
    let web_logs = ctl_ok(&d, &["logs", "jordan:web", "-n", "200"]);
    assert!(!web_logs.contains("tick "), "{web_logs}");

    // Web still serves.
    assert!(get(d.port("jordan"), "/JO/").is_ok());

    // What shell completion offers: every name a command takes.
    let listed = ctl_ok(&d, &["list", "--programs"]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            "jordan",
            "jordan:web",
            "jordan:beat",
            "jordan:celery",
            "iraq",
            "iraq:web",
            "iraq:celery"
        ]
    );
    assert_eq!(ctl_ok(&d, &["list"]).lines().count(), 2);

    // bash, which splits `jordan:ce` at the colon, completes `celery`.
    let line = format!("ctsctl --socket {} restart jordan:ce", d.socket.display());
    let script = format!(
        "source <(ctsctl completions bash)
         COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}
         COMP_WORDS=(ctsctl --socket {} restart jordan : ce); COMP_CWORD=6
         _ctsctl_instances; echo \"${{COMPREPLY[*]}}\"",
        d.socket.display()
    );
    let out = bash_with_ctsctl(&script);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "celery\n", "{out:?}");
}

#[test]
fn each_program_is_addressed_by_instance_and_name() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let lock = tmp.path().join("beat.lock");
    let d = Daemon::start(
        vec![Inst::new("jordan", "Jordan", "/JO", "JOD")],
        &cts_programs(&lock),
    );
    let web = d.wait_running("jordan");
    let beat = wait_program(&d, "jordan", "beat");

    // One program: stop, start, restart, scale, signal; web and beat untouched.
    ctl_ok(&d, &["stop", "jordan:celery"]);
    assert_eq!(program(&d, "jordan", "celery")["state"], "stopped");
    assert_eq!(d.instance("jordan")["state"], "running");
    ctl_ok(&d, &["start", "jordan:celery"]);
    let celery = wait_program(&d, "jordan", "celery");
    let out = ctl_ok(&d, &["restart", "jordan:celery"]);
    assert!(out.starts_with("jordan:celery: "), "{out}");
    let after = wait_program(&d, "jordan", "celery");
    assert!(after.is_disjoint(&celery), "celery was not replaced");
    ctl_ok(&d, &["scale", "jordan:celery", "3"]);
    assert_eq!(wait_program(&d, "jordan", "celery").len(), 3);
    assert_eq!(program(&d, "jordan", "celery")["file_workers"], 1);
    ctl_ok(&d, &["signal", "jordan:celery", "TERM"]);
    assert!(wait_until(WAIT, || program(&d, "jordan", "celery")
        ["restarts"]
        .as_u64()
        .is_some_and(|n| n >= 3)));
    assert_eq!(d.pids("jordan"), web);
    assert_eq!(program_pids(&d, "jordan", "beat"), beat);

    // A singleton cannot be scaled; an unknown program is named with the known ones.
    let out = d.ctl(&["scale", "jordan:beat", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("singleton"), "{err}");
    let out = d.ctl(&["restart", "jordan:celry"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did you mean jordan:celery") && err.contains("web, beat, celery"),
        "{err}"
    );

    // The whole instance: web first, singletons last; every pool replaced.
    let celery = program_pids(&d, "jordan", "celery");
    let out = ctl_ok(&d, &["restart", "jordan"]);
    let (w, c, b) = (
        out.find("web:"),
        out.find("celery:"),
        out.find("beat:").unwrap_or(0),
    );
    assert!(w < c && c < Some(b), "restart order: {out}");
    assert!(d.wait_running("jordan").is_disjoint(&web));
    assert!(wait_program(&d, "jordan", "celery").is_disjoint(&celery));
    assert!(wait_program(&d, "jordan", "beat").is_disjoint(&beat));
    ctl_ok(&d, &["stop", "jordan"]);
    let inst = d.instance("jordan");
    assert_eq!(inst["state"], "stopped");
    for p in inst["programs"].as_array().expect("programs") {
        assert_eq!(p["state"], "stopped", "{p:#}");
    }
    assert_eq!(
        d.ctl(&["status", "--quiet"]).status.code(),
        Some(9),
        "stopped"
    );
    ctl_ok(&d, &["start", "jordan"]);
    d.wait_running("jordan");
    wait_program(&d, "jordan", "beat");
    wait_program(&d, "jordan", "celery");
    assert_no_overlap(&lock, "addressing");
}

#[test]
fn a_singleton_never_has_two_processes_alive() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let lock = tmp.path().join("beat.lock");
    let mut d = Daemon::start(
        vec![Inst::new("jordan", "Jordan", "/JO", "JOD")],
        &cts_programs(&lock),
    );
    d.wait_running("jordan");
    let beat = std::cell::RefCell::new(wait_program(&d, "jordan", "beat"));
    let pid = || *beat.borrow().iter().next().expect("beat pid");
    let replaced = |d: &Daemon, when: &str| {
        let now = wait_program(d, "jordan", "beat");
        assert_eq!(now.len(), 1);
        assert!(
            now.is_disjoint(&beat.borrow()),
            "{when}: beat was not replaced"
        );
        assert_no_overlap(&lock, when);
        *beat.borrow_mut() = now;
    };

    ctl_ok(&d, &["restart", "jordan:beat"]);
    replaced(&d, "restart jordan:beat");
    ctl_ok(&d, &["restart", "jordan"]);
    replaced(&d, "restart jordan");

    // Crash replacement: SIGKILL (the lock goes with the process, as the exit does).
    kill(Pid::from_raw(pid() as i32), Signal::SIGKILL).expect("kill beat");
    replaced(&d, "crash replacement");
    // An exit nobody asked ctsd for (the process takes 400 ms to stop).
    let old = pid();
    ctl_ok(&d, &["signal", "jordan:beat", "TERM"]);
    assert!(wait_until(WAIT, || !pid_alive(old)), "beat ignored SIGTERM");
    replaced(&d, "exit on a signal");

    // A reload that changes it rolls it, stop first.
    let text = std::fs::read_to_string(&d.config).expect("config");
    let changed = text.replace("singleton: true", "singleton: true, env: {BEAT: \"2\"}");
    assert_ne!(text, changed);
    std::fs::write(&d.config, changed).expect("write config");
    let out = ctl_ok(&d, &["reload"]);
    assert!(out.contains("jordan:beat"), "{out}");
    replaced(&d, "reload");

    // Removed by a reload and added back by the next one while it is still stopping (400 ms):
    // the new one waits for the old one to be gone.
    let text = std::fs::read_to_string(&d.config).expect("config");
    let without = text.replace("currency: JOD, ", "currency: JOD, programs: {beat: null}, ");
    assert_ne!(text, without);
    std::fs::write(&d.config, &without).expect("write config");
    // SIGHUP: the reload does not wait for the old beat to stop, as `ctsctl reload` would.
    let stopping = pid();
    kill(Pid::from_raw(d.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    assert!(wait_until(WAIT, || d.instance("jordan")["programs"]
        .as_array()
        .is_some_and(|ps| ps.iter().all(|p| p["name"] != "beat"))));
    assert!(
        pid_alive(stopping),
        "the old beat stopped too fast for the test"
    );
    std::fs::write(&d.config, &text).expect("write config");
    ctl_ok(&d, &["reload"]);
    replaced(&d, "removed and added back");

    // ctsd restarts: the old beat has exited before the new ctsd starts one.
    d.signal_and_wait(Signal::SIGTERM);
    assert!(!pid_alive(pid()));
    d.respawn();
    replaced(&d, "ctsd restart");
    // ctsd killed: its workers die with it; the next ctsd makes sure before it starts beat.
    let mut ctsd = d.child.take().expect("ctsd");
    ctsd.kill().expect("SIGKILL ctsd");
    ctsd.wait().expect("reap ctsd");
    d.respawn();
    replaced(&d, "ctsd killed and started again");

    // The detector works: a program of two processes on the same lock is caught.
    let text = std::fs::read_to_string(&d.config).expect("config");
    let two = text.replace("singleton: true, env: {BEAT: \"2\"}", "workers: 2");
    std::fs::write(&d.config, two).expect("write config");
    // (The roll it asks for fails: the second process exits at once, as the lock says.)
    let _ = d.ctl(&["reload"]);
    let mut overlap = lock.as_os_str().to_owned();
    overlap.push(".overlap");
    assert!(
        wait_until(WAIT, || Path::new(&overlap).exists()),
        "two processes on one lock were not detected: the test would not see a real overlap"
    );
}

#[test]
fn reload_starts_stops_and_changes_programs_one_by_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let lock = tmp.path().join("beat.lock");
    let d = Daemon::start(
        vec![
            Inst::new("jordan", "Jordan", "/JO", "JOD"),
            Inst::new("iraq", "Iraq", "/IQ", "IQD").with("programs: {beat: null}"),
        ],
        &cts_programs(&lock),
    );
    let web = d.wait_running("jordan");
    let celery = wait_program(&d, "jordan", "celery");
    let beat = wait_program(&d, "jordan", "beat");
    let iraq_celery = wait_program(&d, "iraq", "celery");

    // jordan: celery gets 2 workers (scale: the running one stays), beat goes, mail comes.
    let text = std::fs::read_to_string(&d.config).expect("config");
    let mail = demo(&["--no-socket"]);
    let changed = text.replace(
        "currency: JOD, ",
        &format!(
            "currency: JOD, programs: {{celery: {{workers: 2}}, beat: null, mail: {{command: {mail}}}}}, "
        ),
    );
    assert!(changed.contains("mail"), "{changed}");
    std::fs::write(&d.config, &changed).expect("write config");
    let plan = ctl_ok(&d, &["reload", "--dry-run"]);
    for want in ["jordan:celery", "jordan:beat", "jordan:mail"] {
        assert!(plan.contains(want), "{want} not in the plan:\n{plan}");
    }
    assert!(plan.contains("iraq:celery: none"), "{plan}");
    ctl_ok(&d, &["reload"]);
    let now = wait_program(&d, "jordan", "celery");
    assert_eq!(now.len(), 2);
    assert!(
        celery.is_subset(&now),
        "scaling replaced the running celery"
    );
    wait_program(&d, "jordan", "mail");
    let names: Vec<String> = d.instance("jordan")["programs"]
        .as_array()
        .expect("programs")
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["celery", "mail"]);
    let old_beat = *beat.iter().next().expect("pid");
    assert!(
        wait_until(WAIT, || !pid_alive(old_beat)),
        "removed beat still runs"
    );
    // Untouched: jordan's web, iraq altogether.
    assert_eq!(d.pids("jordan"), web);
    assert_eq!(program_pids(&d, "iraq", "celery"), iraq_celery);
}

#[test]
fn programs_get_the_instances_secrets() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let env = tmp.path().join("jordan.env");
    let seen = tmp.path().join("seen");
    std::fs::write(&env, "BROKER_PASSWORD=pw-celery\n").expect("env file");
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&env, mode).expect("chmod");
    let script = format!(
        "echo \"$BROKER_PASSWORD\" > {}; exec {} --no-socket",
        seen.display(),
        worker_bin()
    );
    let jordan = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "env_file: {}, programs: {{celery: {{command: {}, env: {{ROLE: celery}}}}}}",
        env.display(),
        yaml_list(&["sh", "-c", &script])
    ));
    let d = Daemon::start(vec![jordan], "");
    wait_program(&d, "jordan", "celery");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&seen).is_ok_and(|s| s.trim() == "pw-celery")
    }));
    let status = ctl_ok(&d, &["status", "--json"]);
    assert!(!status.contains("pw-celery"));
    // `ctsctl run jordan:celery` runs as celery's processes do: the secret, celery's own env.
    let run = std::process::Command::new(ctsctl_bin())
        .arg("--config")
        .arg(&d.config)
        .args([
            "run",
            "jordan:celery",
            "--",
            "sh",
            "-c",
            "echo \"$BROKER_PASSWORD $ROLE\"",
        ])
        .env_remove("CTSD_SOCKET")
        .output()
        .expect("ctsctl run");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "pw-celery celery"
    );
    let run = std::process::Command::new(ctsctl_bin())
        .arg("--config")
        .arg(&d.config)
        .args(["run", "jordan:nope", "--", "true"])
        .env_remove("CTSD_SOCKET")
        .output()
        .expect("ctsctl run");
    assert_eq!(run.status.code(), Some(5), "{run:?}");
}

#[test]
fn with_stderr_separate_a_programs_stderr_has_its_own_file() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let lock = tmp.path().join("beat.lock");
    let jordan = Inst::new("jordan", "Jordan", "/JO", "JOD").with("logs: {stderr: separate}");
    let d = Daemon::start(vec![jordan], &cts_programs(&lock));
    wait_program(&d, "jordan", "celery");
    // The demo worker says "stopped" on stderr when it stops, and ticks on stdout.
    ctl_ok(&d, &["restart", "jordan:celery"]);
    let dir = d.log_dir.join("jordan");
    let err = dir.join("celery.stderr.log");
    assert!(
        wait_until(WAIT, || std::fs::read_to_string(&err)
            .is_ok_and(|t| t.contains("stopped"))),
        "{:?}",
        std::fs::read_dir(&dir).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let log = dir.join("celery.log");
    assert!(wait_until(WAIT, || std::fs::read_to_string(&log)
        .is_ok_and(|t| t.contains("tick "))));
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!out.contains("stopped\n"), "stderr in celery.log: {out}");
    let shown = ctl_ok(&d, &["logs", "jordan:celery", "--stderr", "-n", "50"]);
    assert!(shown.contains("stopped"), "{shown}");
    assert!(!d.log("jordan").contains("tick "));
}
