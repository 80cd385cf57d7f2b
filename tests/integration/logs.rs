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
    assert_eq!(
        check_flood_across_rotations(&d.log_dir.join("jordan"), &pids, 20_000),
        1,
        "no rotation at the default size"
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

/// Every numbered flood line of `pids` across `output.log` and its rotated (maybe gzipped)
/// files, each whole, exactly once and in order; returns how many files there were.
/// The instance log's files in write order (rotated ones by name, which sorts by rotation
/// time, then `output.log`) and their text, gzipped ones decompressed. A file that is renamed
/// or compressed while this reads is skipped.
fn log_text(dir: &std::path::Path) -> (Vec<std::path::PathBuf>, String) {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("output.log"))
        })
        .collect();
    paths.sort_by_key(|p| (p.extension().is_some_and(|e| e == "log"), p.clone()));
    let mut text = String::new();
    for path in &paths {
        if path.extension().is_some_and(|e| e == "gz") {
            let out = std::process::Command::new("gzip")
                .arg("-dc")
                .arg(path)
                .output()
                .expect("gzip -dc");
            if out.status.success() {
                text.push_str(&String::from_utf8_lossy(&out.stdout));
            }
        } else if let Ok(t) = std::fs::read(path) {
            text.push_str(&String::from_utf8_lossy(&t));
        }
    }
    (paths, text)
}

fn check_flood_across_rotations(
    dir: &std::path::Path,
    pids: &std::collections::BTreeSet<u32>,
    lines: u64,
) -> usize {
    let (paths, text) = log_text(dir);
    for gz in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
    {
        let ok = std::process::Command::new("gzip")
            .arg("-t")
            .arg(gz)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{} is a valid gzip file", gz.display());
    }
    // Each worker's lines must come exactly once and in order: 0, 1, 2, ...
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for line in text.lines() {
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
        assert_eq!(
            seq, *want,
            "worker {pid}: line lost, duplicated or out of order"
        );
        *want += 1;
    }
    for pid in pids {
        assert_eq!(
            next.get(pid).copied().unwrap_or(0),
            lines,
            "worker {pid}: lines lost at the end"
        );
    }
    paths.len()
}

fn flood_with_rotation(workers: u32, logs: &str) -> (Daemon, std::collections::BTreeSet<u32>) {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: {workers}, command: {}, logs: {logs}",
        demo(&["--flood", "1000000"])
    ));
    let d = Daemon::start(vec![inst], "");
    let pids = d.wait_running("jordan");
    // The flood is written before READY: wait for every worker's last line.
    let dir = d.log_dir.join("jordan");
    // Rotated files may be gzipped before this looks: read them decompressed.
    assert!(
        wait_until(WAIT, || {
            let (_, all) = log_text(&dir);
            pids.iter().all(|p| all.contains(&format!("{p} 9999 ")))
        }),
        "the flood did not reach the logs"
    );
    (d, pids)
}

#[test]
fn rotation_by_size_keeps_every_line_exactly_once() {
    let (d, pids) = flood_with_rotation(2, "{max_size: 64KB, keep: 1000}");
    let files = check_flood_across_rotations(&d.log_dir.join("jordan"), &pids, 10_000);
    assert!(
        files > 20,
        "2 MB at 64 KB per file rotates many times: {files} files"
    );
    // Files are filled up to the last whole line that fits: none exceeds max_size.
    for entry in std::fs::read_dir(d.log_dir.join("jordan")).expect("dir") {
        let len = entry.expect("entry").metadata().expect("meta").len();
        assert!(len <= 64 * 1024, "a file grew past max_size: {len}");
    }
}

#[test]
fn retention_keeps_the_newest_files() {
    let (d, _) = flood_with_rotation(1, "{max_size: 64KB, keep: 3}");
    let dir = d.log_dir.join("jordan");
    let rotated = std::fs::read_dir(&dir)
        .expect("dir")
        .filter(|e| {
            let name = e
                .as_ref()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("output.log.")
        })
        .count();
    assert_eq!(rotated, 3);
}

