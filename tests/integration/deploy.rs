//! `ctsctl deploy`: release directories whose `run` script starts the demo worker (or fails
//! like code that cannot import) and whose `migrate` script records itself (or fails like a
//! migration); `cwd` is a `current` symlink. Every script appends to one journal, so the order
//! of migrations and starts is what the processes did, not what ctsd says.

use crate::util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A temp dir with releases and a `current` symlink, and the journal the scripts write.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        site.release("r1", Run::Serves, Migrate::Works);
        std::os::unix::fs::symlink(site.path("r1"), site.path("current")).expect("symlink");
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(self.path("journal")).unwrap_or_default()
    }

    /// Writes release `name` with its `run` and `migrate` scripts.
    fn release(&self, name: &str, run: Run, migrate: Migrate) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("release dir");
        let journal = self.path("journal");
        let journal = journal.display();
        let run = match run {
            Run::Serves => format!(
                "echo \"start $CTS_INSTANCE $(pwd)\" >> {journal}\nexec {} \"$@\"\n",
                worker_bin()
            ),
            Run::CannotImport => {
                "echo \"ModuleNotFoundError: No module named 'cts.brokenapp'\" >&2\nexit 1\n"
                    .to_owned()
            }
        };
        let migrate = match migrate {
            Migrate::Works => format!("echo \"migrate $CTS_INSTANCE $(pwd)\" >> {journal}\necho migrated\n"),
            Migrate::Fails => "echo \"django.db.utils.ProgrammingError: column cts_rate.amount does not exist\" >&2\nexit 1\n".to_owned(),
            Migrate::Slow => format!("echo \"migrating $CTS_INSTANCE\" >> {journal}\nsleep 2\necho \"migrate $CTS_INSTANCE $(pwd)\" >> {journal}\n"),
            Migrate::Hangs => format!("echo \"hanging $$\" >> {journal}\nexec sleep 600\n"),
        };
        std::fs::write(dir.join("run"), run).expect("run");
        std::fs::write(dir.join("migrate"), migrate).expect("migrate");
        dir
    }

    /// The `defaults` lines: celery and beat run `run` from `current` (web too: see
    /// [`two`]); `migrate` is the release job.
    fn defaults(&self) -> String {
        let lock = self.path("beat-{instance}.lock");
        format!(
            "cwd: {}\nrelease:\n  - [sh, migrate]\nprograms:\n  \
             celery: {{command: [sh, run, --no-socket]}}\n  \
             beat: {{command: [sh, run, --no-socket, --stop-delay-ms, \"300\", --lock, {:?}], singleton: true}}\n",
            self.path("current").display(),
            lock.display().to_string()
        )
    }
}

#[derive(Clone, Copy)]
enum Run {
    Serves,
    CannotImport,
}

#[derive(Clone, Copy)]
enum Migrate {
    Works,
    Fails,
    Slow,
    Hangs,
}

/// jordan and iraq, whose web pools run `run` (the fixture's defaults name the worker).
fn two() -> Vec<Inst> {
    vec![
        Inst::new("jordan", "Jordan", "/JO", "JOD").with("command: [sh, run]"),
        Inst::new("iraq", "Iraq", "/IQ", "IQD").with("command: [sh, run]"),
    ]
}

