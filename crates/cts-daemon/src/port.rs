//! An instance's listening socket as the daemon holds it: listening, or closed because an
//! operator stopped the instance.
//!
//! A restart keeps the socket (connections wait in the backlog while workers are replaced); an
//! operator's `stop` must not leave a port that accepts connections nobody will answer, so once
//! the workers are gone the port stops listening: new connections are refused (nginx answers 502 at once instead of
//! waiting for its timeouts) and those still in the backlog are reset. Linux cannot make a
//! socket listen on its port again after that, so `start` binds a new one on the same address
//! and hands it to the actor. A socket systemd passed (a socket unit) is systemd's: it keeps
//! listening, and `status` says so.

use crate::listeners;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

/// One instance's port; shared by the registry and the control handlers.
#[derive(Debug)]
pub struct Port {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `ctsd.bind`:`port`.
    addr: SocketAddr,
    /// `None` while the port could not be had (another process holds it).
    fd: Option<Arc<OwnedFd>>,
    /// Bound by ctsd, which may close and bind it again; false for systemd's.
    own: bool,
    /// While the port is held by another process: what was found out about the holder.
    holder: Option<String>,
    listening: bool,
}

impl Port {
    /// The listening socket `fd` on `addr` (`None`: not had yet); `own` when ctsd bound it
    /// itself.
    pub fn new(addr: SocketAddr, fd: Option<Arc<OwnedFd>>, own: bool) -> Arc<Port> {
        Arc::new(Port {
            state: Mutex::new(State {
                addr,
                holder: None,
                listening: fd.is_some(),
                own: own || fd.is_none(),
                fd,
            }),
        })
    }

    /// The listening socket: the current one, or one bound now if there is none (the port
    /// was held by another process at start).
    ///
    /// # Errors
    ///
    /// When the port still cannot be bound.
    pub fn listen_now(&self) -> Result<Arc<OwnedFd>, listeners::BindError> {
        let mut s = self.lock();
        if let (true, Some(fd)) = (s.listening, &s.fd) {
            return Ok(fd.clone());
        }
        let fd = match bind(s.addr) {
            Ok(fd) => Arc::new(fd),
            Err(mut e) => {
                // Who holds the port is looked up (a scan of /proc) once, not at every retry.
                if e.source.kind() == std::io::ErrorKind::AddrInUse {
                    let port = s.addr.port();
                    let said = s.holder.get_or_insert_with(|| {
                        listeners::explain(
                            std::io::Error::from(std::io::ErrorKind::AddrInUse),
                            port,
                        )
                        .to_string()
                    });
                    e.source = std::io::Error::new(std::io::ErrorKind::AddrInUse, said.clone());
                }
                return Err(e);
            }
        };
        s.holder = None;
        s.fd = Some(fd.clone());
        s.listening = true;
        Ok(fd)
    }

    /// The listening socket and whether ctsd bound it itself; `None` while it does not listen.
    pub fn current(&self) -> Option<(Arc<OwnedFd>, bool)> {
        let s = self.lock();
        let fd = s.fd.as_ref().filter(|_| s.listening)?;
        Some((fd.clone(), s.own))
    }

    /// Whether the port accepts connections.
    pub fn listening(&self) -> bool {
        self.lock().listening
    }

    /// A reload bound (or was passed) a new socket for the instance, on `addr`. An instance
    /// an operator stopped stays closed: the new socket stops listening too, until `start`.
    pub fn replace(&self, addr: SocketAddr, fd: Arc<OwnedFd>, own: bool) {
        let mut s = self.lock();
        let closed = s.own && s.fd.is_some() && !s.listening;
        *s = State {
            addr,
            holder: None,
            fd: Some(fd),
            own,
            listening: true,
        };
        drop(s);
        if closed {
            self.close();
        }
    }

    /// Stops accepting connections, if ctsd owns the socket: new ones are refused, queued ones
    /// reset. Workers still serving what they accepted are not disturbed. Returns whether it
    /// closed the port just now.
    pub fn close(&self) -> bool {
        let mut s = self.lock();
        let Some(fd) = s.fd.as_ref().filter(|_| s.own && s.listening) else {
            return false;
        };
        // On a listening TCP socket, shutdown moves it out of the listening state for every
        // process that holds it (the workers share it), and the port is free.
        let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        s.listening = false;
        true
    }

    /// Listens again after [`Port::close`]: a new socket on the same address, returned for the
    /// actor (and the fd store). `None` when the port never stopped listening.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound again (another process took the port meanwhile).
    pub fn reopen(&self) -> Result<Option<Arc<OwnedFd>>, listeners::BindError> {
        let mut s = self.lock();
        if s.listening {
            return Ok(None);
        }
        let fd = Arc::new(bind(s.addr).map_err(|mut e| {
            e.source = listeners::explain(e.source, e.addr.port());
            e
        })?);
        s.fd = Some(fd.clone());
        s.listening = true;
        Ok(Some(fd))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn bind(addr: SocketAddr) -> Result<OwnedFd, listeners::BindError> {
    listeners::bind(addr).map_err(|e| listeners::BindError {
        instance: String::new(),
        addr,
        source: e,
    })
}
