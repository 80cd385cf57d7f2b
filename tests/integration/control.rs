//! The control socket and ctsctl's exit codes.

use crate::util::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;

#[test]
fn socket_is_created_with_mode_0660() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn exit_codes_unknown_instance_and_unreachable() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let out = d.ctl(&["restart", "jordn"]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown instance jordn") && err.contains("jordan"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let out = Command::new(ctsctl_bin())
        .args(["--socket", "/nonexistent/ctsd.sock", "status"])
        .env_remove("CTSD_SOCKET")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is ctsd running?"));

    let out = Command::new(ctsctl_bin())
        .args(["restart"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn socket_found_through_env_and_config() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let out = Command::new(ctsctl_bin())
        .args(["status", "--json"])
        .env("CTSD_SOCKET", &d.socket)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(ctsctl_bin())
        .arg("--config")
        .arg(&d.config)
        .arg("status")
        .env_remove("CTSD_SOCKET")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("jordan"));
}

#[test]
fn garbage_and_oversized_frames_get_errors_and_the_daemon_carries_on() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    // Garbage instead of a hello.
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    s.write_all(&5u32.to_be_bytes())
        .and_then(|()| s.write_all(b"\xff\xfe{{{"))
        .expect("write");
    let reply = read_reply(&mut s);
    assert_eq!(reply["type"], "error");
    // An announced 2 GB frame is refused before anything is allocated.
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    s.write_all(&0x8000_0000u32.to_be_bytes()).expect("write");
    let reply = read_reply(&mut s);
    assert_eq!(reply["kind"], "too_large");
    // A greeted connection: an unknown request gets an error and the connection stays usable.
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    send(&mut s, r#"{"type":"hello","proto":{"major":1,"minor":0}}"#);
    assert_eq!(read_reply(&mut s)["type"], "welcome");
    send(&mut s, r#"{"type":"frobnicate"}"#);
    assert_eq!(read_reply(&mut s)["kind"], "unknown_request");
    send(&mut s, r#"{"type":"status"}"#);
    assert_eq!(read_reply(&mut s)["type"], "status");
    // A major mismatch is its own error and exit code.
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    send(&mut s, r#"{"type":"hello","proto":{"major":99,"minor":0}}"#);
    assert_eq!(read_reply(&mut s)["kind"], "protocol_mismatch");
    // Half a frame, then silence: that client holds only its own connection.
    let mut half = UnixStream::connect(&d.socket).expect("connect");
    half.write_all(&100u32.to_be_bytes()).expect("write");
    let out = d.ctl(&["status"]);
    assert!(
        out.status.success(),
        "status answers while a client is stuck"
    );
}

fn send(s: &mut UnixStream, json: &str) {
    s.write_all(&(json.len() as u32).to_be_bytes())
        .expect("write length");
    s.write_all(json.as_bytes()).expect("write body");
}

fn read_reply(s: &mut UnixStream) -> serde_json::Value {
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("reply length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("reply body");
    serde_json::from_slice(&body).expect("reply JSON")
}

#[test]
fn two_hundred_idle_connections_do_not_stall_status() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&d.socket).expect("connect"))
        .collect();
    let out = d.ctl(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Idle clients that never say hello are dropped after the handshake timeout.
    let mut first = idle.into_iter().next().expect("one");
    first.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 1];
    assert_eq!(
        first.read(&mut buf).unwrap_or(0),
        0,
        "the daemon closed the idle connection"
    );
}

#[test]
fn a_second_ctsd_never_steals_a_live_socket_but_replaces_a_stale_one() {
    let mut d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let pids = d.wait_running("jordan");
    let out = Command::new(ctsd_bin())
        .arg("--config")
        .arg(&d.config)
        .env_remove("CTSD_SOCKET")
        .output()
        .expect("run a second ctsd");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another ctsd is already running"), "{err}");
    assert!(
        get(d.port("jordan"), "/").is_ok(),
        "the first one still serves"
    );
    // Kill it hard: its socket file stays behind, stale.
    d.signal_and_wait(nix::sys::signal::Signal::SIGKILL);
    assert!(d.socket.exists());
    assert!(wait_until(WAIT, || pids.iter().all(|p| !pid_alive(*p))));
    // A new ctsd on the same configuration replaces the stale file and serves.
    d.respawn();
    assert_eq!(
        get(d.port("jordan"), "/").expect("served again")["instance"],
        "jordan"
    );
}
