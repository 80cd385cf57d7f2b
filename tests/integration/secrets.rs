//! `env_file`: the workers' secrets reach the workers and `ctsctl run`, and appear nowhere
//! else: not in `status`, its JSON, a reload plan, ctsd's log or an error message.

use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// Writes `text` as an env file of mode `mode`.
fn env_file(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write env file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A worker that records the `DB_PASSWORD` it got into `seen`, then serves.
fn recording(seen: &std::path::Path, env: &std::path::Path) -> Inst {
    let script = format!(
        "printf '%s\\n' \"$DB_PASSWORD\" >> {}; exec {}",
        seen.display(),
        worker_bin()
    );
    Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 1, command: {}, env_file: {}",
        yaml_list(&["sh", "-c", &script]),
        env.display()
    ))
}

#[test]
fn secrets_reach_the_workers_and_run_and_nothing_else() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (env, seen) = (tmp.path().join("jordan.env"), tmp.path().join("seen"));
    let first = format!("hunter2-{}", std::process::id());
    env_file(
        &env,
        &format!("# jordan\nDB_PASSWORD='{first}'\nSECRET_KEY=k-{first}\n"),
        0o600,
    );
    let d = Daemon::start(vec![recording(&seen, &env)], "");
    d.wait_running("jordan");
    assert!(wait_until(WAIT, || std::fs::read_to_string(&seen)
        .is_ok_and(|s| s.contains(&first))));

    // `ctsctl run` gets them too.
    let run = Command::new(ctsctl_bin())
        .arg("--config")
        .arg(&d.config)
        .args(["run", "jordan", "--", "sh", "-c", "echo \"$SECRET_KEY\""])
        .env_remove("CTSD_SOCKET")
        .output()
        .expect("ctsctl run");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        format!("k-{first}")
    );

    // A changed file: the reload plan names it, the workers roll onto the new value.
    let second = format!("swordfish-{}", std::process::id());
    env_file(
        &env,
        &format!("DB_PASSWORD={second}\nSECRET_KEY=k-{second}\n"),
        0o600,
    );
    let plan = d.ctl(&["reload"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.status.success(), "{plan:?}");
    assert!(
        plan_text.contains("jordan: rolling restart (env_file)"),
        "{plan_text}"
    );
    assert!(wait_until(WAIT, || std::fs::read_to_string(&seen)
        .is_ok_and(|s| s.contains(&second))));
    d.wait_running("jordan");

    // Nowhere else: status, JSON, the plan, ctsd's own log and the instance log's events.
    let status = String::from_utf8_lossy(&d.ctl(&["status"]).stdout).into_owned();
    let json = String::from_utf8_lossy(&d.ctl(&["status", "--json"]).stdout).into_owned();
    for (what, text) in [
        ("status", status),
        ("status --json", json),
        ("the reload plan", plan_text),
        ("ctsd's log", d.stderr()),
        ("the instance log", d.log("jordan")),
    ] {
        for secret in [&first, &second] {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a secret:\n{text}"
            );
        }
    }
}

#[test]
fn an_env_file_others_may_read_is_refused_naming_file_and_mode_not_values() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let env = tmp.path().join("jordan.env");
    env_file(&env, "DB_PASSWORD=hunter2\nnot a line\n", 0o644);
    let d = Daemon::prepare(
        vec![recording(&tmp.path().join("seen"), &env)],
        "",
        "",
        Extra::default(),
    );
    let check = || {
        let out = Command::new(ctsd_bin())
            .args(["--check", "--config"])
            .arg(&d.config)
            .output()
            .expect("ctsd --check");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = check();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("instances.jordan.env_file")
            && err.contains(&env.display().to_string())
            && err.contains("(mode 0644)"),
        "{err}"
    );
    assert!(!err.contains("hunter2"));
    // Private now, but a line is not KEY=VALUE: its number, not its text.
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, err) = check();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("line 2: not KEY=VALUE")
            && !err.contains("not a line")
            && !err.contains("hunter2"),
        "{err}"
    );
}
