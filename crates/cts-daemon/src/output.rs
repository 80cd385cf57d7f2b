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
        slot: u32,
        pid: u32,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
    ) {
        // One reader task per pipe; each ends at EOF, after the worker (and anything it
        // started) has exited, so nothing written before a crash is lost. The tag is written
        // before each line with `logs.format: timestamped`.
        if let Some(out) = stdout {
            let tag = format!("{slot}/{pid} out");
            tokio::spawn(cts_logs::reader::pump_tagged(out, self.log.clone(), tag));
        }
        if let Some(err) = stderr {
            let tag = format!("{slot}/{pid} err");
            tokio::spawn(cts_logs::reader::pump_tagged(err, self.log.clone(), tag));
        }
    }

    fn event(&self, text: &str) {
        self.log.event(text);
    }
}
