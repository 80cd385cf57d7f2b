//! `ctsctl upgrade`: ctsd replaces its own binary in place, keeping its pid, and with it every
//! worker, pipe, listening socket and the control socket.
//!
//! # How
//!
//! 1. The control handler checks the new binary first ([`preflight`]: it runs, speaks this
//!    handover format, and accepts the configuration file), before anything changes.
//! 2. The main loop takes the lock deploys take (no start, stop, restart, scale, reload or
//!    deploy meanwhile), checks that the file is what runs and that every pool is at rest,
//!    then asks every actor to hand its pool over: each stops watching its workers without
//!    reaping them and returns the pool's state (workers, phases, deadlines, counters) and
//!    their notify sockets. Each pool's log pumps stop next, giving back their pipes with the
//!    incomplete line each held; the logs are flushed; the control server stops accepting
//!    (connections wait in the socket's queue).
//! 3. [`Handover`] is written as JSON into a memfd; every fd it names is made inheritable, and
//!    ctsd `exec`s the new binary with `--handover <fd>`. The workers stay this process's
//!    children across the exec; one that exits meanwhile stays a zombie until the new ctsd's
//!    watcher (a pidfd) reaps it and reports its exit as usual.
//! 4. The new ctsd runs [`crate::run`] with the handover: the control socket, listeners and
//!    pipes come from it instead of being bound and created; each actor adopts its workers;
//!    the client that asked gets [`cts_proto::Response::Upgraded`] from the new ctsd.
//!
//! If `exec` fails, the same process takes the handover over itself (through the same path)
//! and the client is told why; nothing was restarted either way.

use crate::output::{HandedPipe, Stream};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The handover format this ctsd writes and reads; a binary that answers [`preflight`] with
/// another is not exec'd.
pub const FORMAT: u32 = 1;

/// The hidden argument that makes `ctsd` take over: `ctsd --handover <fd> …`.
pub const HANDOVER_ARG: &str = "--handover";

/// The hidden argument of [`preflight`]: `ctsd --handover-check <config>` prints
/// `ctsd-handover <FORMAT> <version>` after loading the file.
pub const CHECK_ARG: &str = "--handover-check";

/// What one ctsd hands to the next, with the fds it owns.
#[derive(Debug)]
pub struct Handover {
    /// The version that ran before.
    pub from_version: String,
    /// Milliseconds ctsd had been running (its `status` uptime goes on).
    pub uptime_ms: u64,
    /// The control socket's listener.
    pub control: OwnedFd,
    /// The connection of the client that asked, to answer.
    pub reply: Option<OwnedFd>,
    /// Monotonic milliseconds when the old ctsd stopped accepting control connections.
    pub paused_at_ms: u64,
    /// Each instance's listening socket: key, fd, bound by ctsd itself (not systemd).
    pub listeners: Vec<(String, OwnedFd, bool)>,
    /// Every pool, by name (`jordan`, `jordan:celery`).
    pub pools: Vec<(String, cts_supervisor::Handover, Vec<HandedPipe>)>,
    /// Control connections between two requests, each served from its next request on.
    pub connections: Vec<OwnedFd>,
    /// Set when the exec failed and this ctsd took its own handover back: why.
    pub failed: Option<String>,
}

impl Handover {
    /// Workers handed over.
    pub fn workers(&self) -> u32 {
        self.pools
            .iter()
            .map(|(_, h, _)| h.snapshot.workers.len() as u32)
            .sum()
    }

    /// Pipes handed over.
    pub fn pipes(&self) -> u32 {
        self.pools.iter().map(|(_, _, p)| p.len() as u32).sum()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    format: u32,
    from_version: String,
    uptime_ms: u64,
    control: RawFd,
    reply: Option<RawFd>,
    paused_at_ms: u64,
    listeners: Vec<WireListener>,
    pools: Vec<WirePool>,
    #[serde(default)]
    connections: Vec<RawFd>,
}

#[derive(Serialize, Deserialize)]
struct WireListener {
    key: String,
    fd: RawFd,
    own: bool,
}

#[derive(Serialize, Deserialize)]
struct WirePool {
    name: String,
    release: Option<PathBuf>,
    snapshot: cts_supervisor::core::Snapshot,
    notify: Vec<(u64, RawFd)>,
    pipes: Vec<WirePipe>,
    #[serde(default)]
    loader: Option<(u32, RawFd)>,
    #[serde(default)]
    pending: Vec<(u64, Option<cts_supervisor::core::Exit>)>,
}

#[derive(Serialize, Deserialize)]
struct WirePipe {
    slot: u32,
    pid: u32,
    stream: Stream,
    fd: RawFd,
    pending: Vec<u8>,
}

/// ctsd's monotonic clock in milliseconds (the same across an exec, unlike `Instant`s).
pub fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64) * 1000 + (t.tv_nsec() as u64) / 1_000_000)
        .unwrap_or(0)
}

