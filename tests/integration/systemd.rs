//! ctsd under systemd, with the test doing what systemd does: a notify socket of its own
//! (`NOTIFY_SOCKET`, `WATCHDOG_USEC`) and listening sockets passed as fds (`LISTEN_FDS`).

use crate::util::{get, Daemon, Extra, Inst, WAIT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// The datagrams ctsd sends, as systemd would receive them, with the fds they carry. A thread
/// reads them from the start, as systemd does, so ctsd never finds the queue full.
struct Notifications {
    rx: std::sync::mpsc::Receiver<(String, Vec<OwnedFd>)>,
    seen: Vec<String>,
    /// Listening ports of the fds that came with `FDSTORE=1`, by `FDNAME`.
    stored: Vec<(String, u16)>,
}

impl Notifications {
    fn bind(dir: &std::path::Path) -> (Notifications, String) {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
            use std::os::fd::{AsRawFd, FromRawFd};
            let mut buf = [0u8; 4096];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
            let Ok(msg) = recvmsg::<UnixAddr>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) else {
                return;
            };
            let mut fds = Vec::new();
            for c in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just gave this process these fds.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            let n = msg.bytes;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if tx.send((text, fds)).is_err() {
                return;
            }
        });
        let path = path.to_str().expect("utf-8 path").to_owned();
        (
            Notifications {
                rx,
                seen: Vec::new(),
                stored: Vec::new(),
            },
            path,
        )
    }

    /// Receives until a message satisfies `want`; returns it. Panics after `WAIT`.
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(m) = self.next_before(end) {
                if want(&m) {
                    return m;
                }
            } else {
                panic!("no {what} from ctsd within {WAIT:?}; got: {:#?}", self.seen);
            }
        }
    }

    /// The next message, or `None` once `end` has passed.
    fn next_before(&mut self, end: Instant) -> Option<String> {
        let left = end.checked_duration_since(Instant::now())?;
        let (m, fds) = self.rx.recv_timeout(left).ok()?;
        if let Some(name) = m.strip_prefix("FDSTORE=1\nFDNAME=") {
            assert_eq!(fds.len(), 1, "{m}: one fd attached");
            let local: nix::sys::socket::SockaddrStorage =
                nix::sys::socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(&fds[0]))
                    .expect("a socket");
            let listening =
                nix::sys::socket::getsockopt(&fds[0], nix::sys::socket::sockopt::AcceptConn)
                    .expect("a socket");
            assert!(listening, "{m}: a listening socket");
            let port = local.as_sockaddr_in().map(|a| a.port()).expect("TCP/IPv4");
            self.stored.push((name.to_owned(), port));
        } else {
            assert!(fds.is_empty(), "{m}: no fd expected");
        }
        self.seen.push(m.clone());
        Some(m)
    }

    /// Everything that arrives within `window`.
    fn drain(&mut self, window: Duration) -> Vec<String> {
        let end = Instant::now() + window;
        let mut got = Vec::new();
        while let Some(m) = self.next_before(end) {
            got.push(m);
        }
        got
    }
}

fn two() -> Vec<Inst> {
    vec![
        Inst::new("iraq", "Iraq", "/IQ", "IQD"),
        Inst::new("jordan", "Jordan", "/JO", "JOD"),
    ]
}

#[test]
fn notifies_ready_status_reloading_and_stopping_without_watchdog_pings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut n, path) = Notifications::bind(dir.path());
    let extra = Extra {
        env: vec![("NOTIFY_SOCKET".into(), path)],
        ..Extra::default()
    };
    let mut d = Daemon::start_extra(two(), "", "", extra);
    n.until("READY=1", |m| m.lines().any(|l| l == "READY=1"));
    n.until("a status line with everything up", |m| {
        m == "STATUS=2/2 instances running, 4/4 workers ready"
    });

    // A worker killed: the status line says so, then recovers.
    let victim = *d.wait_running("jordan").iter().next().expect("a pid");
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill worker");
    n.until("a status line naming jordan", |m| {
        m.starts_with("STATUS=1/2 instances running, 3/4 workers ready; jordan starting")
    });
    n.until("the status line back to everything up", |m| {
        m == "STATUS=2/2 instances running, 4/4 workers ready"
    });

    // Reload: RELOADING=1 with the monotonic clock, then READY=1 again.
    let out = d.ctl(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    let reloading = n.until("RELOADING=1", |m| m.starts_with("RELOADING=1\n"));
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC");
    assert!(usec > 0, "{reloading}");
    n.until("READY=1 after the reload", |m| m == "READY=1");

    d.signal_and_wait(Signal::SIGTERM);
    n.until("STOPPING=1", |m| m.starts_with("STOPPING=1"));
    n.drain(Duration::from_millis(200));
    assert!(
        !n.seen.iter().any(|m| m.contains("WATCHDOG")),
        "watchdog pings without WATCHDOG_USEC: {:#?}",
        n.seen
    );
}

