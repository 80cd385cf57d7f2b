//! Preload mode: a pool whose workers are forked by a *loader*, a process that imported the
//! application once (`python -m cts_preload APP`, shipped in `python/cts_preload`), instead of
//! each worker being exec'd and importing it again. The workers share the loader's memory
//! copy-on-write, and a crashed worker is replaced by a fork (milliseconds), not an import.
//!
//! The loader decides nothing. ctsd starts it with the pool's command, like a worker (exec
//! shim, process group, parent-death signal, privileges, the listening socket on fd 3) plus
//! ctsd's end of a `SOCK_SEQPACKET` channel on fd [`crate::spawn::PRELOAD_FD`]. Over the
//! channel ctsd asks for a worker (`spawn <id>` with its own variables, and its stdout and
//! stderr pipes by `SCM_RIGHTS`); the loader forks it twice, so that the worker is reparented
//! to ctsd (a child subreaper), and answers `pid <id> <pid>`. From then on the worker is
//! ctsd's child like any other: ctsd watches it through a pidfd, reads its pipes, takes its
//! `READY=1` on its notify socket, signals its process group and reaps it. The protocol is
//! described in `docs/preload.md`.

use crate::core::{Exit, WorkerId};
use crate::watcher::{PidFd, Watched, WorkerEvent};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The largest message either side sends.
const MAX_MESSAGE: usize = 64 * 1024;

/// What a loader says on its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Said {
    /// It loaded the application and takes requests.
    Ready,
    /// It cannot load the application (the traceback); it exits.
    Failed(String),
    /// It forked worker `id` as `pid`, now ctsd's child.
    Pid(WorkerId, u32),
    /// It could not fork worker `id`: why.
    Error(WorkerId, String),
    /// The channel closed: the loader is gone.
    Closed,
}

/// Parses one message from a loader; `None` for one this ctsd does not know.
pub(crate) fn parse(msg: &[u8]) -> Option<Said> {
    let text = String::from_utf8_lossy(msg);
    let (word, rest) = text.split_once(' ').unwrap_or((&text, ""));
    let id_and = |rest: &str| -> Option<(WorkerId, String)> {
        let (id, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        Some((id.parse().ok()?, arg.to_owned()))
    };
    match word {
        "ready" => Some(Said::Ready),
        "failed" => Some(Said::Failed(rest.to_owned())),
        "pid" => {
            let (id, pid) = id_and(rest)?;
            Some(Said::Pid(id, pid.trim().parse().ok()?))
        }
        "error" => {
            let (id, why) = id_and(rest)?;
            Some(Said::Error(id, why))
        }
        _ => None,
    }
}

/// A new channel: ctsd's end (non-blocking, close-on-exec) and the loader's (close-on-exec
/// too: the spawn puts a copy on fd 4).
pub(crate) fn channel() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?;
    // The loader's end blocks: it waits for requests.
    let flags = nix::fcntl::fcntl(theirs.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(theirs.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok((ours, theirs))
}

/// ctsd's end of a loader's channel.
#[derive(Debug, Clone)]
pub(crate) struct Channel(Arc<AsyncFd<OwnedFd>>);

impl Channel {
    /// Watches `fd` (ctsd's end, non-blocking) on the current runtime.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Channel> {
        // SAFETY: an OwnedFd's fd stays open and the same until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Channel(Arc::new(fd)))
    }

    /// Asks for worker `id` with its variables `env` and its stdout and stderr write ends.
    /// Never waits: a loader that does not read its channel gets an error here.
    pub(crate) fn spawn(
        &self,
        id: WorkerId,
        env: &[(String, String)],
        fds: &[RawFd],
    ) -> io::Result<()> {
        self.request("spawn", id, env, fds)
    }

    /// Sends request `word` (`spawn`, or `loader` to a root) for `id`, with `env` and `fds`.
    pub(crate) fn request(
        &self,
        word: &str,
        id: u64,
        env: &[(String, String)],
        fds: &[RawFd],
    ) -> io::Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let mut msg = format!("{word} {id}").into_bytes();
        for (k, v) in env {
            msg.push(0);
            msg.extend_from_slice(k.as_bytes());
            msg.push(b'=');
            msg.extend_from_slice(v.as_bytes());
        }
        if msg.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request too large",
            ));
        }
        let iov = [io::IoSlice::new(&msg)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        sendmsg::<UnixAddr>(
            self.0.get_ref().as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// The fd back, once every other copy of this channel is gone (its watcher stopped).
    pub(crate) fn into_fd(self) -> Option<OwnedFd> {
        Arc::try_unwrap(self.0).ok().map(AsyncFd::into_inner)
    }

    /// Tells the loader to exit: end of file on its side (ctsd's reading side stays open for
    /// what it still says).
    pub(crate) fn close(&self) {
        let _ = nix::sys::socket::shutdown(
            self.0.get_ref().as_raw_fd(),
            nix::sys::socket::Shutdown::Write,
        );
    }

    /// The next message, waiting for it; [`Said::Closed`] at end of file (or a failed read).
    pub(crate) async fn next(&self) -> Said {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let Ok(mut ready) = self.0.readable().await else {
                return Said::Closed;
            };
            let got = ready.try_io(|fd| {
                nix::sys::socket::recv(
                    fd.get_ref().as_raw_fd(),
                    &mut buf,
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)
            });
            match got {
                Err(_would_block) => continue,
                Ok(Ok(0)) | Ok(Err(_)) => return Said::Closed,
                Ok(Ok(n)) => match parse(&buf[..n]) {
                    Some(said) => return said,
                    None => {
                        let text = String::from_utf8_lossy(&buf[..n.min(200)]).into_owned();
                        tracing::warn!("a preload loader said something unknown: {text:?}");
                    }
                },
            }
        }
    }
}

