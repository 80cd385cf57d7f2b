//! Hostile peers on the control socket: operators still get through, and ctsd's memory stays
//! within its budget whatever clients announce.

use crate::util::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `nobody`, who hogs the socket in these tests.
const NOBODY: u32 = 65534;

/// A process this test started, killed by pid when dropped (also when the test fails).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `ctsctl status` as `nobody`.
fn status_as_nobody(d: &Daemon) -> std::process::Output {
    Command::new(ctsctl_bin())
        .arg("--socket")
        .arg(&d.socket)
        .arg("status")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("ctsctl as nobody")
}

/// Lets `nobody` reach the control socket of `d` (the test directory is private).
fn open_to_everyone(d: &Daemon) {
    use std::os::unix::fs::PermissionsExt;
    for dir in [d.dir.path().to_path_buf(), d.dir.path().join("run")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// Not a test: the hog that `operators_get_through_while_a_reader_hogs_the_socket` runs as
/// `nobody` (this same test binary, started again with `CTS_HOG_SOCKET`). It keeps opening
/// connections and holding them without a word, dropping the oldest as it goes.
#[test]
#[ignore = "a helper process of the hostile tests, not a test"]
fn hog_helper() {
    let Some(socket) = std::env::var_os("CTS_HOG_SOCKET") else {
        return;
    };
    let end = Instant::now() + Duration::from_secs(60);
    let mut held = std::collections::VecDeque::new();
    while Instant::now() < end {
        if let Ok(s) = UnixStream::connect(&socket) {
            held.push_back(s);
        }
        if held.len() > 1000 {
            held.pop_front();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn operators_get_through_while_a_reader_hogs_the_socket() {
    if !is_root() {
        eprintln!("SKIPPED operators_get_through_while_a_reader_hogs_the_socket: needs root to run the hog as another user");
        return;
    }
    let d = Daemon::start_with(
        vec![Inst::new("jordan", "Jordan", "/JO", "JOD")],
        // Anyone may connect and, with no socket_group, read: the worst case.
        "socket_mode: \"0666\"",
        "",
    );
    d.wait_running("jordan");
    open_to_everyone(&d);
    let hog = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "hostile::hog_helper",
            "--ignored",
            "--test-threads=1",
        ])
        .env("CTS_HOG_SOCKET", &d.socket)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the hog");
    let _hog = Reaped(hog);
    // The hog holds all it may; one more connection of its user is refused with the reason.
    let refused = wait_until(WAIT, || {
        let out = status_as_nobody(&d);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !err.contains("Broken pipe"),
            "the refusal is told, not a broken pipe: {err}"
        );
        err.contains("this user already holds")
    });
    assert!(refused, "the hog reached its share");
    let (mut status_ok, mut restart_ok) = (0, 0);
    for _ in 0..20 {
        if d.ctl(&["status"]).status.success() {
            status_ok += 1;
        }
        let out = d.ctl(&["restart", "jordan"]);
        if out.status.success() {
            restart_ok += 1;
        } else {
            eprintln!("restart failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    assert_eq!(
        (status_ok, restart_ok),
        (20, 20),
        "root's status and restart"
    );
}

/// A `hello` frame.
fn hello() -> Vec<u8> {
    let hello = cts_proto::Request::Hello(cts_proto::Hello {
        proto: cts_proto::PROTO_VERSION,
        client: "hostile test".into(),
    });
    let body = serde_json::to_vec(&hello).expect("encode");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn partial_frames_from_many_clients_stay_within_the_request_budget() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    let before = rss_kib(d.pid());
    let chunk = vec![b'x'; 256 << 10];
    let mut clients = Vec::new();
    for _ in 0..500 {
        let Ok(mut s) = UnixStream::connect(&d.socket) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        if s.write_all(&hello()).is_err() {
            continue;
        }
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            continue;
        }
        let mut welcome = vec![0u8; u32::from_be_bytes(len) as usize];
        let _ = s.read_exact(&mut welcome);
        // Announce the largest frame an admin may send, and send a quarter of it.
        let _ = s.write_all(&cts_proto::MAX_FRAME.to_be_bytes());
        let _ = s.set_nonblocking(true);
        let _ = s.write(&chunk);
        clients.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = rss_kib(d.pid());
    eprintln!("ctsd RSS {before} KiB before, {during} KiB with 500 partial 1 MiB frames");
    let out = d.ctl(&["status"]);
    assert!(out.status.success(), "status answers: {out:?}");
    // The budget is 16 MiB of request bytes; without it this would be about 125 MiB.
    assert!(
        during.saturating_sub(before) < 40 << 10,
        "ctsd grew from {before} KiB to {during} KiB holding partial frames"
    );
    drop(clients);
}

#[test]
fn a_port_in_use_at_start_fails_only_its_instance_which_serves_once_it_is_free() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut jordan = Inst::new("jordan", "Jordan", "/JO", "JOD").with(
        "restart: {backoff_max: 300ms, reset_after: 500ms, crash_loop: {restarts: 2, within: 1m}}",
    );
    jordan.port = taken.local_addr().expect("addr").port();
    let d = Daemon::start(vec![jordan, Inst::new("iraq", "Iraq", "/IQ", "IQD")], "");
    d.wait_running("iraq");
    assert!(
        get(d.port("iraq"), "/").is_ok(),
        "the other instance serves"
    );
    assert!(
        wait_until(WAIT, || d.instance("jordan")["state"] == "failing"),
        "{}",
        d.instance("jordan")
    );
    let why = d.instance("jordan")["last_exit"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let me = format!("held by pid {}", std::process::id());
    assert!(why.contains("in use") && why.contains(&me), "{why}");
    drop(taken);
    d.wait_running("jordan");
    assert_eq!(
        get(d.port("jordan"), "/").expect("jordan serves")["instance"],
        "jordan"
    );
}

/// An instance whose worker first leaves a `setsid` process behind, orphaned (its parent
/// subshell exits), and writes its pid to `pidfile`.
fn escaping(pidfile: &std::path::Path) -> Inst {
    let script = format!(
        "(setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > {}); exec {}",
        pidfile.display(),
        worker_bin()
    );
    Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 1, command: {}",
        yaml_list(&["sh", "-c", &script])
    ))
}

fn escaped_pid(pidfile: &std::path::Path) -> u32 {
    let mut pid = 0;
    assert!(wait_until(WAIT, || {
        pid = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    }));
    pid
}

/// Kills `pid` at the end of a test, whatever happened (it is the test's own escapee).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if pid_alive(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn a_setsid_descendant_is_counted_and_does_not_survive_its_instances_stop() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pidfile = tmp.path().join("escaped");
    let d = Daemon::start(vec![escaping(&pidfile)], "");
    d.wait_running("jordan");
    let escaped = escaped_pid(&pidfile);
    let _guard = KillOnDrop(escaped);
    assert!(pid_alive(escaped));
    assert!(
        wait_until(WAIT, || d.instance("jordan")["strays"] == 1),
        "{}",
        d.instance("jordan")
    );
    let out = d.ctl(&["stop", "jordan"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(WAIT, || !pid_alive(escaped)),
        "the setsid process {escaped} outlived its instance's stop"
    );
    assert_eq!(d.instance("jordan")["strays"], 0);
}

#[test]
fn a_setsid_descendant_goes_with_ctsd_and_ctsd_exits_at_once() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pidfile = tmp.path().join("escaped");
    let mut d = Daemon::start(vec![escaping(&pidfile)], "");
    d.wait_running("jordan");
    let escaped = escaped_pid(&pidfile);
    let _guard = KillOnDrop(escaped);
    let t = Instant::now();
    let status = d.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    // The escapee held the workers' output pipe: ctsd used to wait 5 s for it.
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "ctsd took {:?}",
        t.elapsed()
    );
    assert!(
        wait_until(WAIT, || !pid_alive(escaped)),
        "the setsid process {escaped} outlived ctsd"
    );
}