/// Replaces this process by `binary` taking over `handover`; returns only if the exec failed,
/// with the handover back (its fds close-on-exec again) and why.
pub fn exec(binary: &Path, args: &[String], handover: Handover) -> (Handover, String) {
    let memfd = match write(&handover) {
        Ok(fd) => fd,
        Err(e) => return (handover, format!("cannot write the handover: {e}")),
    };
    let fds = fds_of(&handover);
    for fd in fds.iter().chain(std::iter::once(&memfd.as_raw_fd())) {
        let _ = set_cloexec(*fd, false);
    }
    let mut argv: Vec<CString> = Vec::with_capacity(args.len() + 3);
    let cstr =
        |s: &str| CString::new(s).map_err(|_| format!("an argument holds a NUL byte: {s:?}"));
    let built = (|| {
        argv.push(cstr(&binary.to_string_lossy())?);
        for a in args {
            argv.push(cstr(a)?);
        }
        argv.push(cstr(HANDOVER_ARG)?);
        argv.push(cstr(&memfd.as_raw_fd().to_string())?);
        cstr(&binary.to_string_lossy())
    })();
    let why = match built {
        Ok(path) => match nix::unistd::execv(&path, &argv) {
            Err(e) => format!("cannot run {}: {e}", binary.display()),
            Ok(never) => match never {},
        },
        Err(e) => e,
    };
    for fd in fds {
        let _ = set_cloexec(fd, true);
    }
    (handover, why)
}

/// Every fd `h` names.
fn fds_of(h: &Handover) -> Vec<RawFd> {
    let mut fds = vec![h.control.as_raw_fd()];
    fds.extend(h.reply.as_ref().map(AsRawFd::as_raw_fd));
    fds.extend(h.listeners.iter().map(|(_, fd, _)| fd.as_raw_fd()));
    fds.extend(h.connections.iter().map(AsRawFd::as_raw_fd));
    for (_, pool, pipes) in &h.pools {
        fds.extend(pool.notify.iter().map(|(_, fd)| fd.as_raw_fd()));
        fds.extend(pool.loader.iter().map(|(_, fd)| fd.as_raw_fd()));
        fds.extend(pipes.iter().map(|p| p.fd.as_raw_fd()));
    }
    fds
}

fn set_cloexec(fd: RawFd, on: bool) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(drop)
}

