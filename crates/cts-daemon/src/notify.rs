//! Telling whoever started ctsd that it is ready: systemd's `NOTIFY_SOCKET` (sd_notify) and the
//! `--ready-fd` byte (the s6 notification-fd idea, used by tests and scripts).

use std::io::Write;
use std::os::fd::OwnedFd;

/// Sends `state` (e.g. `READY=1\nSTATUS=...`) to `$NOTIFY_SOCKET` if set. Errors are logged,
/// never fatal: ctsd works without systemd.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let r = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        tracing::warn!("cannot notify systemd ({}): {e}", path.to_string_lossy());
    }
}

/// Writes one newline to the readiness fd and closes it.
pub fn ready_fd(fd: OwnedFd) {
    let mut f = std::fs::File::from(fd);
    if let Err(e) = f.write_all(b"\n") {
        tracing::warn!("cannot write to the readiness fd: {e}");
    }
}
