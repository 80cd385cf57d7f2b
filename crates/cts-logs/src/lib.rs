//! Capture of workers' output into per-instance log files.
//!
//! # Layout
//!
//! - [`reader`]: one task per worker pipe, cutting the byte stream into runs of whole lines
//!   and, with [`LineFormat::Timestamped`], stamping each run with the prefix its lines get.
//! - [`writer`]: one thread per instance, appending those runs to the instance's file and
//!   deciding when to rotate it.
//! - `prefix` (private): building a line's prefix and inserting it before each line of a chunk.
//! - `rotate` (private): the directory side of rotation: names of rotated files, retention,
//!   gzip on a helper thread.
//! - [`options`]: [`LogOptions`] (size, time, retention, compression, line format).
//! - [`tail`] and [`since`]: reading a log back, from its end or from a point in time.
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
//! without a newline is kept when the pipe closes. Line prefixes (time of the read and the
//! worker's tag) travel with the chunk and are inserted by the writer thread as it copies the
//! lines into its batch: the runtime thread, shared by every instance, only finds line ends.
//!
//! The writer is a plain thread (file I/O never runs on the async runtime) fed through a bounded
//! channel: a slow disk makes readers wait, which makes workers' writes to their pipes wait,
//! instead of growing memory. A failed write is counted (see [`InstanceLog::dropped_bytes`]) and
//! never stops the workers or the daemon.
//!
//! Rotation is s6-log style and happens in the writer thread, only between chunks, so a chunk
//! never straddles two files: when the next chunk would push `output.log` over
//! [`LogOptions::max_size`] (a single larger chunk still goes whole into one file), or when the
//! UTC hour or day ([`LogOptions::rotate`]) changed since the file was started, the writer
//! renames `output.log` to `output.log.<UTC stamp>` (e.g. `output.log.20261124T172809.123456Z`;
//! never below the newest stamp already there, so names sort in write order) and opens a new
//! `output.log`. The size counts from the file's length
//! at open, so a restarted ctsd continues where the last one stopped. There is no timer: the
//! clock is read when data arrives, so a quiet instance's file rotates at its next line, and
//! an idle instance costs nothing. After a rotation the oldest rotated files beyond
//! [`LogOptions::keep`], and those older than [`LogOptions::max_age`], are deleted; with [`LogOptions::compress`] a helper thread gzips the
//! rotated file (`.gz`, counted by retention like the plain form) and applies retention
//! afterwards, off the writer's path. [`InstanceLog::reopen`] still serves an external
//! logrotate that moved the file away.

#![warn(missing_docs)]

pub mod options;
mod prefix;
pub mod reader;
mod rotate;
pub mod since;
pub mod sink;
pub mod tail;
pub mod time;
pub mod writer;

pub use options::{LineFormat, LogOptions, Rotation};
pub use reader::MAX_LINE;
pub use writer::{InstanceLog, LogHandle};
