//! One task per worker that owns its `Child` and notify socket: reaps the child (so it never
//! lingers as a zombie) and forwards `READY=1` and the exit to the actor.

use crate::core::{Exit, WorkerId};
use nix::sys::signal::Signal;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use tokio::net::UnixDatagram;
use tokio::process::Child;
use tokio::sync::mpsc;

/// What a watcher reports.
#[derive(Debug)]
pub(crate) enum WorkerEvent {
    /// The worker sent `READY=1`.
    Ready(WorkerId),
    /// The worker exited and was reaped.
    Exited(WorkerId, Exit),
}

/// Watches `child` until it exits; see the module docs.
pub(crate) async fn watch(
    id: WorkerId,
    mut child: Child,
    mut notify: Option<UnixDatagram>,
    events: mpsc::UnboundedSender<WorkerEvent>,
) {
    enum Step {
        Exited(io::Result<ExitStatus>),
        Notified(io::Result<bool>),
    }
    let pid = child.id();
    let mut buf = vec![0u8; 4096];
    let mut ready_sent = false;
    let status = loop {
        let step = tokio::select! {
            status = child.wait() => Step::Exited(status),
            r = recv_ready(notify.as_ref(), &mut buf) => Step::Notified(r),
        };
        match step {
            Step::Exited(status) => break status,
            Step::Notified(Ok(true)) if !ready_sent => {
                ready_sent = true;
                let _ = events.send(WorkerEvent::Ready(id));
            }
            // Later messages (STATUS=, STOPPING=1) are read and dropped: the socket stays open
            // for the worker's life so that its sd_notify calls keep succeeding.
            Step::Notified(Ok(_)) => {}
            Step::Notified(Err(_)) => notify = None,
        }
    };
    if let Some(pid) = pid {
        crate::contain::reaped(pid);
    }
    let exit = match status {
        Ok(st) => describe(st),
        Err(e) => Exit {
            success: false,
            description: format!("could not be waited for: {e}"),
            killed: false,
        },
    };
    let _ = events.send(WorkerEvent::Exited(id, exit));
}

/// Waits for one datagram on `sock` and tells whether it says `READY=1`; pends forever without
/// a socket.
async fn recv_ready(sock: Option<&UnixDatagram>, buf: &mut [u8]) -> io::Result<bool> {
    let Some(sock) = sock else {
        return std::future::pending().await;
    };
    let n = sock.recv(buf).await?;
    Ok(buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1"))
}

/// "exited with status 1", "killed by SIGKILL".
pub(crate) fn describe(st: ExitStatus) -> Exit {
    if let Some(code) = st.code() {
        return Exit::code(code);
    }
    match st.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => Exit::signaled(s.as_str()),
            Err(_) => Exit::signaled(&format!("signal {sig}")),
        },
        None => Exit {
            success: false,
            description: format!("ended ({st})"),
            killed: false,
        },
    }
}
