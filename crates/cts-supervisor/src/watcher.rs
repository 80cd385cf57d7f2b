//! One task per worker that owns its `Child` and notify socket: reaps the child (so it never
//! lingers as a zombie) and forwards `READY=1` and the exit to the actor.
//!
//! A worker this ctsd did not spawn itself (it took it over from the ctsd it replaced, which
//! had the same pid: `ctsctl upgrade`) is watched through a pidfd instead of a `Child`. When
//! ctsd hands its workers over, each watcher stops without reaping and gives back the notify
//! socket; a worker that exits meanwhile stays a zombie for the next watcher to reap.

use crate::core::{Exit, WorkerId};
use nix::sys::signal::Signal;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixDatagram;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The process a watcher waits for.
pub(crate) enum Watched {
    /// Spawned by this ctsd.
    Child(Child),
    /// Taken over from the ctsd this one replaced: still this process's child, but not a
    /// `Child` of this runtime.
    Adopted(PidFd),
}

impl Watched {
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Watched::Child(c) => c.wait().await,
            Watched::Adopted(p) => p.wait().await,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Watched::Child(c) => c.id(),
            Watched::Adopted(p) => Some(p.pid),
        }
    }
}

/// What a watcher gives back when ctsd hands its workers over.
#[derive(Debug)]
pub(crate) struct Handed {
    /// The worker.
    pub id: WorkerId,
    /// Its notify socket, still bound, with what the worker sent since.
    pub notify: Option<OwnedFd>,
}

/// A pidfd of one of this process's children, readable once the child has exited.
pub(crate) struct PidFd {
    fd: AsyncFd<OwnedFd>,
    pid: u32,
}

impl PidFd {
    /// Opens a pidfd for `pid` (Linux 5.3).
    pub(crate) fn open(pid: u32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd =
            unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd, owned by nobody else; pidfds are close-on-exec.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: an OwnedFd's fd stays open and the same until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(PidFd { fd, pid })
    }

    /// Waits until the child has exited and reaps it.
    async fn wait(&self) -> io::Result<ExitStatus> {
        loop {
            let mut ready = self.fd.readable().await?;
            // SAFETY: an all-zero siginfo_t is valid; waitid fills it in.
            let mut info: nix::libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: a valid pidfd and a siginfo_t to write to.
            let r = unsafe {
                nix::libc::waitid(
                    nix::libc::P_PIDFD,
                    self.fd.get_ref().as_raw_fd() as nix::libc::id_t,
                    &mut info,
                    nix::libc::WEXITED | nix::libc::WNOHANG,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: waitid succeeded: si_pid and si_status are set (si_pid 0: not yet).
            let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
            if pid == 0 {
                ready.clear_ready();
                continue;
            }
            // The raw wait status that `ExitStatus` decodes.
            let raw = match info.si_code {
                nix::libc::CLD_EXITED => (status & 0xff) << 8,
                nix::libc::CLD_DUMPED => (status & 0x7f) | 0x80,
                _ => status & 0x7f,
            };
            return Ok(ExitStatus::from_raw(raw));
        }
    }
}

/// What a watcher reports.
#[derive(Debug)]
pub(crate) enum WorkerEvent {
    /// The worker sent `READY=1`.
    Ready(WorkerId),
    /// The worker exited and was reaped.
    Exited(WorkerId, Exit),
    /// A preload loader said something, or exited.
    Loader(crate::preload::LoaderEvent),
}

/// Watches `child` until it exits, or until `handover` is cancelled (then it gives back the
/// notify socket and leaves the child unreaped); see the module docs.
pub(crate) async fn watch(
    id: WorkerId,
    mut child: Watched,
    mut notify: Option<UnixDatagram>,
    events: mpsc::UnboundedSender<WorkerEvent>,
    handover: CancellationToken,
) -> Option<Handed> {
    enum Step {
        Exited(io::Result<ExitStatus>),
        Notified(io::Result<bool>),
        Handover,
    }
    let pid = child.pid();
    let mut buf = vec![0u8; 4096];
    let mut ready_sent = false;
    let status = loop {
        let step = tokio::select! {
            biased;
            () = handover.cancelled() => Step::Handover,
            status = child.wait() => Step::Exited(status),
            r = recv_ready(notify.as_ref(), &mut buf) => Step::Notified(r),
        };
        match step {
            Step::Handover => {
                // Not reaped, and not handed to tokio's orphan reaper either: the ctsd taking
                // over waits for it (its watcher reaps a worker that exited meanwhile).
                if let Watched::Child(c) = child {
                    std::mem::forget(c);
                }
                let notify = notify.and_then(|n| n.into_std().ok()).map(OwnedFd::from);
                return Some(Handed { id, notify });
            }
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
    None
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
