//! Connects the supervisor's workers to the instance log: the supervisor and the log crate
//! never know about each other.

use cts_logs::sink::{Origin, Sink};
use cts_logs::writer::LogSender;
use cts_supervisor::Output;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::process::{ChildStderr, ChildStdout};

/// Capacity asked for each worker pipe.
const PIPE_SIZE: nix::libc::c_int = 1 << 20;

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
        let sink = self.sink.lock().ok().and_then(|s| s.clone());
        if let Some(sink) = sink {
            if let Some(out) = stdout {
                let origin = Origin {
                    slot,
                    pid,
                    stream: "stdout",
                };
                tokio::spawn(cts_logs::sink::pump(out, sink.clone(), origin));
            }
            if let Some(err) = stderr {
                let origin = Origin {
                    slot,
                    pid,
                    stream: "stderr",
                };
                tokio::spawn(cts_logs::sink::pump(err, sink, origin));
            }
            return;
        }
        if let Some(out) = stdout {
            let tag = format!("{slot}/{pid} out");
            tokio::spawn(cts_logs::reader::pump_tagged(out, self.log.clone(), tag));
        }
        if let Some(err) = stderr {
            let tag = format!("{slot}/{pid} err");
            let log = self
                .err
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| self.log.clone());
            tokio::spawn(cts_logs::reader::pump_tagged(err, log, tag));
        }
    }

    fn event(&self, text: &str) {
        self.log.event(text);
        if let Some(sink) = self.sink.lock().ok().and_then(|s| s.clone()) {
            sink.event(text);
        }
    }
}
