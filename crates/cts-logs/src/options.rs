//! What an instance's log does besides appending: when its file is rotated, how many rotated
//! files are kept, whether they are compressed, and how lines are prefixed.

use std::time::{SystemTime, UNIX_EPOCH};

/// Rotation and retention of one instance's `output.log`.
///
/// Plain data, so that the daemon can build it from its own configuration types (cts-logs does
/// not depend on cts-config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Rotate before a chunk would make the file larger than this many bytes; `0` turns size
    /// rotation off. A single chunk (whole lines of one read) larger than this still goes whole
    /// into one file, so a file may exceed it by at most one chunk's length when alone.
    pub max_size: u64,
    /// Rotate when the UTC hour or day changed since the file was started.
    pub rotate: Rotation,
    /// Rotated files kept (compressed or not); older ones are deleted after each rotation.
    /// `0` keeps none.
    pub keep: u32,
    /// Rotated files older than this are deleted too (checked when ctsd starts, at each
    /// rotation and on reconfiguration; there is no timer). `None`: no age limit.
    pub max_age: Option<std::time::Duration>,
    /// Gzip rotated files (`output.log.<stamp>.gz`), on a helper thread.
    pub compress: bool,
    /// What is written before each line of a worker's output.
    pub format: LineFormat,
}

impl Default for LogOptions {
    /// `{max_size: 100 MiB, rotate: daily, keep: 14, compress: false, format: raw}`, the
    /// daemon's defaults.
    fn default() -> LogOptions {
        LogOptions {
            max_size: 100 << 20,
            rotate: Rotation::Daily,
            keep: 14,
            max_age: None,
            compress: false,
            format: LineFormat::Raw,
        }
    }
}

/// What the reader writes before each line of a worker's output. Applied by the reader task
/// (see [`crate::reader::pump_tagged`]), so that the writer thread only copies bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LineFormat {
    /// The line as the worker wrote it.
    #[default]
    Raw,
    /// `2026-11-24T17:28:09.123Z <tag> ` before each line: the UTC time the reader received it
    /// (one read's lines share a stamp) and the reader's tag, e.g. `stdout`. Without a tag, only
    /// the time and one space.
    Timestamped,
}

/// Time-based rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Rotation {
    /// Only by size.
    Never,
    /// When the UTC hour changes.
    Hourly,
    /// When the UTC day changes.
    #[default]
    Daily,
}

impl Rotation {
    /// The hour or day (counted from the epoch, UTC) that `t` falls in; `None` for
    /// [`Rotation::Never`]. A file is rotated when this differs from the one it was started in.
    pub(crate) fn period(self, t: SystemTime) -> Option<u64> {
        let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        match self {
            Rotation::Never => None,
            Rotation::Hourly => Some(secs / 3600),
            Rotation::Daily => Some(secs / 86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn periods_change_at_utc_boundaries() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(Rotation::Never.period(t(0)), None);
        assert_eq!(Rotation::Hourly.period(t(3599)), Some(0));
        assert_eq!(Rotation::Hourly.period(t(3600)), Some(1));
        assert_eq!(Rotation::Daily.period(t(86_399)), Some(0));
        assert_eq!(Rotation::Daily.period(t(86_400)), Some(1));
    }
}
