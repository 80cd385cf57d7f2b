//! ctsd under systemd, with the test doing what systemd does: a notify socket of its own
//! (`NOTIFY_SOCKET`, `WATCHDOG_USEC`) and listening sockets passed as fds (`LISTEN_FDS`).

use crate::util::{get, Daemon, Extra, Inst, WAIT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// The datagrams ctsd sends, as systemd would receive them.
struct Notifications {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(dir: &std::path::Path) -> (Notifications, String) {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let path = path.to_str().expect("utf-8 path").to_owned();
        (
            Notifications {
                sock,
                seen: Vec::new(),
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
        self.sock
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
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
    let _d = Daemon::start_extra(two(), "", "", extra);
    for i in 0..3 {
        n.until(&format!("WATCHDOG=1 #{}", i + 1), |m| m == "WATCHDOG=1");
    }
    // FileDescriptorStoreMax= set: each instance's socket went to the fd store by its key.
    for key in ["iraq", "jordan"] {
        assert!(
            n.seen
                .iter()
                .any(|m| m == &format!("FDSTORE=1\nFDNAME={key}")),
            "{key}: {:#?}",
            n.seen
        );
    }
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
    let extra = Extra {
        sockets: vec![("jordan".into(), fd)],
        ..Extra::default()
    };
    let d = Daemon::prepare(insts, "", "", extra);
    let mut child = d.spawn(None);
    let st = crate::util::wait_child(&mut child, WAIT).expect("ctsd exits");
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
    let d = Daemon::prepare(insts, "", "", extra);
    let mut child = d.spawn(None);
    let st = crate::util::wait_child(&mut child, WAIT).expect("ctsd exits");
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
        // As after `systemctl restart ctsd` with jordan's port changed in the config meanwhile.
        sockets: vec![("jordan".into(), stale), ("iraq".into(), iraq_fd)],
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
    assert!(
        n.seen.iter().any(|m| m == "FDSTOREREMOVE=1\nFDNAME=jordan"),
        "{:#?}",
        n.seen
    );
    assert!(
        n.seen.iter().any(|m| m == "FDSTORE=1\nFDNAME=jordan"),
        "{:#?}",
        n.seen
    );
    assert!(
        !n.seen.iter().any(|m| m == "FDSTORE=1\nFDNAME=iraq"),
        "a passed socket stored again: {:#?}",
        n.seen
    );
    assert!(
        d.stderr().contains(&format!(
            "listens on 127.0.0.1:{stale_port}, but the configuration says 127.0.0.1:{jordan_port}"
        )),
        "{}",
        d.stderr()
    );
}
