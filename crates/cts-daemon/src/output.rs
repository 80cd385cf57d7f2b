//! Connects the supervisor's workers to the instance log: the supervisor and the log crate
//! never know about each other.

use cts_logs::writer::LogSender;
use cts_supervisor::Output;
use tokio::process::{ChildStderr, ChildStdout};

/// [`Output`] writing into one instance's log.
#[derive(Debug)]
pub struct LogOutput {
    /// The instance log's sender.
    pub log: LogSender,
}

impl Output for LogOutput {
    fn attach(
        &self,
        _slot: u32,
        _pid: u32,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
    ) {
        // One reader task per pipe; each ends at EOF, after the worker (and anything it
        // started) has exited, so nothing written before a crash is lost.
        if let Some(out) = stdout {
            tokio::spawn(cts_logs::reader::pump(out, self.log.clone()));
        }
        if let Some(err) = stderr {
            tokio::spawn(cts_logs::reader::pump(err, self.log.clone()));
        }
    }

    fn event(&self, text: &str) {
        self.log.event(text);
    }
}
