//! Binding the instances' listening sockets. ctsd owns them for its whole life, so replacing
//! workers never closes a port: connections wait in the backlog instead of being refused.

use cts_config::Config;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Pending connections the kernel keeps per port while no worker accepts (gunicorn's default).
const BACKLOG: i32 = 2048;

/// A port that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("instance {instance}: cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The instance key.
    pub instance: String,
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// A listening socket ctsd's parent passed (systemd socket activation, or its fd store).
#[derive(Debug)]
pub struct Passed {
    /// `LISTEN_FDNAMES` entry: an instance key when the socket unit says
    /// `FileDescriptorName=<key>` (or the fd store kept it under that name).
    pub name: String,
    /// The fd number it arrived as, for messages.
    pub number: RawFd,
    /// The socket.
    pub fd: OwnedFd,
}

/// The sockets passed with `LISTEN_FDS`, until instances claim them. Those no instance claims
/// at start stay here for a reload that adds their instance.
#[derive(Debug, Default)]
pub struct PassedSockets(Vec<Passed>);

impl PassedSockets {
    /// Takes over the fds that `LISTEN_FDS`/`LISTEN_FDNAMES` describe when `LISTEN_PID` is this
    /// process, marks them close-on-exec and removes the variables (sd_listen_fds with
    /// `unset_environment`). Call it first thing in `main`, before threads exist.
    pub fn from_env() -> PassedSockets {
        let pid = std::env::var("LISTEN_PID").ok();
        let count = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(var);
        }
        if pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
            return PassedSockets::default();
        }
        let count: RawFd = count.and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut names = names.split(':');
        let mut passed = Vec::new();
        for number in 3..3 + count.max(0) {
            let name = names.next().unwrap_or("unknown").to_owned();
            // Open and ours (systemd guarantees both); CLOEXEC so no worker inherits it by
            // accident: a worker gets its instance's socket as fd 3, dup'ed explicitly.
            if nix::fcntl::fcntl(
                number,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .is_err()
            {
                tracing::warn!("LISTEN_FDS names fd {number}, which is not open; ignored");
                continue;
            }
            // SAFETY: the fd is open (checked above) and was handed to this process alone
            // (LISTEN_PID); nothing else here owns it, and it is taken once: the variables that
            // name it were removed above, so a second call takes nothing.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(number) };
            passed.push(Passed { name, number, fd });
        }
        PassedSockets(passed)
    }

    /// Sockets not claimed by an instance.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether every passed socket has been claimed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The passed socket for `instance` at `addr`: the one named after the instance, checked
    /// to be a listening stream socket on `addr`; else one listening on `addr` under another
    /// name. `None` when there is none: the caller binds.
    fn take(&mut self, instance: &str, addr: SocketAddr) -> Option<Result<OwnedFd, BindError>> {
        let fail = |p: &Passed, why: String| BindError {
            instance: instance.to_owned(),
            addr,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the socket passed by systemd as `{}` (fd {}) {why}",
                    p.name, p.number
                ),
            ),
        };
        let stored = format!("{}{instance}", crate::notify::STORE_PREFIX);
        if let Some(i) = self
            .0
            .iter()
            .position(|p| p.name == instance || p.name == stored)
        {
            let p = self.0.remove(i);
            let why = match listening_addr(&p.fd) {
                Ok(found) if found == addr => {
                    tracing::info!(
                        instance,
                        "using the socket passed by systemd as `{}` (fd {}, {addr})",
                        p.name,
                        p.number
                    );
                    return Some(Ok(p.fd));
                }
                Ok(found) => format!("listens on {found}, but the configuration says {addr}"),
                Err(why) => why,
            };
            if p.name == stored {
                // ctsd's own fd store, holding the port of an older configuration (the file
                // changed while ctsd was down): drop it there too, and bind the configured one.
                tracing::warn!(
                    instance,
                    "the socket ctsd stored in systemd's fd store as `{}` (fd {}) {why}; \
                     closing it and removing it from the store",
                    p.name,
                    p.number
                );
                crate::notify::fd_store_remove(instance);
                return None;
            }
            // A socket unit's: the operator said which port; a mismatch is theirs to fix.
            return Some(Err(fail(&p, why)));
        }
        let i = self.0.iter().position(|p| {
            !p.name.starts_with(crate::notify::STORE_PREFIX)
                && listening_addr(&p.fd).is_ok_and(|a| a == addr)
        })?;
        let p = self.0.remove(i);
        tracing::info!(
            instance,
            "using the socket passed by systemd as `{}` (fd {}, {addr}): same address",
            p.name,
            p.number
        );
        Some(Ok(p.fd))
    }

    /// Logs the sockets no instance claimed. Those of ctsd's fd store belonged to instances
    /// no longer configured: they are closed and removed from the store. Those of socket units
    /// stay open for a reload that adds their instance.
    pub fn report_unclaimed(&mut self) {
        let (stored, kept) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|p| p.name.starts_with(crate::notify::STORE_PREFIX));
        self.0 = kept;
        for p in stored {
            tracing::info!(
                "the socket stored as `{}` (fd {}) is of no configured instance; closing it and \
                 removing it from the fd store",
                p.name,
                p.number
            );
            if let Some(key) = p.name.strip_prefix(crate::notify::STORE_PREFIX) {
                crate::notify::fd_store_remove(key);
            }
        }
        for p in &self.0 {
            let at = listening_addr(&p.fd).map_or_else(|e| e, |a| a.to_string());
            tracing::warn!(
                "the socket passed by systemd as `{}` (fd {}, {at}) matches no instance; \
                 kept open for a reload that adds one",
                p.name,
                p.number
            );
        }
    }
}