#[test]
fn what_a_killed_ctsd_left_running_is_killed_by_the_next_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pidfile = tmp.path().join("escaped");
    let mut d = Daemon::start(vec![escaping(&pidfile)], "");
    d.wait_running("jordan");
    let escaped = escaped_pid(&pidfile);
    let _guard = KillOnDrop(escaped);
    d.signal_and_wait(nix::sys::signal::Signal::SIGKILL);
    // The workers die with ctsd (parent-death signal); the orphan escaped to init, holding
    // the port. The next ctsd ends it and serves.
    std::fs::remove_file(&pidfile).expect("forget the old pid");
    d.respawn();
    d.wait_running("jordan");
    assert!(
        wait_until(WAIT, || !pid_alive(escaped)),
        "the process {escaped} left by the killed ctsd is still running"
    );
    assert!(get(d.port("jordan"), "/").is_ok());
}

#[test]
fn a_refused_user_reads_permission_denied_once() {
    if !is_root() {
        eprintln!("SKIPPED a_refused_user_reads_permission_denied_once: needs root to run ctsctl as nobody");
        return;
    }
    // Anyone may connect, but only root's group may read.
    let d = Daemon::start_with(
        vec![Inst::new("jordan", "Jordan", "/JO", "JOD")],
        "socket_mode: \"0666\"\nsocket_group: root",
        "",
    );
    open_to_everyone(&d);
    let out = status_as_nobody(&d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(cts_proto::exit_codes::PERMISSION_DENIED.into())
    );
    assert_eq!(err.matches("permission denied").count(), 1, "{err}");
}

