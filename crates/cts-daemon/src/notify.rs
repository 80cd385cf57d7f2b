//! Talking to whoever started ctsd: systemd's `NOTIFY_SOCKET` (sd_notify: readiness, status,
//! reload, stop, watchdog, fd store) and the `--ready-fd` byte (the s6 notification-fd idea,
//! used by tests and scripts). The primitives only: what ctsd says while it runs (its status
//! line, the watchdog's pings) is decided in the `systemd` module.

use nix::sys::socket::{self, ControlMessage, MsgFlags, UnixAddr};
use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The notify socket's address, if systemd gave one.
fn notify_addr() -> Option<std::io::Result<UnixAddr>> {
    let path = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty())?;
    let bytes = path.as_encoded_bytes();
    Some(
        match bytes.strip_prefix(b"@") {
            Some(name) => UnixAddr::new_abstract(name),
            None => UnixAddr::new(bytes),
        }
        .map_err(std::io::Error::from),
    )
}

/// Whether `NOTIFY_SOCKET` is set (ctsd runs under systemd's `Type=notify`).
pub fn enabled() -> bool {
    notify_addr().is_some()
}

/// Sends `state` (e.g. `READY=1\nSTATUS=...`) to `$NOTIFY_SOCKET` if set. Errors are logged,
/// never fatal: ctsd works without systemd.
pub fn sd_notify(state: &str) {
    send(state, &[]);
}

/// Tells systemd that ctsd is reloading its configuration (`RELOADING=1` with the
/// `MONOTONIC_USEC=` that `Type=notify-reload` requires); `READY=1` ends it.
pub fn reloading() {
    sd_notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// CLOCK_MONOTONIC in microseconds, for systemd's `RELOADING=1` protocol.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0)
}

/// Sends `state` with `fds` attached (`FDSTORE=1`).
fn send(state: &str, fds: &[RawFd]) {
    let Some(addr) = notify_addr() else {
        return;
    };
    let r = addr.and_then(|addr| {
        let sock = socket::socket(
            socket::AddressFamily::Unix,
            socket::SockType::Datagram,
            socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let iov = [IoSlice::new(state.as_bytes())];
        let cmsgs = [ControlMessage::ScmRights(fds)];
        let cmsgs = if fds.is_empty() { &[][..] } else { &cmsgs[..] };
        // Never wait: a notify socket whose queue is full must not stall the runtime thread.
        socket::sendmsg(
            sock.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_DONTWAIT,
            Some(&addr),
        )?;
        Ok(())
    });
    if let Err(e) = r {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Whether systemd keeps fds for ctsd (`FileDescriptorStoreMax=` > 0: systemd 254 and later
/// set `$FDSTORE` to it; on older versions put `Environment=FDSTORE=N` in the unit).
pub fn fd_store_enabled() -> bool {
    enabled()
        && std::env::var("FDSTORE")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|n| n > 0)
}

/// Prefix of the names under which ctsd stores the instances' sockets (`store.jordan`), so that
/// they are told apart from sockets of socket units (`FileDescriptorName=jordan`) when they
/// come back in `LISTEN_FDNAMES`.
pub const STORE_PREFIX: &str = "store.";

/// Hands the instance `key`'s listening socket to systemd's fd store, replacing whatever was
/// stored for it, so that the port stays open while ctsd restarts.
pub fn fd_store(key: &str, fd: &OwnedFd) {
    if fd_store_enabled() {
        send(&format!("FDSTOREREMOVE=1\nFDNAME={STORE_PREFIX}{key}"), &[]);
        send(
            &format!("FDSTORE=1\nFDNAME={STORE_PREFIX}{key}"),
            &[fd.as_raw_fd()],
        );
    }
}

/// Drops the instance `key`'s socket from systemd's fd store (the instance was removed).
pub fn fd_store_remove(key: &str) {
    if fd_store_enabled() {
        send(&format!("FDSTOREREMOVE=1\nFDNAME={STORE_PREFIX}{key}"), &[]);
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set for this process
/// (`$WATCHDOG_PID` absent or ctsd's pid).
pub fn watchdog_interval() -> Option<Duration> {
    if !enabled() {
        return None;
    }
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Writes one newline to the readiness fd and closes it.
pub fn ready_fd(fd: OwnedFd) {
    let mut f = std::fs::File::from(fd);
    if let Err(e) = f.write_all(b"\n") {
        tracing::warn!("cannot write to the readiness fd: {e}");
    }
}
