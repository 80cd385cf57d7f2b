//! Connects the supervisor's workers to the instance log: the supervisor and the log crate
//! never know about each other.

use cts_logs::writer::LogSender;
use cts_supervisor::Output;
use std::os::fd::AsRawFd;
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
    }
}
