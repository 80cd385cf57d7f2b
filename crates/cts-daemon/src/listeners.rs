//! Binding the instances' listening sockets. ctsd owns them for its whole life, so replacing
//! workers never closes a port: connections wait in the backlog instead of being refused.

use cts_config::Config;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

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

/// Binds every instance's port (`ctsd.bind`:`port`), in configuration order; reports every
/// port that failed, not just the first.
///
/// # Errors
///
/// One [`BindError`] per port that could not be bound.
pub fn bind_all(config: &Config) -> Result<Vec<OwnedFd>, Vec<BindError>> {
    let mut fds = Vec::new();
    let mut errors = Vec::new();
    for inst in &config.instances {
        let addr = SocketAddr::new(config.daemon.bind, inst.port);
        match bind(addr) {
            Ok(fd) => fds.push(fd),
            Err(source) => errors.push(BindError {
                instance: inst.key.to_string(),
                addr,
                source,
            }),
        }
    }
    if errors.is_empty() {
        Ok(fds)
    } else {
        Err(errors)
    }
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
