//! Connects the supervisor's workers to the instance log: the supervisor and the log crate
//! never know about each other.

use cts_logs::reader::Pumped;
use cts_logs::sink::{Origin, Sink};
use cts_logs::writer::LogSender;
use cts_supervisor::Output;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use tokio::net::unix::pipe;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Capacity asked for each worker pipe.
const PIPE_SIZE: nix::libc::c_int = 1 << 20;

/// Bytes of a worker's stderr kept for a failure message.
const TAIL_BYTES: usize = 2048;
/// Workers whose stderr tails are kept (the most recent ones).
const TAIL_WORKERS: usize = 64;

/// The end of the stderr of each recently started worker: what a failed restart or deploy
/// quotes, since under load the instance's log ends with other workers' request lines.
#[derive(Debug, Default)]
pub struct Tails {
    recent: std::sync::Mutex<std::collections::VecDeque<(u32, Tail)>>,
}

/// The end of one worker's stderr.
type Tail = Arc<std::sync::Mutex<Vec<u8>>>;

impl Tails {
    /// A new tail for worker `pid` (the oldest one kept is forgotten).
    fn start(&self, pid: u32) -> Tail {
        let tail = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == TAIL_WORKERS {
            recent.pop_front();
        }
        recent.push_back((pid, tail.clone()));
        tail
    }

    /// The last `n` lines worker `pid` wrote to stderr, if it is one of the recent ones and
    /// wrote any.
    pub fn lines(&self, pid: u32, n: usize) -> Option<Vec<String>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let (_, tail) = recent.iter().rev().find(|(p, _)| *p == pid)?;
        let bytes = tail.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let lines = lines[lines.len().saturating_sub(n)..].to_vec();
        (!lines.is_empty()).then_some(lines)
    }
}

/// A pipe whose last [`TAIL_BYTES`] read are also kept in `tail`, when it has one.
struct TeeRead<R> {
    inner: R,
    tail: Option<Tail>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TeeRead<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if let (false, Some(tail)) = (new.is_empty(), &self.tail) {
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            tail.extend_from_slice(new);
            let excess = tail.len().saturating_sub(TAIL_BYTES);
            tail.drain(..excess);
        }
        r
    }
}

/// [`Output`] writing into one instance's log.
#[derive(Debug)]
pub struct LogOutput {
    /// The instance log's sender: stdout, ctsd's events, and stderr unless `err` is set.
    pub log: LogSender,
    /// The instance's `stderr.log` (`logs.stderr: separate`); read when a worker starts, so a
    /// reload that changes it applies to the workers started afterwards.
    pub err: std::sync::Mutex<Option<LogSender>>,
    /// The journal or syslog (`logs.sink`), instead of the files for the workers' lines;
    /// read when a worker starts, like `err`.
    pub sink: std::sync::Mutex<Option<Arc<Sink>>>,
    /// The end of recent workers' stderr.
    pub tails: Tails,
    /// The tasks reading the workers' pipes.
    pub pumps: Pumps,
}

/// The tasks reading workers' pipes, which a handover stops.
#[derive(Debug, Default)]
pub struct Pumps {
    /// Cancelled to stop every pump and have it give its pipe back.
    stop: CancellationToken,
    running: std::sync::Mutex<Vec<JoinHandle<Option<HandedPipe>>>>,
}

/// Which of a worker's pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Its stdout.
    Stdout,
    /// Its stderr.
    Stderr,
}

/// A worker's pipe, handed from one ctsd to the next with the incomplete line it was reading.
#[derive(Debug)]
pub struct HandedPipe {
    /// The worker's slot.
    pub slot: u32,
    /// The worker's pid.
    pub pid: u32,
    /// Which pipe.
    pub stream: Stream,
    /// Its read end.
    pub fd: OwnedFd,
    /// Read but not written: the start of a line the worker has not finished.
    pub pending: Vec<u8>,
}

impl LogOutput {
    /// Bytes the sink could not send (no journal or syslog listening).
    pub fn sink_dropped(&self) -> u64 {
        self.sink
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| s.dropped_bytes()))
            .unwrap_or(0)
    }
}

/// The sink `logs` asks for, if not the files, for `program` (`web` for the web pool) of
/// `instance`.
pub fn sink_for(
    instance: &str,
    program: &str,
    logs: &cts_config::LogSettings,
) -> Option<Arc<Sink>> {
    let kind = match logs.sink {
        cts_config::LogSink::File => return None,
        cts_config::LogSink::Journal => cts_logs::sink::Kind::Journal,
        cts_config::LogSink::Syslog(f) => cts_logs::sink::Kind::Syslog(f),
    };
    match Sink::new(kind, logs.socket.clone(), instance, program) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::warn!(
                instance,
                "cannot open a socket for logs.sink, writing files instead: {e}"
            );
            None
        }
    }
}

