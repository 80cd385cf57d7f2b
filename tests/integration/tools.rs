//! `ctsctl run` and `ctsctl nginx-config`: commands that read the configuration file.

use crate::util::{ctsctl_bin, write_config, Daemon, Extra, Inst};
use std::process::Command;

fn ctl(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(ctsctl_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CTSD_SOCKET")
        .env_remove("CTSD_ONLY")
        .output()
        .expect("run ctsctl")
}

#[test]
fn run_gives_the_workers_environment_and_directory_and_returns_the_exit_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("app")).expect("app dir");
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD")
        .with("cwd: app, env: {EXTRA: \"x-{currency}\"}");
    let config = write_config(dir.path(), &[inst], "");
    // What systemd may have given the caller is not passed on, as for workers.
    let out = Command::new(ctsctl_bin())
        .arg("--config")
        .arg(&config)
        .args(["run", "jordan", "--", "sh", "-c", "pwd; env; exit 7"])
        .env_remove("CTSD_SOCKET")
        .env("LISTEN_FDS", "1")
        .env("NOTIFY_SOCKET", "/nowhere")
        .env("FDSTORE", "8")
        .env("WATCHDOG_USEC", "1000000")
        .output()
        .expect("run ctsctl");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with("/app"), "{text}");
    for want in [
        "CTS_INSTANCE=jordan",
        "CTS_CURRENCY=JOD",
        "SCRIPT_NAME=/JO",
        "DJANGO_SETTINGS_MODULE=cts.settings.jordan",
        "EXTRA=x-JOD",
    ] {
        assert!(lines.contains(&want), "{want}: {text}");
    }
    for gone in [
        "LISTEN_FDS=",
        "NOTIFY_SOCKET=",
        "FDSTORE=",
        "WATCHDOG_USEC=",
    ] {
        assert!(!text.contains(gone), "{gone} passed on: {text}");
    }

    let out = ctl(&config, &["run", "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown instance `nope`"));
    let out = ctl(&config, &["run", "jordan", "--", "no-such-program-ctsd"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
}

#[test]
fn run_starts_from_the_running_daemons_environment() {
    let extra = Extra {
        env: vec![("CTSD_ONLY".into(), "from-ctsd".into())],
        ..Extra::default()
    };
    let d = Daemon::start_extra(
        vec![Inst::new("jordan", "Jordan", "/JO", "JOD")],
        "",
        "",
        extra,
    );
    let out = ctl(
        &d.config,
        &["run", "jordan", "--", "sh", "-c", "echo $CTSD_ONLY"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-ctsd");
}

#[test]
fn run_switches_to_the_workers_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot switch users");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD")
        .with("user: nobody, group: nogroup, umask: \"0027\"");
    let config = write_config(dir.path(), &[inst], "");
    let out = ctl(
        &config,
        &["run", "jordan", "--", "sh", "-c", "id -u; id -g; umask"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "65534\n65534\n0027\n");
}

#[test]
fn nginx_config_routes_every_prefix_to_its_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let insts = crate::util::three();
    let config = write_config(dir.path(), &insts, "");
    let out = ctl(
        &config,
        &[
            "nginx-config",
            "--server-name",
            "cts.example.org",
            "--listen",
            "127.0.0.1:8080",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen 127.0.0.1:8080;"), "{text}");
    assert!(text.contains("server_name cts.example.org;"), "{text}");
    for i in &insts {
        let p = &i.prefix;
        assert!(
            text.contains(&format!(
                "location = {p} {{\n        return 301 {p}/$is_args$args;"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "location {p}/ {{\n        proxy_pass http://127.0.0.1:{};",
                i.port
            )),
            "{text}"
        );
    }
    assert_eq!(text.matches("server {").count(), 1);

    let out = ctl(&config, &["nginx-config", "--locations-only"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("server {"), "{text}");
    assert!(text.contains("location /JO/ {"), "{text}");
}