/// Open fds of `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Children of `pid` that are zombies (exited, not reaped).
fn zombies_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .filter(|&c| {
            std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
        .collect()
}

#[test]
fn three_hundred_restarts_under_load_keep_fds_and_memory_flat_and_leave_no_zombie() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with("workers: 1");
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    d.wait_running("jordan");
    let looper = Looper::start(port);
    looper.wait_for_more(10);
    // Warm up (allocator, log buffers), then measure.
    for _ in 0..20 {
        assert!(d.ctl(&["restart", "jordan"]).status.success());
    }
    let (fds, rss) = (fd_count(d.pid()), rss_kib(d.pid()));
    for i in 0..300 {
        let out = d.ctl(&["restart", "jordan"]);
        assert!(out.status.success(), "restart {i}: {out:?}");
    }
    d.wait_running("jordan");
    let stats = looper.finish();
    assert!(
        stats.failures.is_empty(),
        "{} failed requests of {}: {:?}",
        stats.failures.len(),
        stats.ok,
        &stats.failures[..stats.failures.len().min(5)]
    );
    // The replaced workers' fds (pipes, notify sockets) are all closed again.
    assert!(
        wait_until(WAIT, || fd_count(d.pid()) <= fds + 2),
        "fds grew from {fds} to {}",
        fd_count(d.pid())
    );
    let after = rss_kib(d.pid());
    assert!(after < rss + 4096, "RSS grew from {rss} KiB to {after} KiB");
    assert!(
        wait_until(WAIT, || zombies_of(d.pid()).is_empty()),
        "zombies: {:?}",
        zombies_of(d.pid())
    );
}

#[test]
fn a_reload_onto_a_port_in_use_changes_nothing_and_names_the_holder() {
    let d = Daemon::start(three(), "");
    let before = d.wait_running("jordan");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut moved = three();
    for (m, old) in moved.iter_mut().zip(&d.instances) {
        m.port = old.port;
    }
    moved[2].port = taken.local_addr().expect("addr").port();
    write_config(d.dir.path(), &moved, "");
    let out = d.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("in use") && err.contains(&format!("held by pid {}", std::process::id())),
        "{err}"
    );
    assert_eq!(d.pids("jordan"), before, "nothing changed");
    assert!(get(d.port("jordan"), "/").is_ok());
}

#[test]
fn ten_megabytes_without_a_newline_are_logged_in_pieces_and_memory_stays_bounded() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 1, command: {}",
        demo(&["--flood", "10000000", "--line-len", "10000000"])
    ));
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    d.wait_running("jordan");
    let dir = d.log_dir.join("jordan");
    let logged = || -> u64 {
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    assert!(
        wait_until(WAIT, || logged() >= 10_000_000),
        "{} bytes logged",
        logged()
    );
    assert!(get(port, "/").is_ok(), "the worker still serves");
    // In pieces of at most 64 KiB, each but the last marked as going on.
    let text = d.log("jordan");
    let pieces = text.matches("[ctsd: line continues]").count();
    assert!(pieces >= 10_000_000 / (64 << 10), "{pieces} marked pieces");
    let rss = rss_kib(d.pid());
    assert!(rss < 64 << 10, "ctsd holds {rss} KiB");
}

#[test]
fn a_missing_program_is_an_error_of_check_and_the_reason_in_status() {
    let broken = Inst::new("jordan", "Jordan", "/JO", "JOD").with(
        "command: [gunicron, \"cts.wsgi:application\"], restart: {crash_loop: {restarts: 1, within: 1m}}",
    );
    let d = Daemon::prepare(
        vec![broken, Inst::new("iraq", "Iraq", "/IQ", "IQD")],
        "",
        "",
        Extra::default(),
    );
    let out = Command::new(ctsd_bin())
        .args(["--check", "--config"])
        .arg(&d.config)
        .output()
        .expect("ctsd --check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("instances.jordan.command[0]: `gunicron` is not found on the workers' PATH"),
        "{err}"
    );
    // Started anyway, the other instance serves and status says why jordan does not.
    let mut d = d;
    d.respawn();
    d.wait_running("iraq");
    assert!(wait_until(WAIT, || d.instance("jordan")["state"] == "failing"));
    let why = d.instance("jordan")["last_exit"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("`gunicron` is not found"), "{why}");
}