#[test]
fn the_status_line_names_a_program_that_is_not_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut n, path) = Notifications::bind(dir.path());
    let extra = Extra {
        env: vec![("NOTIFY_SOCKET".into(), path)],
        ..Extra::default()
    };
    let beat = crate::util::demo(&["--no-socket"]);
    let jordan = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "programs: {{beat: {{command: {beat}, singleton: true}}}}"
    ));
    let d = Daemon::start_extra(vec![jordan], "", "", extra);
    n.until("everything up", |m| {
        m == "STATUS=1/1 instances running, 2/2 workers ready"
    });
    let out = d.ctl(&["stop", "jordan:beat"]);
    assert!(out.status.success(), "{out:?}");
    n.until("a status line naming the program", |m| {
        m == "STATUS=1/1 instances running, 2/2 workers ready; jordan:beat stopped"
    });
}

#[test]
fn pings_the_watchdog_and_stores_sockets_when_systemd_asks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut n, path) = Notifications::bind(dir.path());
    let extra = Extra {
        env: vec![
            ("NOTIFY_SOCKET".into(), path),
            ("WATCHDOG_USEC".into(), "400000".into()),
            ("FDSTORE".into(), "8".into()),
        ],
        ..Extra::default()
    };
    let d = Daemon::start_extra(two(), "", "", extra);
    for i in 0..3 {
        n.until(&format!("WATCHDOG=1 #{}", i + 1), |m| m == "WATCHDOG=1");
    }
    // FileDescriptorStoreMax= set: each instance's listening socket went to the fd store.
    let mut stored = n.stored.clone();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("store.iraq".to_owned(), d.port("iraq")),
            ("store.jordan".to_owned(), d.port("jordan"))
        ]
    );
}

/// A listening socket on a port the OS picked, as a `.socket` unit would hold it.
fn listening() -> (OwnedFd, u16) {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if crate::util::claim_port(port) {
            return (OwnedFd::from(l), port);
        }
    }
}

#[test]
fn serves_on_sockets_passed_by_systemd() {
    let (jordan_fd, jordan_port) = listening();
    let (iraq_fd, iraq_port) = listening();
    let mut insts = two();
    insts[0].port = iraq_port;
    insts[1].port = jordan_port;
    // jordan by its name; iraq under a name that is no instance key, matched by address.
    let extra = Extra {
        sockets: vec![
            ("jordan".into(), jordan_fd),
            ("ctsd-iraq.socket".into(), iraq_fd),
        ],
        ..Extra::default()
    };
    // Both ports are held by the sockets above, so a ctsd that bound its own would fail.
    let d = Daemon::start_extra(insts, "", "", extra);
    for (key, port) in [("jordan", jordan_port), ("iraq", iraq_port)] {
        let body = get(port, "/").unwrap_or_else(|e| panic!("{key}: {e:?}"));
        assert_eq!(body["instance"], key, "{body}");
    }
    d.wait_running("jordan");
}

#[test]
fn a_passed_socket_that_does_not_match_the_config_is_a_clear_error() {
    let (fd, port) = listening();
    let insts = vec![Inst::new("jordan", "Jordan", "/JO", "JOD")];
    let configured = insts[0].port;
    assert_ne!(port, configured);
    // A socket unit's socket (named after the instance, not `store.`): wrong even with the
    // fd store on.
    let extra = Extra {
        sockets: vec![("jordan".into(), fd)],
        env: vec![("FDSTORE".into(), "8".into())],
    };
    let mut d = Daemon::prepare(insts, "", "", extra);
    d.child = Some(d.spawn(None));
    let st = d.wait_exit(WAIT).expect("ctsd exits");
    assert!(!st.success());
    let err = d.stderr();
    assert!(
        err.contains(&format!(
            "the socket passed by systemd as `jordan` (fd 3) listens on 127.0.0.1:{port}, \
             but the configuration says 127.0.0.1:{configured}"
        )),
        "{err}"
    );

    // Not a listening TCP socket at all.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let insts = vec![Inst::new("jordan", "Jordan", "/JO", "JOD")];
    let extra = Extra {
        sockets: vec![("jordan".into(), OwnedFd::from(udp))],
        ..Extra::default()
    };
    let mut d = Daemon::prepare(insts, "", "", extra);
    d.child = Some(d.spawn(None));
    let st = d.wait_exit(WAIT).expect("ctsd exits");
    assert!(!st.success());
    let err = d.stderr();
    assert!(err.contains("not a stream (TCP) socket"), "{err}");
}