impl LogOutput {
    /// Stops reading every worker's pipe and returns the pipes still open, each with the
    /// incomplete line it holds; every whole line read has been sent to the log.
    pub async fn hand_over(&self) -> Vec<HandedPipe> {
        self.pumps.stop.cancel();
        let running =
            std::mem::take(&mut *self.pumps.running.lock().unwrap_or_else(|e| e.into_inner()));
        let mut pipes = Vec::new();
        for pump in running {
            if let Ok(Some(p)) = pump.await {
                pipes.push(p);
            }
        }
        pipes
    }

    /// Reads `pipe` of worker `pid` (in `slot`) into the log from now on, starting with the
    /// incomplete line `pending`.
    pub fn resume(&self, pipe: HandedPipe) {
        self.pump(pipe.slot, pipe.pid, pipe.stream, pipe.fd, pipe.pending);
    }

    /// Starts the task that reads one pipe.
    fn pump(&self, slot: u32, pid: u32, stream: Stream, fd: OwnedFd, pending: Vec<u8>) {
        let receiver = match pipe::Receiver::from_owned_fd(fd) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read the {stream:?} pipe of pid {pid}: {e}");
                return;
            }
        };
        let reader = TeeRead {
            inner: receiver,
            tail: (stream == Stream::Stderr).then(|| self.tails.start(pid)),
        };
        let name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let stop = self.pumps.stop.clone().cancelled_owned();
        let sink = self.sink.lock().ok().and_then(|s| s.clone());
        let task = if let Some(sink) = sink {
            let origin = Origin {
                slot,
                pid,
                stream: name,
            };
            tokio::spawn(async move {
                let done = cts_logs::sink::pump_until(reader, sink, origin, pending, stop).await;
                handed(done, slot, pid, stream)
            })
        } else {
            let log = match stream {
                Stream::Stdout => self.log.clone(),
                Stream::Stderr => self
                    .err
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_else(|| self.log.clone()),
            };
            // A preload loader's own output (slot u32::MAX) is tagged `loader/<pid>`.
            let tag = match slot {
                u32::MAX => format!("loader/{pid} {}", &name[3..]),
                _ => format!("{slot}/{pid} {}", &name[3..]),
            };
            tokio::spawn(async move {
                let done = cts_logs::reader::pump_until(reader, log, tag, pending, stop).await;
                handed(done, slot, pid, stream)
            })
        };
        let mut running = self.pumps.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|t| !t.is_finished());
        running.push(task);
    }
}

/// The pipe a stopped pump gives back.
fn handed(
    done: Pumped<TeeRead<pipe::Receiver>>,
    slot: u32,
    pid: u32,
    stream: Stream,
) -> Option<HandedPipe> {
    let Pumped::Stopped { pipe, pending } = done else {
        return None;
    };
    let fd = pipe.inner.into_blocking_fd().ok()?;
    Some(HandedPipe {
        slot,
        pid,
        stream,
        fd,
        pending,
    })
}

impl Output for LogOutput {
    fn attach(
        &self,
        slot: u32,
        pid: u32,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
    ) {
        // One reader task per pipe; each ends at EOF, after the worker (and anything it
        // started) has exited, so nothing written before a crash is lost. The tag is written
        // before each line with `logs.format: timestamped`.
        // A 1 MiB pipe (Linux's default limit for unprivileged pipes) lets a burst of output
        // wait in the kernel instead of blocking the worker while ctsd is scheduled.
        for fd in [
            stdout.as_ref().map(AsRawFd::as_raw_fd),
            stderr.as_ref().map(AsRawFd::as_raw_fd),
        ]
        .into_iter()
        .flatten()
        {
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        }
        if let Some(fd) = stdout.and_then(|o| o.into_owned_fd().ok()) {
            self.pump(slot, pid, Stream::Stdout, fd, Vec::new());
        }
        if let Some(fd) = stderr.and_then(|e| e.into_owned_fd().ok()) {
            self.pump(slot, pid, Stream::Stderr, fd, Vec::new());
        }
    }

    fn attach_pipes(&self, slot: u32, pid: u32, stdout: OwnedFd, stderr: OwnedFd) {
        for fd in [&stdout, &stderr] {
            let _ = nix::fcntl::fcntl(
                fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
            );
        }
        self.pump(slot, pid, Stream::Stdout, stdout, Vec::new());
        self.pump(slot, pid, Stream::Stderr, stderr, Vec::new());
    }

    fn event(&self, text: &str) {
        self.log.event(text);
        if let Some(sink) = self.sink.lock().ok().and_then(|s| s.clone()) {
            sink.event(text);
        }
    }
}