#[test]
fn a_full_disk_does_not_rotate_into_empty_files() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_full_disk_does_not_rotate_into_empty_files: needs root to mount a tmpfs"
        );
        return;
    }
    // A worker that floods 400 KB at start into a 16 KB disk, rotating every 2 KB.
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 1, command: {}, logs: {{max_size: 2KB, keep: 20, compress: false}}",
        demo(&["--flood", "400000", "--line-len", "200"])
    ));
    let mut d = Daemon::prepare(vec![inst], "", "", Extra::default());
    let dir = d.log_dir.join("jordan");
    std::fs::create_dir_all(&dir).expect("log dir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "ctsd-test"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED a_full_disk_does_not_rotate_into_empty_files: mount -t tmpfs refused");
        return;
    }
    let _guard = crate::logs::Tmpfs(dir.clone());
    d.respawn();
    d.wait_running("jordan");
    assert!(
        wait_until(WAIT, || d.instance("jordan")["log_dropped_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 300_000),
        "{}",
        d.instance("jordan")
    );
    let rotated: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .expect("log dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("output.log."))
        .map(|e| {
            let len = e.metadata().map_or(0, |m| m.len());
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    assert!(
        rotated.iter().all(|(_, len)| *len > 0),
        "empty rotated files: {rotated:?}"
    );
}

/// The cgroup v2 path of `pid` (`0::/…` in `/proc/<pid>/cgroup`).
fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn replaced_workers_run_in_cgroups_of_their_own_too() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    let root = format!("/ctsd-{}/w", d.pid());
    let first = d.pids("jordan");
    if !first
        .iter()
        .all(|&p| wait_until(WAIT, || cgroup_of(p).starts_with(&root)))
    {
        eprintln!(
            "SKIPPED replaced_workers_run_in_cgroups_of_their_own_too: no writable cgroup v2 here"
        );
        return;
    }
    // A rolling restart and a crash: the replacements are contained as well.
    assert!(d.ctl(&["restart", "jordan"]).status.success());
    let rolled = d.wait_running("jordan");
    let victim = *rolled.iter().next().expect("a worker");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let mut after = rolled.clone();
    assert!(wait_until(WAIT, || {
        after = d.pids("jordan");
        after.len() == 2 && !after.contains(&victim)
    }));
    let mut groups = std::collections::BTreeSet::new();
    let live: std::collections::BTreeSet<u32> = rolled
        .iter()
        .chain(&after)
        .copied()
        .filter(|p| *p != victim)
        .collect();
    for pid in &live {
        assert!(
            wait_until(WAIT, || cgroup_of(*pid).starts_with(&root)),
            "worker {pid} is in {:?}, not under {root}",
            cgroup_of(*pid)
        );
        groups.insert(cgroup_of(*pid));
    }
    assert_eq!(
        groups.len(),
        live.len(),
        "one cgroup per worker: {groups:?}"
    );
}

#[test]
fn an_escaped_daemons_own_children_go_too() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (outer, inner) = (tmp.path().join("daemon"), tmp.path().join("child"));
    // A daemonizing helper: setsid, then a child of its own, then it waits.
    let script = format!(
        "(setsid sh -c 'sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > {inner}; exec sleep 1000' \
         </dev/null >/dev/null 2>&1 & echo $! > {outer}); exec {worker}",
        inner = inner.display(),
        outer = outer.display(),
        worker = worker_bin()
    );
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 1, command: {}",
        yaml_list(&["sh", "-c", &script])
    ));
    let d = Daemon::start(vec![inst], "");
    d.wait_running("jordan");
    let (a, b) = (escaped_pid(&outer), escaped_pid(&inner));
    let _guards = (KillOnDrop(a), KillOnDrop(b));
    assert!(pid_alive(a) && pid_alive(b));
    assert!(d.ctl(&["stop", "jordan"]).status.success());
    assert!(
        wait_until(WAIT, || !pid_alive(a) && !pid_alive(b)),
        "left running: {:?}",
        [a, b].iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>()
    );
}

#[test]
fn a_programs_setsid_descendant_is_the_programs_stray_and_goes_with_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pidfile = tmp.path().join("escaped");
    let script = format!(
        "(setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > {}); exec {} --no-socket",
        pidfile.display(),
        worker_bin()
    );
    let jordan = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "programs: {{celery: {{command: {}}}}}",
        yaml_list(&["sh", "-c", &script])
    ));
    let d = Daemon::start(vec![jordan], "");
    let escaped = escaped_pid(&pidfile);
    let _guard = KillOnDrop(escaped);
    let celery = || {
        d.instance("jordan")["programs"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "celery").cloned())
            .unwrap_or_default()
    };
    assert!(wait_until(WAIT, || celery()["strays"] == 1), "{}", celery());
    assert_eq!(d.instance("jordan")["strays"], 0, "counted under web too");
    let out = d.ctl(&["stop", "jordan:celery"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(WAIT, || !pid_alive(escaped)),
        "the setsid process {escaped} outlived its program's stop"
    );
    assert_eq!(celery()["strays"], 0);
}
