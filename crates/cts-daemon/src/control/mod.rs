//! The control socket: a Unix stream socket speaking `cts-proto`.
//!
//! Each connection is its own task, bounded in number (see [`admission`]: a reserve for admins,
//! a share per user), in time (the handshake must arrive within [`HANDSHAKE_TIMEOUT`], an idle
//! connection is closed after [`IDLE_TIMEOUT`]) and in frame size (by who sends it, checked
//! before allocating, large frames within one budget for all connections). A slow or hostile
//! client therefore holds at most one task and a small buffer; it never stalls the instance
//! actors, other clients, or the operators.
//!
//! Handlers read the instances from what the [registry](crate::registry) publishes and talk to
//! their actors directly; what acts on the daemon itself (`shutdown`, `reopen-logs`, `reload`,
//! and recording a `scale` in the registry) goes to the main loop as a
//! [`DaemonEvent`]. Nothing below this module uses it.

pub mod access;
pub mod admission;
pub mod handlers;

use crate::registry::{InstanceEntry, Published};
use crate::signals::DaemonEvent;
use cts_proto::{
    decode_request, ErrorKind, ErrorReply, FrameError, Request, Response, Welcome, PROTO_VERSION,
};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Time a client has to send its `Hello`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay silent between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time to write one response to a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused client is given to read why before its connection is closed.
pub const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// What control connections share.
#[derive(Debug)]
pub struct Shared {
    /// The instances, as the registry publishes them.
    pub instances: Arc<Published>,
    /// When ctsd started.
    pub started: Instant,
    /// Who may do what.
    pub access: access::Access,
    /// Requests that act on the daemon itself (`shutdown`, `reopen-logs`, `reload`, a `scale`
    /// to record) go to its main loop.
    pub events: mpsc::Sender<DaemonEvent>,
    /// The deploy in progress, if any.
    pub deploying: Arc<crate::deploy::DeployLock>,
    /// The ctsd binary, exec shim of deploy jobs (and what `upgrade` runs by default).
    pub shim: std::path::PathBuf,
    /// The configuration file, which the binary of an `upgrade` is asked to accept.
    pub config_file: Option<std::path::PathBuf>,
}

impl Shared {
    /// The instances as they are now.
    pub fn snapshot(&self) -> Vec<InstanceEntry> {
        self.instances.snapshot()
    }

    /// The `deploy:` section of the running configuration.
    pub fn deploy(&self) -> cts_config::DeploySettings {
        self.instances.deploy()
    }
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another ctsd answers on this socket.
    #[error(
        "another ctsd is already running with control socket {0}; stop it first or use --socket"
    )]
    AlreadyRunning(PathBuf),
    /// A system call failed.
    #[error("cannot set up control socket {path}: {about}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        about: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Binds the control socket at `path` with `mode` (and `group`, when given). A socket file left
