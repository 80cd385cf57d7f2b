//! Access control by peer credentials. Runs ctsctl as `nobody` with different groups, which
//! needs root (as CI has); without root the test says so and checks only the root path.

use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

fn ctl_as(d: &Daemon, uid: u32, gid: u32, args: &[&str]) -> Output {
    Command::new(ctsctl_bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .env_remove("CTSD_SOCKET")
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run ctsctl as another user")
}

#[test]
fn readers_read_admins_act_and_others_are_refused() {
    let d = Daemon::start_with(
        vec![Inst::new("jordan", "Jordan", "/JO", "JOD")],
        "socket_mode: \"0666\"\nsocket_group: nogroup\nadmins: {groups: [daemon]}",
        "",
    );
    d.wait_running("jordan");
    // Root is always an admin.
    assert!(d.ctl(&["restart", "jordan"]).status.success());
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot run ctsctl as another user; only the root path was checked");
        return;
    }
    for dir in [d.dir.path().to_path_buf(), d.dir.path().join("run")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("user nobody")
        .uid
        .as_raw();
    let gid = |name: &str| {
        nix::unistd::Group::from_name(name)
            .expect("lookup")
            .expect(name)
            .gid
            .as_raw()
    };
    let (nogroup, daemon, bin) = (gid("nogroup"), gid("daemon"), gid("bin"));

    // socket_group member: may read, may not act.
    let out = ctl_as(&d, nobody, nogroup, &["status", "--json"]);
    assert!(
        out.status.success(),
        "reader status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl_as(&d, nobody, nogroup, &["restart", "jordan"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    let out = ctl_as(&d, nobody, nogroup, &["shutdown"]);
    assert_eq!(out.status.code(), Some(4));

    // admins.groups member: may act.
    let out = ctl_as(&d, nobody, daemon, &["restart", "jordan"]);
    assert!(
        out.status.success(),
        "admin restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Neither: refused before anything else.
    let out = ctl_as(&d, nobody, bin, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_running("jordan");
}

#[test]
fn the_socket_mode_keeps_other_users_out() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot run ctsctl as another user");
        return;
    }
    for dir in [d.dir.path().to_path_buf(), d.dir.path().join("run")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // Mode 0660 root:root: nobody cannot even connect.
    let out = ctl_as(&d, 65534, 65534, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workers_run_as_the_configured_user_who_owns_the_log_directory() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot start workers as another user");
        return;
    }
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(
        "user: nobody, group: nogroup, umask: \"0027\", limits: {nofile: 4321, core: unlimited}",
    );
    let d = Daemon::start(vec![inst], "");
    let pids = d.wait_running("jordan");
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        assert!(
            uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
            "{pid}: {uid_line}"
        );
        let gid_line = status
            .lines()
            .find(|l| l.starts_with("Gid:"))
            .expect("Gid line");
        assert!(
            gid_line.split_whitespace().skip(1).all(|g| g == "65534"),
            "{pid}: {gid_line}"
        );
        // initgroups: nobody's own groups, none of root's.
        let groups = status
            .lines()
            .find(|l| l.starts_with("Groups:"))
            .expect("Groups line");
        assert!(
            !groups.split_whitespace().skip(1).any(|g| g == "0"),
            "{pid}: {groups}"
        );
        assert!(status.contains("Umask:\t0027"), "{pid}: {status}");
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
        let nofile = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("nofile line");
        assert_eq!(
            nofile.split_whitespace().collect::<Vec<_>>()[3..5],
            ["4321", "4321"],
            "{nofile}"
        );
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .expect("core line");
        assert!(core.contains("unlimited"), "{core}");
    }
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(d.log_dir.join("jordan")).expect("log dir");
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(meta.mode() & 0o777, 0o750);
    assert!(get(d.port("jordan"), "/").is_ok());
}
