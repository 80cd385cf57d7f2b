//! Workers' output sent to the journal or to syslog instead of files (`logs.sink`): one
//! message per line, whole, never two workers' lines mixed, with the instance, the worker and
//! the stream.
//!
//! - **journal**: the native protocol, a datagram per line to `/run/systemd/journal/socket`
//!   with `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER=cts-<instance>` (`cts-<instance>-<program>`
//!   for a program other than web), `CTS_INSTANCE`, `CTS_PROGRAM`, `CTS_WORKER_SLOT`,
//!   `CTS_WORKER_PID` and `CTS_STREAM` (`stdout`, `stderr`, `ctsd`).
//! - **syslog**: RFC 5424 on `/dev/log`: `<PRI>1 TIMESTAMP HOST IDENTIFIER PID MSGID - MSG`,
//!   PRI from the configured facility and severity info (notice for ctsd's own events),
//!   MSGID the stream.
//!
//! A full socket makes the reader wait (so the worker waits on its pipe): nothing is dropped
//! for speed. A socket that is not there (no journal, no syslog daemon) drops lines, and they
//! are counted ([`Sink::dropped_bytes`]).

use crate::reader::Pumped;
use crate::reader::MAX_LINE;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::UnixDatagram;

/// Where lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The journal's native protocol.
    Journal,
    /// RFC 5424 syslog with this facility.
    Syslog(u8),
}

impl Kind {
    /// The usual socket of this kind.
    pub fn default_socket(self) -> PathBuf {
        match self {
            Kind::Journal => "/run/systemd/journal/socket".into(),
            Kind::Syslog(_) => "/dev/log".into(),
        }
    }
}

/// One instance's sink.
#[derive(Debug)]
pub struct Sink {
    kind: Kind,
    socket: PathBuf,
    instance: String,
    /// `web`, `celery`, ...
    program: String,
    /// `cts-<instance>`, or `cts-<instance>-<program>` for a program other than web.
    ident: String,
    host: String,
    out: UnixDatagram,
    dropped: AtomicU64,
}

/// Where a line comes from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The worker's slot.
    pub slot: u32,
    /// The worker's pid.
    pub pid: u32,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
}

impl Sink {
    /// A sink of `kind` for `program` (`web` for the web pool) of `instance`, on `socket` (or
    /// the kind's usual one).
    ///
    /// # Errors
    ///
    /// When no datagram socket can be made (not when the target is missing: that drops lines).
    pub fn new(
        kind: Kind,
        socket: Option<PathBuf>,
        instance: &str,
        program: &str,
    ) -> std::io::Result<Sink> {
        Ok(Sink {
            kind,
            socket: socket.unwrap_or_else(|| kind.default_socket()),
            instance: instance.to_owned(),
            program: program.to_owned(),
            ident: if program == "web" {
                format!("cts-{instance}")
            } else {
                format!("cts-{instance}-{program}")
            },
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "-".into()),
            out: UnixDatagram::unbound()?,
            dropped: AtomicU64::new(0),
        })
    }

    /// Bytes that could not be sent.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The message for `line` (no newline) from `origin` (`None`: ctsd's own event).
    fn message(&self, line: &[u8], origin: Option<Origin>) -> Vec<u8> {
        let mut m = Vec::with_capacity(line.len() + 160);
        match self.kind {
            Kind::Journal => {
                m.extend_from_slice(b"MESSAGE=");
                m.extend_from_slice(line);
                let priority = if origin.is_some() { 6 } else { 5 };
                m.extend_from_slice(
                    format!(
                        "\nPRIORITY={priority}\nSYSLOG_IDENTIFIER={}\nCTS_INSTANCE={}\n\
                         CTS_PROGRAM={}\n",
                        self.ident, self.instance, self.program
                    )
                    .as_bytes(),
                );
                match origin {
                    Some(o) => m.extend_from_slice(
                        format!(
                            "CTS_WORKER_SLOT={}\nCTS_WORKER_PID={}\nCTS_STREAM={}\n",
                            o.slot, o.pid, o.stream
                        )
                        .as_bytes(),
                    ),
                    None => m.extend_from_slice(b"CTS_STREAM=ctsd\n"),
                }
            }
            Kind::Syslog(facility) => {
                let severity = if origin.is_some() { 6 } else { 5 };
                let (pid, msgid) = match origin {
                    Some(o) => (o.pid.to_string(), o.stream),
                    None => (std::process::id().to_string(), "ctsd"),
                };
                m.extend_from_slice(
                    format!(
                        "<{}>1 {} {} {} {pid} {msgid} - ",
                        u32::from(facility) * 8 + severity,
                        crate::time::rfc3339_millis(SystemTime::now()),
                        self.host,
                        self.ident
                    )
                    .as_bytes(),
                );
                m.extend_from_slice(line);
            }
        }
        m
    }

    async fn send(&self, line: &[u8], origin: Option<Origin>) {
        let msg = self.message(line, origin);
        if self.out.send_to(&msg, &self.socket).await.is_err() {
            self.dropped
                .fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
        }
    }

    /// One of ctsd's own lines about the instance; never waits (dropped, and counted, when
    /// the socket is full).
    pub fn event(&self, text: &str) {
        let msg = self.message(text.as_bytes(), None);
        if self.out.try_send_to(&msg, &self.socket).is_err() {
            self.dropped
                .fetch_add(text.len() as u64 + 1, Ordering::Relaxed);
        }
    }
}

/// Reads `pipe` to its end and sends every line (cut into pieces of [`MAX_LINE`] when longer,
/// the last one even without a newline) to `sink`; returns the bytes read.
pub async fn pump<R: AsyncRead + Unpin>(
    pipe: R,
    sink: std::sync::Arc<Sink>,
    origin: Origin,
) -> u64 {
    match pump_until(pipe, sink, origin, Vec::new(), std::future::pending()).await {
        Pumped::Closed(n) => n,
        Pumped::Stopped { .. } => unreachable!("never stopped"),
    }
}

/// [`pump`] that begins with `pending` and stops when `stop` completes, like
/// [`crate::reader::pump_until`].
pub async fn pump_until<R: AsyncRead + Unpin>(
    mut pipe: R,
    sink: std::sync::Arc<Sink>,
    origin: Origin,
    pending: Vec<u8>,
    stop: impl std::future::Future<Output = ()>,
) -> Pumped<R> {
    tokio::pin!(stop);
    let mut buf: Vec<u8> = pending;
    let mut total = 0u64;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        // Reading a pipe is cancel-safe: a read that loses the race took no bytes.
        let read = tokio::select! {
            biased;
            () = &mut stop => return Pumped::Stopped { pipe, pending: buf },
            r = pipe.read(&mut chunk) => r,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n as u64;
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
            let line = &buf[start..start + i];
            for piece in line.chunks(MAX_LINE).filter(|p| !p.is_empty()) {
                sink.send(piece, Some(origin)).await;
            }
            if line.is_empty() {
                sink.send(b"", Some(origin)).await;
            }
            start += i + 1;
        }
        buf.drain(..start);
        while buf.len() > MAX_LINE {
            let piece: Vec<u8> = buf.drain(..MAX_LINE).collect();
            sink.send(&piece, Some(origin)).await;
        }
    }
    if !buf.is_empty() {
        sink.send(&buf, Some(origin)).await;
    }
    Pumped::Closed(total)
}