/// Every live pid of `key` (web and programs).
fn all_pids(d: &Daemon, key: &str) -> BTreeSet<u32> {
    let inst = d.instance(key);
    let programs = inst["programs"].as_array().cloned().unwrap_or_default();
    std::iter::once(inst)
        .chain(programs)
        .flat_map(|p| p["workers"].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
        .collect()
}

/// Waits until `key`'s web pool and programs all run with every process ready.
fn wait_all_running(d: &Daemon, key: &str) -> BTreeSet<u32> {
    let mut last = Value::Null;
    let ready = |u: &Value| {
        u["state"] == "running"
            && u["workers"].as_array().is_some_and(|ws| {
                ws.len() as u64 == u["desired_workers"].as_u64().unwrap_or(0)
                    && ws.iter().all(|w| w["state"] == "ready")
            })
    };
    let ok = wait_until(WAIT, || {
        last = d.instance(key);
        ready(&last)
            && last["programs"]
                .as_array()
                .is_some_and(|ps| ps.iter().all(ready))
    });
    assert!(ok, "{key} not all running: {last:#}\n{}", d.stderr());
    all_pids(d, key)
}

fn cwd_of(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default()
}

fn release_of(d: &Daemon, key: &str) -> String {
    d.instance(key)["release"].as_str().unwrap_or("").to_owned()
}

/// Points `current` at `target` as an operator would by hand.
fn point(site: &Site, target: &Path) {
    let tmp = site.path("current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, site.path("current")).expect("rename");
}

#[test]
fn a_deploy_moves_every_program_under_load_without_a_failed_request() {
    let site = Site::new();
    let r1 = site.path("r1");
    let r2 = site.release("r2", Run::Serves, Migrate::Works);
    let d = Daemon::start(two(), &site.defaults());
    for key in ["jordan", "iraq"] {
        wait_all_running(&d, key);
        assert_eq!(release_of(&d, key), r1.display().to_string());
    }

    // Pinned: `current` switched by hand, a crash replacement still starts in r1.
    point(&site, &r2);
    let victim = *d.pids("jordan").iter().next().expect("pid");
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill");
    assert!(wait_until(WAIT, || !d.pids("jordan").contains(&victim)));
    for pid in wait_all_running(&d, "jordan") {
        assert_eq!(cwd_of(pid), r1, "pid {pid} started outside its release");
    }
    point(&site, &r1);

    let loops: Vec<Looper> = ["jordan", "iraq"]
        .iter()
        .map(|k| Looper::start(d.port(k)))
        .collect();
    for l in &loops {
        l.wait_for_more(20);
    }
    let out = d.ctl(&["deploy", &r2.display().to_string(), "--canary", "iraq"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deploy failed: {}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.stderr()
    );
    for l in &loops {
        l.wait_for_more(20);
    }
    for (l, key) in loops.into_iter().zip(["jordan", "iraq"]) {
        let stats = l.finish();
        assert!(
            stats.failures.is_empty(),
            "{key}: {} of {} requests failed during the deploy: {:?}",
            stats.failures.len(),
            stats.ok + stats.failures.len() as u64,
            &stats.failures[..stats.failures.len().min(5)]
        );
    }
    // The canary first; web before celery before beat.
    let at = |s: &str| {
        stdout
            .find(s)
            .unwrap_or_else(|| panic!("no {s:?} in\n{stdout}"))
    };
    assert!(
        at("iraq: release[0]") < at("jordan: release[0]"),
        "{stdout}"
    );
    assert!(at("jordan:web:") < at("jordan:celery:"), "{stdout}");
    assert!(at("jordan:celery:") < at("jordan:beat:"), "{stdout}");

    // Everything runs in r2, status says so, `current` points there.
    assert_eq!(std::fs::read_link(site.path("current")).expect("link"), r2);
    for key in ["jordan", "iraq"] {
        assert_eq!(release_of(&d, key), r2.display().to_string());
        for pid in wait_all_running(&d, key) {
            assert_eq!(cwd_of(pid), r2, "{key} pid {pid}");
        }
        // Its migration ran before the first process of r2 started.
        let journal = site.journal();
        let migrate = journal
            .find(&format!("migrate {key} {}", r2.display()))
            .unwrap_or_else(|| panic!("no migration of {key}:\n{journal}"));
        let start = journal
            .find(&format!("start {key} {}", r2.display()))
            .unwrap_or_else(|| panic!("no start of {key} in r2:\n{journal}"));
        assert!(
            migrate < start,
            "{key} served before it migrated:\n{journal}"
        );
        let lock = site.path(&format!("beat-{key}.lock.overlap"));
        assert!(!lock.exists(), "two beats of {key} at once");
    }
}

#[test]
fn a_deploy_whose_migration_fails_changes_nothing() {
    let site = Site::new();
    let bad = site.release("badmigration", Run::Serves, Migrate::Fails);
    let d = Daemon::start(two(), &site.defaults());
    let before: Vec<BTreeSet<u32>> = ["jordan", "iraq"]
        .iter()
        .map(|k| wait_all_running(&d, k))
        .collect();
    let out = d.ctl(&["deploy", &bad.display().to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ProgrammingError: column cts_rate.amount"),
        "{err}"
    );
    assert!(err.contains("nothing of jordan was moved"), "{err}");
    assert!(err.contains("iraq: deploy failed: not moved"), "{err}");
    for (key, pids) in ["jordan", "iraq"].iter().zip(before) {
        assert_eq!(all_pids(&d, key), pids, "{key}'s processes were touched");
        assert_eq!(release_of(&d, key), site.path("r1").display().to_string());
    }
    assert_eq!(
        std::fs::read_link(site.path("current")).expect("link"),
        site.path("r1")
    );
}

#[test]
fn a_deploy_whose_code_cannot_import_rolls_the_instance_back() {
    let site = Site::new();
    let bad = site.release("broken", Run::CannotImport, Migrate::Works);
    let d = Daemon::start(two(), &site.defaults());
    wait_all_running(&d, "jordan");
    let iraq = wait_all_running(&d, "iraq");
    let looper = Looper::start(d.port("jordan"));
    looper.wait_for_more(20);
    let out = d.ctl(&["deploy", &bad.display().to_string(), "--canary", "jordan"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jordan:web did not become ready"), "{err}");
    assert!(err.contains("No module named 'cts.brokenapp'"), "{err}");
    assert!(err.contains("back on"), "{err}");
    looper.wait_for_more(20);
    let stats = looper.finish();
    assert!(
        stats.failures.is_empty(),
        "{} requests failed: {:?}",
        stats.failures.len(),
        stats.failures
    );
    let r1 = site.path("r1");
    assert_eq!(release_of(&d, "jordan"), r1.display().to_string());
    for pid in wait_all_running(&d, "jordan") {
        assert_eq!(cwd_of(pid), r1);
    }
    assert_eq!(
        all_pids(&d, "iraq"),
        iraq,
        "iraq moved after the canary failed"
    );
    assert_eq!(std::fs::read_link(site.path("current")).expect("link"), r1);
}

#[test]
fn one_deploy_at_a_time_and_it_goes_on_without_its_client() {
    let site = Site::new();
    let slow = site.release("slow", Run::Serves, Migrate::Slow);
    let d = Daemon::start(two(), &site.defaults());
    wait_all_running(&d, "jordan");
    wait_all_running(&d, "iraq");
    let mut client = Command::new(ctsctl_bin())
        .args(["--socket", &d.socket.display().to_string()])
        .args(["deploy", &slow.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctsctl deploy");
    let started = wait_until(WAIT, || site.journal().contains("migrating jordan"));
    if !started {
        let _ = client.kill();
        let _ = client.wait();
        panic!("the deploy did not start: {}", d.stderr());
    }
    for args in [
        vec!["restart", "jordan"],
        vec!["scale", "iraq", "3"],
        vec!["reload"],
        vec!["deploy", &site.path("r1").display().to_string()],
    ] {
        let out = d.ctl(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("a deploy to"),
            "{args:?} during a deploy: {err}"
        );
    }
    // The client goes away; the deploy does not.
    kill(Pid::from_raw(client.id() as i32), Signal::SIGKILL).expect("kill ctsctl");
    let _ = client.wait();
    let want = slow.display().to_string();
    assert!(
        wait_until(WAIT, || release_of(&d, "jordan") == want
            && release_of(&d, "iraq") == want),
        "the deploy stopped with its client: {}",
        d.stderr()
    );
    assert!(wait_until(WAIT, || d
        .ctl(&["restart", "iraq"])
        .status
        .success()));
    assert_eq!(
        std::fs::read_link(site.path("current")).expect("link"),
        slow
    );
}

#[test]
fn release_jobs_get_the_instances_secrets_and_nothing_shows_them() {
    let site = Site::new();
    let r2 = site.release("r2", Run::Serves, Migrate::Works);
    let secret = format!("s3cret-{}", std::process::id());
    let env = site.path("jordan.env");
    std::fs::write(&env, format!("DB_PASSWORD={secret}\n")).expect("env file");
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&env, mode).expect("chmod");
    // The job records what it got where only the test looks.
    let seen = site.path("seen");
    std::fs::write(
        r2.join("migrate"),
        format!("printf '%s' \"$DB_PASSWORD\" > {}\n", seen.display()),
    )
    .expect("migrate");
    let jordan = Inst::new("jordan", "Jordan", "/JO", "JOD")
        .with(&format!("command: [sh, run], env_file: {}", env.display()));
    let d = Daemon::start(vec![jordan], &site.defaults());
    wait_all_running(&d, "jordan");
    let out = d.ctl(&["deploy", &r2.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&seen).expect("seen"), secret);
    let shown = [
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&d.ctl(&["status", "--json"]).stdout).into_owned(),
        d.stderr(),
        d.log("jordan"),
    ];
    for text in shown {
        assert!(!text.contains(&secret), "the secret shows:\n{text}");
    }
}

#[test]
fn a_job_past_deploy_job_timeout_is_stopped_and_fails_the_deploy() {
    let site = Site::new();
    let hangs = site.release("hangs", Run::Serves, Migrate::Hangs);
    let mut d = Daemon::prepare(two(), "", &site.defaults(), Default::default());
    let mut text = std::fs::read_to_string(&d.config).expect("config");
    text.push_str("deploy: {job_timeout: 1s}\n");
    std::fs::write(&d.config, text).expect("config");
    d.respawn();
    let before = wait_all_running(&d, "jordan");
    let out = d.ctl(&["deploy", &hangs.display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("timed out after 1s (deploy.job_timeout)"),
        "{err}"
    );
    assert!(err.contains("nothing of jordan was moved"), "{err}");
    let journal = site.journal();
    let pid: u32 = journal
        .lines()
        .find_map(|l| l.strip_prefix("hanging "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the job did not start:\n{journal}"));
    assert!(wait_until(WAIT, || !pid_alive(pid)), "the job still runs");
    assert_eq!(all_pids(&d, "jordan"), before);
    // The lock is free again.
    assert!(d.ctl(&["restart", "iraq"]).status.success());
}

#[test]
fn a_batch_moves_instances_together_and_a_stopped_one_starts_in_the_release() {
    let site = Site::new();
    let r2 = site.release("r2", Run::Serves, Migrate::Works);
    let mut instances = two();
    instances.push(Inst::new("turkey", "Turkey", "/TR", "TRY").with("command: [sh, run]"));
    let d = Daemon::start(instances, &site.defaults());
    for key in ["jordan", "iraq", "turkey"] {
        wait_all_running(&d, key);
    }
    let out = d.ctl(&["stop", "turkey"]);
    assert!(out.status.success(), "{out:?}");
    let plan = d.ctl(&[
        "deploy",
        &r2.display().to_string(),
        "--batch",
        "2",
        "--dry-run",
    ]);
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.contains("batch 1: jordan, iraq"), "{plan}");
    assert!(plan.contains("batch 2: turkey"), "{plan}");
    let out = d.ctl(&["deploy", &r2.display().to_string(), "--batch", "2"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.stderr()
    );
    for key in ["jordan", "iraq"] {
        for pid in wait_all_running(&d, key) {
            assert_eq!(cwd_of(pid), r2, "{key}");
        }
    }
    // turkey was stopped: it is pinned to r2 and starts there.
    assert_eq!(release_of(&d, "turkey"), r2.display().to_string());
    assert_eq!(d.instance("turkey")["state"], "stopped");
    let out = d.ctl(&["start", "turkey"]);
    assert!(out.status.success(), "{out:?}");
    for pid in wait_all_running(&d, "turkey") {
        assert_eq!(cwd_of(pid), r2, "turkey");
    }
}