/// What a loader task reports to its actor.
#[derive(Debug)]
pub(crate) enum LoaderEvent {
    /// Loader `generation` said something.
    Said(u64, Said),
    /// Loader `generation` exited (and was reaped).
    Exited(u64, Exit),
    /// Loader `generation`, asked of a root, was forked as this pid.
    Forked(u64, u32),
}

/// Forwards what loader `generation` says, then its exit, until it exits.
pub(crate) async fn watch(
    generation: u64,
    child: tokio::process::Child,
    channel: Channel,
    events: mpsc::UnboundedSender<WorkerEvent>,
    handover: CancellationToken,
) {
    let pid = child.id();
    follow(
        generation,
        Watched::Child(child),
        pid,
        channel,
        events,
        handover,
    )
    .await;
}

/// [`watch`] for a loader this ctsd took over from the one it replaced (`ctsctl upgrade`).
pub(crate) async fn watch_adopted(
    generation: u64,
    pidfd: PidFd,
    pid: u32,
    channel: Channel,
    events: mpsc::UnboundedSender<WorkerEvent>,
    handover: CancellationToken,
) {
    follow(
        generation,
        Watched::Adopted(pidfd),
        Some(pid),
        channel,
        events,
        handover,
    )
    .await;
}

/// [`watch`] for a loader asked of a root: its pid comes in `forked`, and it is watched
/// through a pidfd (it is ctsd's child by adoption, not a `Child`).
pub(crate) async fn watch_forked(
    generation: u64,
    forked: tokio::sync::oneshot::Receiver<crate::root::Answer>,
    channel: Channel,
    events: mpsc::UnboundedSender<WorkerEvent>,
    handover: CancellationToken,
) {
    let send = |ev| {
        let _ = events.send(WorkerEvent::Loader(ev));
    };
    let not_started = |why: String| Exit {
        success: false,
        description: format!("could not be started: {why}"),
        killed: false,
    };
    let pid = match forked.await {
        Ok(Ok(pid)) => pid,
        Ok(Err(why)) => {
            send(LoaderEvent::Exited(generation, not_started(why)));
            return;
        }
        Err(_) => {
            send(LoaderEvent::Exited(
                generation,
                not_started("the root is gone".into()),
            ));
            return;
        }
    };
    crate::contain::watching(pid);
    send(LoaderEvent::Forked(generation, pid));
    match PidFd::open(pid) {
        Ok(pidfd) => {
            let adopted = Watched::Adopted(pidfd);
            follow(generation, adopted, Some(pid), channel, events, handover).await;
        }
        Err(e) => {
            crate::contain::reaped(pid);
            send(LoaderEvent::Exited(
                generation,
                not_started(format!("it exited at once ({e})")),
            ));
        }
    }
}

/// Forwards what the loader says and its exit; when `handover` is cancelled it stops without
/// reaping the loader (the next ctsd takes it over with the channel).
async fn follow(
    generation: u64,
    mut child: Watched,
    pid: Option<u32>,
    channel: Channel,
    events: mpsc::UnboundedSender<WorkerEvent>,
    handover: CancellationToken,
) {
    let mut open = true;
    let status = loop {
        tokio::select! {
            biased;
            () = handover.cancelled() => {
                if let Watched::Child(c) = child {
                    std::mem::forget(c);
                }
                return;
            }
            status = child.wait() => break status,
            said = channel.next(), if open => {
                open = said != Said::Closed;
                let _ = events.send(WorkerEvent::Loader(LoaderEvent::Said(generation, said)));
            }
        }
    };
    if let Some(pid) = pid {
        crate::contain::reaped(pid);
    }
    // What it said before it exited comes first.
    while open {
        let said = tokio::time::timeout(std::time::Duration::from_millis(100), channel.next())
            .await
            .unwrap_or(Said::Closed);
        open = said != Said::Closed;
        let _ = events.send(WorkerEvent::Loader(LoaderEvent::Said(generation, said)));
    }
    let exit = match status {
        Ok(st) => crate::watcher::describe(st),
        Err(e) => Exit {
            success: false,
            description: format!("could not be waited for: {e}"),
            killed: false,
        },
    };
    let _ = events.send(WorkerEvent::Loader(LoaderEvent::Exited(generation, exit)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_messages_parse() {
        assert_eq!(parse(b"ready 42"), Some(Said::Ready));
        assert_eq!(parse(b"pid 7 1234"), Some(Said::Pid(7, 1234)));
        assert_eq!(
            parse(b"error 7 fork failed: no memory"),
            Some(Said::Error(7, "fork failed: no memory".into()))
        );
        assert_eq!(
            parse(b"failed Traceback (most recent call last):\n  ..."),
            Some(Said::Failed(
                "Traceback (most recent call last):\n  ...".into()
            ))
        );
        assert_eq!(parse(b"pid x 1"), None);
        assert_eq!(parse(b"hello"), None);
    }
}
