//! A client of ctsd's control socket: connect, handshake, typed calls.
//!
//! # Layout
//!
//! Everything is in this file: [`Client`] and [`ClientError`].
//!
//! # Theory of operation
//!
//! [`Client::connect`] opens the Unix socket and performs the `Hello`/`Welcome` handshake, so a
//! protocol mismatch is found before any request is sent. Each call then writes one request
//! frame and reads one response frame. Errors are typed so that `ctsctl` can map them to its
//! documented exit codes and tell the operator what to do ("is ctsd running?").

#![warn(missing_docs)]

use cts_proto::{
    read_frame, write_frame, ErrorKind, ErrorReply, FrameError, Hello, ProtoVersion, Request,
    Response, StatusReport, StatusRequest, Target, TargetRequest, Welcome, PROTO_VERSION,
};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;

/// How long connecting and the handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No socket file.
    #[error("is ctsd running? control socket {0} not found")]
    NotFound(PathBuf),
    /// A socket file nobody listens on.
    #[error("is ctsd running? nothing listens on control socket {0} (a stale socket file)")]
    Refused(PathBuf),
    /// The socket file's permissions, or the daemon, refused us (the message says so: the
    /// daemon's starts with `permission denied:` itself).
    #[error("{0}")]
    PermissionDenied(String),
    /// Connecting or the handshake took too long.
    #[error("ctsd did not answer on {0} in time")]
    Timeout(PathBuf),
    /// Incompatible protocol versions.
    #[error("{0}")]
    ProtocolMismatch(String),
    /// The daemon answered with an error.
    #[error("{}", .0.message)]
    Daemon(ErrorReply),
    /// The daemon answered something unexpected for this request.
    #[error("unexpected answer from ctsd: {0}")]
    Unexpected(String),
    /// The connection failed.
    #[error("connection to ctsd failed: {0}")]
    Frame(#[from] FrameError),
    /// The request could not be formed from what the user gave (a usage error).
    #[error("{0}")]
    Usage(String),
    /// Another I/O failure.
    #[error("cannot connect to {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A connected, greeted client.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    welcome: Welcome,
}

impl Client {
    /// Connects to the daemon at `path` and performs the handshake.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`]/[`ClientError::Refused`] when no daemon runs there,
    /// [`ClientError::PermissionDenied`], [`ClientError::ProtocolMismatch`], or I/O errors.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        Self::connect_as(path, PROTO_VERSION).await
    }

    /// As [`Client::connect`], announcing `proto` (tests use it to check mismatches).
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_as(path: &Path, proto: ProtoVersion) -> Result<Client, ClientError> {
        let fut = async {
            let mut stream = UnixStream::connect(path)
                .await
                .map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => ClientError::NotFound(path.to_owned()),
                    io::ErrorKind::ConnectionRefused => ClientError::Refused(path.to_owned()),
                    io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(format!(
                        "permission denied: cannot open control socket {}",
                        path.display()
                    )),
                    _ => ClientError::Io {
                        path: path.to_owned(),
                        source: e,
                    },
                })?;
            let hello = Request::Hello(Hello {
                proto,
                client: format!("cts-client {}", env!("CARGO_PKG_VERSION")),
            });
            write_frame(&mut stream, &hello).await?;
            match read_response(&mut stream).await? {
                Response::Welcome(welcome) => Ok(Client { stream, welcome }),
                other => Err(unexpected(other)),
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| ClientError::Timeout(path.to_owned()))?
    }

    /// What the daemon said in the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Sends one request and reads its response; an error reply becomes a [`ClientError`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Daemon`] for an error reply (and the typed variants for permission and
    /// protocol errors), [`ClientError::Frame`] when the connection fails.
    pub async fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        write_frame(&mut self.stream, req).await?;
        read_response(&mut self.stream).await
    }

    /// `status` of the named instances (all when empty).
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn status(&mut self, instances: &[&str]) -> Result<StatusReport, ClientError> {
        let req = Request::Status(StatusRequest {
            instances: instances.iter().map(|&s| s.into()).collect(),
        });
        match self.call(&req).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// `start`, `stop` or `restart`: `make` builds the request from the target.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn act(
        &mut self,
        make: fn(TargetRequest) -> Request,
        target: Target,
    ) -> Result<Vec<cts_proto::Outcome>, ClientError> {
        self.act_with(make(TargetRequest::new(target)), |_| {})
            .await
    }

    /// Sends a start, stop or restart request and reads its answer, handing every
    /// [`Response::Progress`] frame that comes first to `on_progress`.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn act_with(
        &mut self,
        req: Request,
        mut on_progress: impl FnMut(&cts_proto::Progress),
    ) -> Result<Vec<cts_proto::Outcome>, ClientError> {
        write_frame(&mut self.stream, &req).await?;
        loop {
            match read_response(&mut self.stream).await? {
                Response::Progress(p) => on_progress(&p),
                Response::Outcomes(o) => return Ok(o.results),
                other => return Err(unexpected(other)),
            }
        }
    }
}

impl Client {
    /// Sends a `deploy` request and reads its answer, handing the text of every
    /// [`Response::Step`] frame that comes first to `on_step`.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn deploy(
        &mut self,
        req: cts_proto::DeployRequest,
        mut on_step: impl FnMut(&str),
    ) -> Result<Vec<cts_proto::Outcome>, ClientError> {
        write_frame(&mut self.stream, &Request::Deploy(req)).await?;
        loop {
            match read_response(&mut self.stream).await? {
                Response::Step(s) => on_step(&s.text),
                Response::Outcomes(o) => return Ok(o.results),
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Sends a `logs` request and hands every piece of log to `sink` until the daemon's answer
    /// is complete (without follow) or the connection ends (with follow), or `sink` returns
    /// false.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn stream_logs(
        &mut self,
        req: &Request,
        mut sink: impl FnMut(&str) -> bool,
    ) -> Result<(), ClientError> {
        let follow = matches!(req, Request::Logs(r) if r.follow);
        write_frame(&mut self.stream, req).await?;
        loop {
            match read_response(&mut self.stream).await {
                Ok(Response::LogData(d)) => {
                    if !sink(&d.data) || !(follow || d.more) {
                        return Ok(());
                    }
                }
                Ok(other) => return Err(unexpected(other)),
                // The daemon stopped (or closed the follow): the end of the stream.
                Err(ClientError::Frame(FrameError::Truncated)) if follow => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

async fn read_response(stream: &mut UnixStream) -> Result<Response, ClientError> {
    let Some(bytes) = read_frame(stream).await? else {
        return Err(ClientError::Frame(FrameError::Truncated));
    };
    let resp: Response = serde_json::from_slice(&bytes).map_err(FrameError::from)?;
    match resp {
        Response::Error(e) => Err(match e.kind {
            ErrorKind::PermissionDenied => ClientError::PermissionDenied(e.message),
            ErrorKind::ProtocolMismatch => ClientError::ProtocolMismatch(e.message),
            _ => ClientError::Daemon(e),
        }),
        r => Ok(r),
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Unexpected(format!("{r:?}"))
}