#[test]
fn gzipped_rotations_decompress_to_what_was_written() {
    let (d, pids) = flood_with_rotation(2, "{max_size: 64KB, keep: 1000, compress: true}");
    let dir = d.log_dir.join("jordan");
    // Compression runs off the writer thread: wait until no uncompressed rotated file is left.
    assert!(wait_until(WAIT, || std::fs::read_dir(&dir)
        .expect("dir")
        .all(|e| {
            let name = e
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .unwrap_or_default();
            !name.starts_with("output.log.") || name.ends_with(".gz")
        })));
    check_flood_across_rotations(&dir, &pids, 10_000);
}

#[test]
fn timestamped_format_prefixes_each_line_with_time_worker_and_stream() {
    let inst =
        Inst::new("jordan", "Jordan", "/JO", "JOD").with("workers: 1, logs: {format: timestamped}");
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    let pid = *d.wait_running("jordan").iter().next().expect("pid");
    assert!(get(port, "/stamped").is_ok());
    assert!(wait_until(WAIT, || d.log("jordan").contains("/stamped")));
    let log = d.log("jordan");
    let line = log
        .lines()
        .find(|l| l.contains("GET /stamped"))
        .expect("access line");
    let (ts, rest) = line.split_once(' ').expect("prefix");
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.contains('T'),
        "timestamp: {line}"
    );
    assert!(
        rest.starts_with(&format!("0/{pid} out ")),
        "worker and stream: {line}"
    );
}

#[test]
fn ctsctl_logs_shows_the_last_lines() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    for i in 0..5 {
        assert!(get(d.port("jordan"), &format!("/tail-{i}")).is_ok());
    }
    assert!(wait_until(WAIT, || d.log("jordan").contains("/tail-4")));
    let out = d.ctl(&["logs", "jordan", "-n", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().last().unwrap_or("").contains("/tail-4"),
        "{text}"
    );
    assert_eq!(d.ctl(&["logs", "jordn"]).status.code(), Some(5));
}