#[test]
fn with_the_fd_store_a_stale_stored_socket_is_replaced_and_passed_ones_are_not_stored_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut n, path) = Notifications::bind(dir.path());
    let (stale, stale_port) = listening();
    let (iraq_fd, iraq_port) = listening();
    let mut insts = two();
    insts[0].port = iraq_port;
    let jordan_port = insts[1].port;
    let extra = Extra {
        env: vec![
            ("NOTIFY_SOCKET".into(), path),
            ("FDSTORE".into(), "8".into()),
        ],
        // As after `systemctl restart ctsd` with jordan's port changed in the config meanwhile
        // (ctsd had stored its old socket), and with a socket unit for iraq.
        sockets: vec![("store.jordan".into(), stale), ("iraq".into(), iraq_fd)],
    };
    let d = Daemon::start_extra(insts, "", "", extra);
    n.until("READY=1", |m| m == "READY=1");
    assert!(
        get(jordan_port, "/").is_ok(),
        "jordan bound its configured port"
    );
    assert!(
        get(iraq_port, "/").is_ok(),
        "iraq serves on the passed socket"
    );
    // The new socket replaced the stale one in the store; the socket unit's is not stored.
    assert_eq!(n.stored, [("store.jordan".to_owned(), jordan_port)]);
    assert!(
        d.stderr()
            .contains("closing it and removing it from the store"),
        "{}",
        d.stderr()
    );
    assert!(
        d.stderr().contains(&format!(
            "listens on 127.0.0.1:{stale_port}, but the configuration says 127.0.0.1:{jordan_port}"
        )),
        "{}",
        d.stderr()
    );
}

#[test]
fn on_the_journal_every_event_has_its_priority_and_stays_one_entry() {
    use crate::util::*;
    use std::os::unix::fs::MetadataExt;
    // What systemd does: stderr is the journal's stream, named in JOURNAL_STREAM.
    let mut d = Daemon::prepare(three(), "", "", Default::default());
    let log = d.dir.path().join("journal.txt");
    let file = std::fs::File::create(&log).expect("journal stand-in");
    let meta = file.metadata().expect("stat");
    let mut cmd = std::process::Command::new(ctsd_bin());
    cmd.arg("--config")
        .arg(&d.config)
        .env_remove("CTSD_SOCKET")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(file);
    let mut child = cmd.spawn().expect("ctsd");
    let pid = child.id();
    let ready = wait_until(WAIT, || {
        d.try_status().is_ok_and(|s| {
            s["instances"]
                .as_array()
                .is_some_and(|a| a.iter().all(|i| i["state"] == "running"))
        })
    });
    // A crash is a warning. (SIGABRT: a Rust program survives a SIGSEGV sent from outside.)
    let victim = d.pids("jordan").into_iter().next().expect("a worker");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGABRT,
    );
    let respawned = wait_until(WAIT, || !d.pids("jordan").contains(&victim));
    // An invalid file, rejected through ctsctl: ctsd logs it too, as one error entry.
    std::fs::write(&d.config, "instances: {jordan: {currency: jod}}\n").expect("break");
    let reload = d.ctl(&["reload"]);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = wait_child(&mut child, WAIT);
    let _ = child.kill();
    let _ = child.wait();
    d.child = None;
    assert!(ready, "ctsd ran");
    assert!(respawned, "the crashed worker was replaced");
    assert!(!reload.status.success());
    let text = std::fs::read_to_string(&log).expect("read");
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "a line without its priority: {line:?}\n{text}"
        );
    }
    let rejected: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("reload rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "{text}");
    assert!(
        rejected[0].starts_with("<3>") && rejected[0].contains(" | "),
        "{}",
        rejected[0]
    );
}
