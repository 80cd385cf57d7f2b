//! Capture of workers' output into per-instance log files.
//!
//! # Layout
//!
//! - [`reader`]: one task per worker pipe, cutting the byte stream into runs of whole lines.
//! - [`writer`]: one thread per instance, appending those runs to the instance's file.
//! - [`time`]: UTC timestamps for ctsd's own event lines, without a calendar crate.
//!
//! # Theory of operation
//!
//! A worker's stdout and stderr are pipes that ctsd reads. A [`reader`] task reads up to 64 KiB
//! at a time and sends everything up to the last newline as one chunk to the instance's
//! [`InstanceLog`]; the incomplete tail waits for the next read. A chunk therefore always
//! consists of whole lines of one worker, and since the writer appends chunks one at a time,
//! lines of different workers can interleave only at line boundaries. A line longer than
//! [`MAX_LINE`] is cut into pieces, each marked, never merged with another line; a last line
//! without a newline is kept when the pipe closes.
//!
//! The writer is a plain thread (file I/O never runs on the async runtime) fed through a bounded
//! channel: a slow disk makes readers wait, which makes workers' writes to their pipes wait,
//! instead of growing memory. A failed write is counted (see [`InstanceLog::dropped_bytes`]) and
//! never stops the workers or the daemon.

#![warn(missing_docs)]

pub mod reader;
pub mod time;
pub mod writer;

pub use reader::MAX_LINE;
pub use writer::InstanceLog;