#[test]
fn ctsctl_logs_follow_sees_lines_written_after_a_rotation() {
    use std::io::BufRead;
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD")
        .with("workers: 1, logs: {max_size: 4KB, keep: 100}");
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    d.wait_running("jordan");
    let mut child = std::process::Command::new(ctsctl_bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["logs", "jordan", "-f", "-n", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ctsctl logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Enough requests to rotate the 4 KB file many times, then a marker.
    let mut seen = false;
    for i in 0..400 {
        let _ = get(port, &format!("/padding-{i}-{}", "x".repeat(50)));
    }
    assert!(get(port, "/after-rotations").is_ok());
    let end = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < end {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            if line.contains("/after-rotations") {
                seen = true;
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "logs -f saw the line written after the rotations");
    let rotated = std::fs::read_dir(d.log_dir.join("jordan"))
        .expect("dir")
        .count();
    assert!(rotated > 5, "the log did rotate: {rotated} files");
}

#[test]
fn an_unwritable_log_directory_keeps_workers_serving_and_counts_drops() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    let dir = d.log_dir.join("jordan");
    std::fs::remove_dir_all(&dir).expect("remove the log dir");
    std::fs::write(&dir, b"a file where the log directory was").expect("block it");
    assert!(d.ctl(&["reopen-logs"]).status.success());
    for i in 0..20 {
        assert!(
            get(d.port("jordan"), &format!("/lost-{i}")).is_ok(),
            "workers keep serving"
        );
    }
    assert!(
        wait_until(WAIT, || d.instance("jordan")["log_dropped_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 0),
        "status shows the dropped bytes: {}",
        d.instance("jordan")
    );
    std::fs::remove_file(&dir).expect("unblock");
    assert!(get(d.port("jordan"), "/kept").is_ok());
    assert!(wait_until(WAIT, || d.log("jordan").contains("/kept")));
    assert!(d
        .log("jordan")
        .contains("bytes of output were lost before this line"));
}

/// `2026-11-24T17:28:09.123Z` for now, as `--since` takes it.
fn utc_now() -> String {
    cts_logs::time::rfc3339_millis(std::time::SystemTime::now())
}

#[test]
fn logs_since_reads_from_a_time_across_rotated_and_gzipped_files() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD")
        .with("workers: 1, logs: {format: timestamped, max_size: 4KB, keep: 1000, compress: true}");
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    d.wait_running("jordan");
    for i in 0..100 {
        assert!(get(port, &format!("/before-{i}")).is_ok());
    }
    assert!(wait_until(WAIT, || d.log("jordan").contains("/before-99 ")));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let since = utc_now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    for i in 0..100 {
        assert!(get(port, &format!("/after-{i}")).is_ok());
    }
    assert!(wait_until(WAIT, || d.log("jordan").contains("/after-99 ")));
    let out = d.ctl(&["logs", "jordan", "--since", &since]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("/before-"), "{text}");
    let after: Vec<&str> = text.lines().filter(|l| l.contains("GET /after-")).collect();
    assert_eq!(
        after.len(),
        100,
        "since {since}: {text}\n{:?}",
        std::fs::read_dir(d.log_dir.join("jordan"))
            .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let gz = std::fs::read_dir(d.log_dir.join("jordan"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "gz"))
        })
        .count();
    assert!(gz >= 2, "the log rotated into gzipped files: {gz}");

    // Everything, from long ago: the earliest lines come out of the oldest .gz.
    let out = d.ctl(&["logs", "jordan", "--since", "1d"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("GET /before-").count(), 100, "{out:?}");
    assert_eq!(
        d.ctl(&["logs", "jordan", "--since", "last tuesday"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn stderr_can_have_its_own_file() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 1, command: {}, logs: {{stderr: separate}}",
        demo(&["--flood", "2000", "--flood-stderr"])
    ));
    let port = inst.port;
    let d = Daemon::start(vec![inst, Inst::new("iraq", "Iraq", "/IQ", "IQD")], "");
    let pid = *d.wait_running("jordan").iter().next().expect("pid");
    assert!(get(port, "/on-stdout").is_ok());
    let dir = d.log_dir.join("jordan");
    assert!(wait_until(WAIT, || {
        std::fs::read_to_string(dir.join("stderr.log"))
            .is_ok_and(|t| t.contains(&format!("{pid} 19 ")))
    }));
    assert!(wait_until(WAIT, || d.log("jordan").contains("/on-stdout")));
    assert!(
        !d.log("jordan").contains(&format!("{pid} 0 ")),
        "stderr stayed apart"
    );
    let out = d.ctl(&["logs", "jordan", "--stderr", "-n", "1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{pid} 19 ")));
    let out = d.ctl(&["logs", "iraq", "--stderr"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("logs.stderr: merged"));
}

#[test]
fn a_reload_applies_changed_log_settings_to_running_workers() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with("workers: 1");
    let port = inst.port;
    let d = Daemon::start(vec![inst.clone()], "");
    let pids = d.wait_running("jordan");
    assert!(get(port, "/plain").is_ok());
    assert!(wait_until(WAIT, || d.log("jordan").contains("/plain")));
    let changed = inst.with("workers: 1, logs: {format: timestamped, max_size: 1MB}");
    write_config(d.dir.path(), &[changed], "");
    let out = d.ctl(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("jordan: update (logs)"), "{plan}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("restart ctsd"));
    assert!(get(port, "/stamped-after-reload").is_ok());
    assert!(wait_until(WAIT, || d
        .log("jordan")
        .contains("/stamped-after-reload")));
    assert_eq!(d.pids("jordan"), pids, "the worker was not replaced");
    let log = d.log("jordan");
    let line = log
        .lines()
        .find(|l| l.contains("/stamped-after-reload"))
        .expect("line");
    let pid = pids.iter().next().expect("pid");
    assert!(line.contains(&format!("Z 0/{pid} out ")), "{line}");
}

/// A tmpfs mounted over a directory for the length of a test, unmounted also on failure.
pub struct Tmpfs(pub std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_keeps_workers_serving_and_counts_drops() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot mount a tmpfs; the unwritable directory test covers drops");
        return;
    }
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    let dir = d.log_dir.join("jordan");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "ctsd-test"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "mount -t tmpfs is not permitted here; the unwritable directory test covers drops"
        );
        return;
    }
    let _guard = Tmpfs(dir.clone());
    assert!(d.ctl(&["reopen-logs"]).status.success());
    let pad = "x".repeat(500);
    for i in 0..100 {
        assert!(
            get(d.port("jordan"), &format!("/full-{i}-{pad}")).is_ok(),
            "workers keep serving on a full disk"
        );
    }
    assert!(
        wait_until(WAIT, || d.instance("jordan")["log_dropped_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 10_000),
        "status shows the dropped bytes: {}",
        d.instance("jordan")
    );
    let table = d.ctl(&["status"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("could not be written"),
        "{table:?}"
    );
    // Room again: the next line gets through, after a marker for the gap.
    std::fs::remove_file(dir.join("output.log")).expect("free the tmpfs");
    assert!(d.ctl(&["reopen-logs"]).status.success());
    assert!(get(d.port("jordan"), "/room-again").is_ok());
    assert!(wait_until(WAIT, || d.log("jordan").contains("/room-again")));
    assert!(d
        .log("jordan")
        .contains("bytes of output were lost before this line"));
    assert!(d.instance("jordan")["state"] == "running");
}

#[test]
fn an_interrupted_follower_is_let_go_at_once() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    d.wait_running("jordan");
    // ctsd's open sockets, by inode: the follower's connection is the one that appears, and
    // sockets closing meanwhile (the connection `wait_running` used) do not blur the picture
    // the way a count would.
    let sockets = || -> std::collections::HashSet<String> {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .map(|dir| {
                dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .map(|t| t.to_string_lossy().into_owned())
                    .filter(|t| t.starts_with("socket:"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = sockets();
    let mut child = std::process::Command::new(ctsctl_bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["logs", "jordan", "-f"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ctsctl logs -f");
    let mut follower = std::collections::HashSet::new();
    let connected = wait_until(WAIT, || {
        follower = sockets().difference(&before).cloned().collect();
        !follower.is_empty()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(connected, "the follower connected");
    // No line is written to the log meanwhile: ctsd notices the hang-up itself.
    assert!(
        wait_until(WAIT, || sockets().is_disjoint(&follower)),
        "the follower's connection was closed: {follower:?} still open"
    );
}

/// Datagrams received on `sock` until one contains `needle` (or the time is up).
fn received_until(sock: &std::os::unix::net::UnixDatagram, needle: &str) -> Vec<String> {
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_millis(200)));
    let end = std::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 17];
    while std::time::Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.contains(needle);
            got.push(msg);
            if done {
                break;
            }
        }
    }
    got
}

/// ctsd running jordan with `logs.sink: sink` on a stand-in socket (returned, with the
/// temporary directory that holds it); `pool` adds settings (`workers: 1`).
fn with_sink(
    sink: &str,
    pool: &str,
) -> (tempfile::TempDir, std::os::unix::net::UnixDatagram, Daemon) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("sink.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("sink stand-in");
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "{pool}, logs: {{sink: \"{sink}\", socket: {}}}",
        path.display()
    ));
    (tmp, sock, Daemon::start(vec![inst], ""))
}

#[test]
fn the_journal_sink_gets_one_entry_per_line_with_instance_worker_and_stream() {
    let (_tmp, journal, d) = with_sink("journal", "workers: 1");
    let port = d.port("jordan");
    let pid = *d.wait_running("jordan").iter().next().expect("a worker");
    assert!(get(port, "/to-the-journal").is_ok());
    let got = received_until(&journal, "/to-the-journal");
    let entry = got
        .iter()
        .find(|m| m.contains("/to-the-journal"))
        .unwrap_or_else(|| panic!("no entry with the request: {got:#?}"));
    let fields: Vec<&str> = entry.lines().collect();
    // The line is the MESSAGE field, whole: nothing of it spills into the next field.
    assert!(
        fields[0].starts_with("MESSAGE=") && fields[0].contains("/to-the-journal"),
        "{entry:?}"
    );
    for field in [
        "PRIORITY=6".to_owned(),
        "SYSLOG_IDENTIFIER=cts-jordan".to_owned(),
        "CTS_INSTANCE=jordan".to_owned(),
        format!("CTS_WORKER_PID={pid}"),
        "CTS_STREAM=stdout".to_owned(),
    ] {
        assert!(
            fields.contains(&field.as_str()),
            "{field} missing in {entry:?}"
        );
    }
    // ctsd's own events about the instance go there too, and the file does not get the lines.
    assert!(
        got.iter().any(|m| m.contains("CTS_STREAM=ctsd")),
        "{got:#?}"
    );
    assert!(!d.log("jordan").contains("/to-the-journal"));
}

#[test]
fn the_syslog_sink_speaks_rfc_5424_with_the_facility() {
    let (_tmp, syslog, d) = with_sink("syslog:local5", "workers: 1");
    let port = d.port("jordan");
    let pid = *d.wait_running("jordan").iter().next().expect("a worker");
    assert!(get(port, "/to-syslog").is_ok());
    let got = received_until(&syslog, "/to-syslog");
    let msg = got
        .iter()
        .find(|m| m.contains("/to-syslog"))
        .unwrap_or_else(|| panic!("no message with the request: {got:#?}"));
    // local5 (21) * 8 + info (6) = 174.
    assert!(msg.starts_with("<174>1 "), "{msg}");
    assert!(
        msg.contains(&format!(" cts-jordan {pid} stdout - ")),
        "{msg}"
    );
    assert!(!msg.ends_with('\n'), "{msg:?}");
}

#[test]
fn a_flood_reaches_the_journal_sink_whole_in_order_and_complete() {
    // Two workers each flood 2,000 lines of 150 bytes at start.
    let command = demo(&["--flood", "300000", "--line-len", "150"]);
    let (_tmp, journal, d) = with_sink("journal", &format!("command: {command}"));
    let _ = journal.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let pids = d.wait_running("jordan");
    let mut next: std::collections::BTreeMap<u32, u64> = pids.iter().map(|p| (*p, 0)).collect();
    let mut buf = vec![0u8; 1 << 17];
    let end = std::time::Instant::now() + WAIT;
    while next.values().any(|n| *n < 2000) && std::time::Instant::now() < end {
        let Ok(n) = journal.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let Some(line) = msg.lines().next().and_then(|l| l.strip_prefix("MESSAGE=")) else {
            continue;
        };
        let mut words = line.split(' ');
        let (Some(pid), Some(seq)) = (
            words.next().and_then(|w| w.parse::<u32>().ok()),
            words.next().and_then(|w| w.parse::<u64>().ok()),
        ) else {
            continue; // the worker's other lines (start-up, access log)
        };
        let Some(want) = next.get_mut(&pid) else {
            continue;
        };
        assert_eq!(seq, *want, "worker {pid}'s lines in order, none lost");
        assert_eq!(line.len(), 149, "a whole line: {line:?}");
        assert!(msg.contains(&format!("CTS_WORKER_PID={pid}\n")), "{msg}");
        *want += 1;
    }
    assert!(
        next.values().all(|n| *n == 2000),
        "lines received: {next:?}"
    );
}