/// The handover as JSON in a memfd, positioned at its start.
fn write(h: &Handover) -> std::io::Result<OwnedFd> {
    let wire = Wire {
        format: FORMAT,
        from_version: h.from_version.clone(),
        uptime_ms: h.uptime_ms,
        control: h.control.as_raw_fd(),
        reply: h.reply.as_ref().map(AsRawFd::as_raw_fd),
        paused_at_ms: h.paused_at_ms,
        listeners: h
            .listeners
            .iter()
            .map(|(key, fd, own)| WireListener {
                key: key.clone(),
                fd: fd.as_raw_fd(),
                own: *own,
            })
            .collect(),
        pools: h
            .pools
            .iter()
            .map(|(name, pool, pipes)| WirePool {
                name: name.clone(),
                release: pool.release.clone(),
                snapshot: pool.snapshot.clone(),
                notify: pool
                    .notify
                    .iter()
                    .map(|(id, fd)| (*id, fd.as_raw_fd()))
                    .collect(),
                loader: pool.loader.as_ref().map(|(pid, fd)| (*pid, fd.as_raw_fd())),
                pending: pool.pending.clone(),
                pipes: pipes
                    .iter()
                    .map(|p| WirePipe {
                        slot: p.slot,
                        pid: p.pid,
                        stream: p.stream,
                        fd: p.fd.as_raw_fd(),
                        pending: p.pending.clone(),
                    })
                    .collect(),
            })
            .collect(),
        connections: h.connections.iter().map(AsRawFd::as_raw_fd).collect(),
    };
    let fd = nix::sys::memfd::memfd_create(
        c"ctsd-handover",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&serde_json::to_vec(&wire)?)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// Reads the handover the previous ctsd left in fd `fd`, taking ownership of every fd it
/// names (each made close-on-exec again).
///
/// # Errors
///
/// A handover that cannot be read, of another format, or naming an fd that is not open.
pub fn read(fd: RawFd) -> Result<Handover, String> {
    let open = |fd: RawFd| -> Result<OwnedFd, String> {
        set_cloexec(fd, true).map_err(|e| format!("fd {fd} of the handover: {e}"))?;
        // SAFETY: open (checked above), inherited from the previous ctsd for this handover
        // alone, and named once in it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mut file = std::fs::File::from(open(fd)?);
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| format!("cannot read the handover: {e}"))?;
    let wire: Wire =
        serde_json::from_slice(&text).map_err(|e| format!("the handover is not valid: {e}"))?;
    if wire.format != FORMAT {
        return Err(format!(
            "the handover is of format {}, this ctsd reads {FORMAT}",
            wire.format
        ));
    }
    let mut pools = Vec::with_capacity(wire.pools.len());
    for p in wire.pools {
        let notify = p
            .notify
            .into_iter()
            .map(|(id, fd)| Ok((id, open(fd)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let pipes = p
            .pipes
            .into_iter()
            .map(|w| {
                Ok(HandedPipe {
                    slot: w.slot,
                    pid: w.pid,
                    stream: w.stream,
                    fd: open(w.fd)?,
                    pending: w.pending,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let loader = match p.loader {
            Some((pid, fd)) => Some((pid, open(fd)?)),
            None => None,
        };
        let handover = cts_supervisor::Handover {
            snapshot: p.snapshot,
            release: p.release,
            notify,
            loader,
            pending: p.pending,
        };
        pools.push((p.name, handover, pipes));
    }
    Ok(Handover {
        from_version: wire.from_version,
        uptime_ms: wire.uptime_ms,
        control: open(wire.control)?,
        reply: wire.reply.map(open).transpose()?,
        paused_at_ms: wire.paused_at_ms,
        listeners: wire
            .listeners
            .into_iter()
            .map(|l| Ok((l.key, open(l.fd)?, l.own)))
            .collect::<Result<Vec<_>, String>>()?,
        pools,
        connections: wire
            .connections
            .into_iter()
            .map(open)
            .collect::<Result<Vec<_>, String>>()?,
        failed: None,
    })
}

/// Checks that `binary` can take over from this ctsd: it runs, speaks [`FORMAT`], and accepts
/// the configuration file `config`. Returns its version.
///
/// # Errors
///
/// Why not, in words for the operator.
pub async fn preflight(binary: &Path, config: &Path) -> Result<String, String> {
    let name = binary.display();
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg(CHECK_ARG)
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("cannot run {name}: {e}"))?;
    // Registered on this (the runtime) thread right after the fork, like a worker: the
    // orphan reaper leaves it to its waiter.
    let pid = child.id();
    if let Some(pid) = pid {
        cts_supervisor::contain::watching(pid);
    }
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output()).await;
    if let Some(pid) = pid {
        cts_supervisor::contain::reaped(pid);
    }
    let out = match out {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("cannot run {name}: {e}")),
        Err(_) => return Err(format!("{name} {CHECK_ARG} did not answer within 30 s")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let said = stderr.trim();
        if said.contains(CHECK_ARG) || said.is_empty() {
            return Err(format!(
                "{name} cannot take over from this ctsd (it does not know {CHECK_ARG}: an older \
                 ctsd, or not ctsd): {}",
                if said.is_empty() {
                    out.status.to_string()
                } else {
                    said.lines().next().unwrap_or_default().to_owned()
                }
            ));
        }
        return Err(format!("{name} rejects the configuration file:\n{said}"));
    }
    let mut words = stdout.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("ctsd-handover"), Some(f), Some(version)) if f == FORMAT.to_string() => {
            Ok(version.to_owned())
        }
        (Some("ctsd-handover"), Some(f), _) => Err(format!(
            "{name} reads handover format {f}, this ctsd writes {FORMAT}: stop and start ctsd \
             instead (`systemctl restart ctsd`)"
        )),
        _ => Err(format!(
            "{name} did not answer {CHECK_ARG} as ctsd does: {}",
            stdout.trim()
        )),
    }
}

/// Writes `response` to the client that asked for the upgrade, on the connection handed over.
pub async fn answer(reply: OwnedFd, response: &cts_proto::Response) {
    let std = std::os::unix::net::UnixStream::from(reply);
    if std.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut stream) = tokio::net::UnixStream::from_std(std) else {
        return;
    };
    let write = cts_proto::write_frame(&mut stream, response);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), write).await;
}