/// The address a passed fd listens on, or why it cannot serve an instance.
fn listening_addr(fd: &OwnedFd) -> Result<SocketAddr, String> {
    let kind =
        socket::getsockopt(fd, sockopt::SockType).map_err(|e| format!("is not a socket ({e})"))?;
    if kind != SockType::Stream {
        return Err(format!("is a {kind:?} socket, not a stream (TCP) socket"));
    }
    if !socket::getsockopt(fd, sockopt::AcceptConn).unwrap_or(false) {
        return Err("is not listening (Accept=no and ListenStream= are needed)".into());
    }
    let local: SockaddrStorage =
        socket::getsockname(fd.as_raw_fd()).map_err(|e| format!("has no address ({e})"))?;
    if let Some(v4) = local.as_sockaddr_in() {
        Ok(SocketAddr::from((v4.ip(), v4.port())))
    } else if let Some(v6) = local.as_sockaddr_in6() {
        Ok(SocketAddr::from((v6.ip(), v6.port())))
    } else {
        Err("is not a TCP socket (it has no IP address)".into())
    }
}

/// An instance's listening socket.
#[derive(Debug)]
pub struct Obtained {
    /// The socket.
    pub fd: OwnedFd,
    /// Bound by ctsd just now (not passed by systemd): the one to put in the fd store.
    pub fresh: bool,
}

/// The listening socket for `instance` at `addr`: the one systemd passed, or a new one.
///
/// # Errors
///
/// A passed socket that does not fit, or a port that cannot be bound.
pub fn obtain(
    passed: &mut PassedSockets,
    instance: &str,
    addr: SocketAddr,
) -> Result<Obtained, BindError> {
    match passed.take(instance, addr) {
        Some(r) => r.map(|fd| Obtained { fd, fresh: false }),
        None => bind(addr)
            .map(|fd| Obtained { fd, fresh: true })
            .map_err(|e| BindError {
                instance: instance.to_owned(),
                addr,
                source: explain(e, addr.port()),
            }),
    }
}

/// Every instance's listening socket (`ctsd.bind`:`port`), in configuration order: passed by
/// systemd or bound here, or why it could not be had.
pub fn bind_each(config: &Config, passed: &mut PassedSockets) -> Vec<Result<Obtained, BindError>> {
    config
        .instances
        .iter()
        .map(|inst| {
            let addr = SocketAddr::new(config.daemon.bind, inst.port);
            obtain(passed, inst.key.as_str(), addr)
        })
        .collect()
}

/// A blocking, close-on-exec listening TCP socket. It stays blocking: ctsd never accepts on it,
/// and the file status flags are shared with the workers, which choose their own mode.
///
/// # Errors
///
/// When the socket cannot be created, bound or put into listening state.
pub fn bind(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    socket::listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

/// `e`, a bind error, with who holds the port when it is in use (a scan of `/proc`: for
/// errors that are reported, not for every retry).
pub fn explain(e: io::Error, port: u16) -> io::Error {
    match (e.kind(), holder(port)) {
        (io::ErrorKind::AddrInUse, Some(who)) => {
            io::Error::new(e.kind(), format!("{e}; held by {who}"))
        }
        _ => e,
    }
}

/// Who listens on TCP `port`: `pid 1234 (python3 -m http.server 8001)`, found through
/// `/proc/net/tcp{,6}` (the listening socket's inode) and the processes' fds. `None` when it
/// cannot be told (another network namespace, or no permission to look).
pub fn holder(port: u16) -> Option<String> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let local_port = f.get(1)?.rsplit(':').next()?;
                // State 0A is LISTEN.
                (u16::from_str_radix(local_port, 16).ok()? == port && *f.get(3)? == "0A")
                    .then(|| f.get(9).map(|i| (*i).to_owned()))
                    .flatten()
            })
        })?;
    let wanted = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == wanted.as_str())
        });
        if holds {
            let cmdline = std::fs::read(proc_entry.path().join("cmdline")).unwrap_or_default();
            let cmdline: Vec<String> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            return Some(format!("pid {pid} ({})", cmdline.join(" ")));
        }
    }
    None
}