/// by a dead ctsd is replaced; the socket of a live one is never taken over.
///
/// # Errors
///
/// [`ControlError::AlreadyRunning`] when a daemon answers on `path`, [`ControlError::Io`] when
/// the directory, the socket or its permissions cannot be set up.
pub fn bind(path: &Path, mode: u32, group: Option<&str>) -> Result<UnixListener, ControlError> {
    let io_err = |about, source| ControlError::Io {
        path: path.to_owned(),
        about,
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating its directory", e))?;
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => return Err(ControlError::AlreadyRunning(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("removing stale control socket {}", path.display());
            std::fs::remove_file(path).map_err(|e| io_err("removing the stale socket", e))?;
        }
        Err(e) => return Err(io_err("checking for a running ctsd", e)),
    }
    // Bind under a restrictive umask so the socket is never, even briefly, more open than
    // `mode`; ctsd has no other thread creating files yet.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|e| io_err("binding", e))?;
    if let Some(name) = group {
        let gid = nix::unistd::Group::from_name(name)
            .map_err(|e| io_err("looking up socket_group", e.into()))?
            .ok_or_else(|| {
                io_err(
                    "looking up socket_group",
                    io::Error::other(format!("no group `{name}`")),
                )
            })?
            .gid;
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| io_err("changing its group", e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("setting its mode", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_err("binding", e))?;
    UnixListener::from_std(listener).map_err(|e| io_err("binding", e))
}

/// Accepts connections until `cancel` fires, then waits for the connections in progress.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, cancel: CancellationToken) {
    serve_handing_over(
        listener,
        shared,
        cancel,
        CancellationToken::new(),
        Vec::new(),
    )
    .await;
}

/// [`serve`], for a ctsd that is handed over or takes over (`ctsctl upgrade`): cancelling
/// `handover` stops accepting, and each connection ends once it is between two requests (a
/// request in hand is answered first) and is returned, still open, for the next ctsd;
/// `inherited` are the connections the previous ctsd returned so, served from their next
/// request on.
pub async fn serve_handing_over(
    listener: UnixListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    handover: CancellationToken,
    inherited: Vec<std::os::fd::OwnedFd>,
) -> Vec<std::os::fd::OwnedFd> {
    let admission = admission::Admission::default();
    let tracker = TaskTracker::new();
    let handed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let greeted = inherited.into_iter().filter_map(|fd| {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true).ok()?;
        UnixStream::from_std(std).ok()
    });
    let mut greeted: std::collections::VecDeque<UnixStream> = greeted.collect();
    loop {
        let (stream, was_greeted) = match greeted.pop_front() {
            Some(s) => (s, true),
            None => match next_connection(&listener, &cancel, &handover).await {
                Some(s) => (s, false),
                None => break,
            },
        };
        let (uid, role) = match stream.peer_cred() {
            Ok(c) => (c.uid(), shared.access.role(c.uid(), c.gid(), c.pid())),
            Err(e) => {
                tracing::warn!("control connection without peer credentials: {e}");
                (u32::MAX, access::Role::None)
            }
        };
        match admission.admit(uid, role) {
            Ok(ticket) => {
                let (shared, cancel, admission) =
                    (shared.clone(), cancel.clone(), admission.clone());
                let (handover, handed) = (handover.clone(), handed.clone());
                tracker.spawn(async move {
                    let kept = connection(
                        stream,
                        role,
                        &shared,
                        &cancel,
                        &handover,
                        &admission,
                        was_greeted,
                    )
                    .await;
                    if let Some(stream) = kept.and_then(|s| s.into_std().ok()) {
                        handed
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(std::os::fd::OwnedFd::from(stream));
                    }
                    drop(ticket);
                });
            }
            // Told why, within a bound; beyond it the connection is simply closed.
            Err(why) => match admission.refusal() {
                Some(permit) => {
                    tracker.spawn(async move {
                        refuse(stream, why).await;
                        drop(permit);
                    });
                }
                None => drop(stream),
            },
        }
    }
    tracker.close();
    tracker.wait().await;
    let kept = std::mem::take(
        &mut *handed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    kept
}

/// The next connection `listener` accepts; `None` once `cancel` or `handover` is cancelled.
async fn next_connection(
    listener: &UnixListener,
    cancel: &CancellationToken,
    handover: &CancellationToken,
) -> Option<UnixStream> {
    loop {
        let accepted = tokio::select! {
            // Stop accepting on shutdown, or for a handover (connections then wait in the
            // socket's queue for the next ctsd).
            () = cancel.cancelled() => return None,
            () = handover.cancelled() => return None,
            // A client connects.
            r = listener.accept() => r,
        };
        match accepted {
            Ok((s, _)) => return Some(s),
            Err(e) => tracing::warn!("control socket accept failed: {e}"),
        }
    }
}

/// Tells a refused client why and lets it read that: the reply is written first, then the
/// connection stays open (its `hello` read and dropped) until the client closes it or
/// [`REFUSAL_LINGER`] passes, so the client's own write does not fail with a broken pipe.
async fn refuse(mut stream: UnixStream, why: admission::Refused) {
    let busy = ErrorReply::new(ErrorKind::Failed, why.message());
    if send(&mut stream, &busy.into()).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut sink = [0u8; 512];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

async fn send(stream: &mut UnixStream, resp: &Response) -> Result<(), FrameError> {
    match tokio::time::timeout(WRITE_TIMEOUT, cts_proto::write_frame(stream, resp)).await {
        Ok(r) => r,
        Err(_) => Err(FrameError::Io(io::ErrorKind::TimedOut.into())),
    }
}

/// What reading a frame gave.
enum Inbound {
    /// A whole frame.
    Frame(Vec<u8>),
    /// The connection should end without a word: closed, timed out, or failed.
    Gone,
    /// The connection should end with this reply (a frame too large, a budget spent, a
    /// stream that cannot be resynchronised).
    Reject(ErrorReply),
}

/// Reads one frame within `within`, of at most `max` bytes; a frame above the small size takes
/// its bytes from the shared budget before anything is allocated.
async fn receive(
    stream: &mut UnixStream,
    within: Duration,
    max: u32,
    admission: &admission::Admission,
) -> Inbound {
    let read = async {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match stream.read(&mut len[got..]).await {
                Ok(0) if got == 0 => return Inbound::Gone,
                Ok(0) => return Inbound::Reject(frame_error(&FrameError::Truncated)),
                Ok(n) => got += n,
                Err(_) => return Inbound::Gone,
            }
        }
        let len = u32::from_be_bytes(len);
        if len > max {
            return Inbound::Reject(ErrorReply::new(
                ErrorKind::TooLarge,
                format!("a frame of {len} bytes is larger than the {max} bytes this peer may send"),
            ));
        }
        let Some(_reserved) = admission.reserve_frame(len) else {
            return Inbound::Reject(ErrorReply::new(
                ErrorKind::Failed,
                "ctsd is busy: too much request data is in flight; retry",
            ));
        };
        let mut buf = vec![0u8; len as usize];
        match stream.read_exact(&mut buf).await {
            Ok(_) => Inbound::Frame(buf),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Inbound::Reject(frame_error(&FrameError::Truncated))
            }
            Err(_) => Inbound::Gone,
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Inbound::Gone)
}

/// One client: handshake, then requests until it hangs up, idles out, or ctsd shuts down.
async fn connection(
    mut stream: UnixStream,
    role: access::Role,
    shared: &Shared,
    cancel: &CancellationToken,
    handover: &CancellationToken,
    admission: &admission::Admission,
    greeted: bool,
) -> Option<UnixStream> {
    if !greeted && !hello(&mut stream, role, admission).await {
        return None;
    }
    serve_requests(stream, role, shared, cancel, handover, admission).await
}

/// The handshake; whether the connection goes on.
async fn hello(
    stream: &mut UnixStream,
    role: access::Role,
    admission: &admission::Admission,
) -> bool {
    let hello_max = admission::frame_limit(role, false);
    let first = match receive(stream, HANDSHAKE_TIMEOUT, hello_max, admission).await {
        Inbound::Frame(bytes) => bytes,
        Inbound::Reject(e) => {
            let _ = send(stream, &e.into()).await;
            return false;
        }
        Inbound::Gone => return false,
    };
    // Refused peers still get the handshake read first, so their client sees the reason
    // instead of a broken pipe.
    if role == access::Role::None {
        let e = ErrorReply::new(
            ErrorKind::PermissionDenied,
            "permission denied: this user is neither an admin nor in ctsd's socket_group",
        );
        let _ = send(stream, &e.into()).await;
        return false;
    }
    match decode_request(&first) {
        Ok(Request::Hello(h)) if PROTO_VERSION.compatible_with(h.proto) => {
            let welcome = Welcome {
                proto: PROTO_VERSION,
                daemon_version: crate::VERSION.to_owned(),
            };
            if send(stream, &Response::Welcome(welcome)).await.is_err() {
                return false;
            }
        }
        Ok(Request::Hello(h)) => {
            let msg = format!(
                "protocol mismatch: client speaks {}, ctsd {} speaks {PROTO_VERSION}; use the ctsctl of the same release",
                h.proto,
                crate::VERSION
            );
            let _ = send(
                stream,
                &ErrorReply::new(ErrorKind::ProtocolMismatch, msg).into(),
            )
            .await;
            return false;
        }
        Ok(_) | Err(_) => {
            let e = ErrorReply::new(
                ErrorKind::HandshakeRequired,
                "the first message must be `hello`",
            );
            let _ = send(stream, &e.into()).await;
            return false;
        }
    }
    true
}

/// Requests until the client hangs up, idles out, ctsd shuts down, or (between two
/// requests) ctsd is handed over: then the connection is returned, still open.
async fn serve_requests(
    mut stream: UnixStream,
    role: access::Role,
    shared: &Shared,
    cancel: &CancellationToken,
    handover: &CancellationToken,
    admission: &admission::Admission,
) -> Option<UnixStream> {
    let max = admission::frame_limit(role, true);
    loop {
        // Between two requests: a handover takes the connection as it is (nothing of the next
        // request read yet), so that the next ctsd answers it.
        let waited = tokio::time::timeout(IDLE_TIMEOUT, async {
            tokio::select! {
                biased;
                r = stream.readable() => r.is_ok(),
                () = cancel.cancelled() => false,
                () = handover.cancelled() => true,
            }
        })
        .await;
        match waited {
            Ok(true) if handover.is_cancelled() && !readable_now(&stream) => return Some(stream),
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
        let frame = tokio::select! {
            // ctsd is shutting down: drop the connection.
            () = cancel.cancelled() => return None,
            // The next request (or silence until the idle timeout).
            f = receive(&mut stream, IDLE_TIMEOUT, max, admission) => f,
        };
        let bytes = match frame {
            Inbound::Gone => return None,
            Inbound::Frame(b) => b,
            Inbound::Reject(e) => {
                // After a bad length or a truncated frame the stream cannot be resynchronised.
                let _ = send(&mut stream, &e.into()).await;
                return None;
            }
        };
        let response = match decode_request(&bytes) {
            Ok(req) if role < handlers::required_role(&req) => ErrorReply::new(
                ErrorKind::PermissionDenied,
                "permission denied: changing state needs root or a user or group in ctsd.admins",
            )
            .into(),
            Ok(Request::Upgrade(r)) => {
                use std::os::fd::AsFd;
                let Ok(client) = stream.as_fd().try_clone_to_owned() else {
                    return None;
                };
                match handlers::upgrade::handle(&r, shared, client).await {
                    Some(refused) => refused,
                    None => {
                        // Handing over: the new ctsd answers on the duplicate (this
                        // connection is not handed over as one).
                        tokio::select! {
                            () = cancel.cancelled() => {}
                            () = handover.cancelled() => {}
                        }
                        return None;
                    }
                }
            }
            Ok(req) => {
                // Progress frames a handler emits go out while it runs; its answer comes last.
                let (emit, mut emitted) = tokio::sync::mpsc::channel(handlers::EMIT_QUEUE);
                let work = handlers::handle(req, shared, emit);
                tokio::pin!(work);
                loop {
                    tokio::select! {
                        biased;
                        // ctsd is stopping: end even a `logs -f` that would never finish.
                        () = cancel.cancelled() => return None,
                        Some(p) = emitted.recv() => {
                            if send(&mut stream, &p).await.is_err() {
                                return None;
                            }
                        }
                        // The client hung up (a `logs -f` interrupted) or broke the protocol by
                        // writing while it waits for an answer: drop the handler now, not at its
                        // next frame. (A client that shuts down its write side after sending its
                        // request counts as gone: ctsctl never does; one request per write-open
                        // connection is the protocol.)
                        Ok(()) = stream.readable() => {
                            let mut byte = [0u8; 1];
                            match stream.try_read(&mut byte) {
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                _ => return None,
                            }
                        }
                        r = &mut work => {
                            // Frames queued in the same poll that finished the handler.
                            while let Ok(p) = emitted.try_recv() {
                                if send(&mut stream, &p).await.is_err() {
                                    return None;
                                }
                            }
                            break r;
                        }
                    }
                }
            }
            Err(e) => e.into(),
        };
        if send(&mut stream, &response).await.is_err() {
            return None;
        }
    }
}

/// Whether bytes (or the end of the stream) wait to be read on `stream`.
fn readable_now(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    !matches!(
        nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            &mut byte,
            nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ),
        Err(nix::errno::Errno::EAGAIN)
    )
}

fn frame_error(e: &FrameError) -> ErrorReply {
    match e {
        FrameError::TooLarge(_) => ErrorReply::new(ErrorKind::TooLarge, e.to_string()),
        _ => ErrorReply::new(ErrorKind::Malformed, e.to_string()),
    }
}
