//! The per-instance writer: a thread that appends chunks of whole lines to the instance's file
//! and rotates it.
//!
//! # Rotation
//!
//! s6-log style, rename-then-open, always *between lines*, so no line straddles two files.
//! Before a chunk (whole lines) is appended the writer checks
//!
//! - size: would the file (its length at open, from metadata, plus what was appended since)
//!   grow beyond [`LogOptions::max_size`]? Then the file is filled up to the last whole line
//!   that fits and the rest goes to the next file; only a single line longer than the limit
//!   makes a file larger (it goes whole into a file of its own);
//! - time: did the UTC hour or day ([`LogOptions::rotate`]) change since the file's first line?
//!   The clock is read when data arrives, never by a timer, so a quiet instance's file rotates
//!   at its next line rather than at midnight; an idle instance costs no wake-ups.
//!
//! To rotate, the writer writes what it has batched, closes the file, renames it to
//! `output.log.<UTC stamp>` (naming is in the private `rotate` module) and opens a new
//! `output.log`. Then either it deletes the oldest rotated files beyond [`LogOptions::keep`]
//! itself, or, with
//! [`LogOptions::compress`], hands the file to a helper thread that gzips it and then applies
//! retention, so compression never delays writing. Empty files are never rotated.

use crate::options::{LineFormat, LogOptions};
use crate::rotate::{self, Compressor};
use crate::time::rfc3339_millis;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{broadcast, mpsc};

/// Name of the file in `<log_dir>/<instance>/` that receives the workers' output and ctsd's
/// events about the instance.
pub const OUTPUT_FILE: &str = "output.log";

/// Name of the file in `<log_dir>/<instance>/` that receives the workers' stderr when it is
/// kept apart (`logs.stderr: separate`).
pub const STDERR_FILE: &str = "stderr.log";

/// How many chunks may wait for the writer before readers (and so workers) wait.
const QUEUE: usize = 32;

/// Bytes batched into one write(2) at most.
const BATCH: usize = 256 * 1024;

/// Where the writer reads the time: the system clock, or a fake one in tests.
type Clock = Box<dyn Fn() -> SystemTime + Send>;

impl Default for Counters {
    fn default() -> Self {
        Counters {
            followers: broadcast::channel(FOLLOW_QUEUE).0,
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }
}

/// A cheap handle on an instance log for status and `logs -f`, usable after the
/// [`InstanceLog`] itself has moved.
#[derive(Debug, Clone)]
pub struct LogHandle {
    counters: Arc<Counters>,
    path: PathBuf,
}

impl LogHandle {
    /// Bytes that could not be written so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// The current log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything written from now on, chunk by chunk (whole lines), across rotations.
    pub fn follow(&self) -> broadcast::Receiver<Arc<[u8]>> {
        self.counters.followers.subscribe()
    }
}

/// What the writer thread is asked to do.
enum Msg {
    /// Whole lines to append, each after `prefix` when there is one.
    Chunk(Vec<u8>, Option<Vec<u8>>),
    /// Close the file and open it again by name (after an external logrotate moved it).
    Reopen,
    /// New rotation and retention settings (a reload changed `logs:`).
    Configure(LogOptions),
}

/// Chunks kept for a follower that reads slower than the log is written; beyond that it is
/// told how many it missed.
const FOLLOW_QUEUE: usize = 1024;

/// Counters shared by the writer thread and whoever reports status, and the channel that
/// `ctsctl logs -f` listens on.
#[derive(Debug)]
struct Counters {
    /// What was written, as written, for followers; sent only while someone follows.
    followers: broadcast::Sender<Arc<[u8]>>,
    /// Bytes that could not be written (disk full, directory gone, ...).
    dropped: AtomicU64,
    /// Bytes written.
    written: AtomicU64,
}

/// One instance's log: owns the writer thread. Dropping it (and every [`LogSender`]) lets the
/// thread write what is queued and exit; [`InstanceLog::close`] waits for that.
#[derive(Debug)]
pub struct InstanceLog {
    /// Our own sender; readers hold clones.
    sender: LogSender,
    /// Shared with the thread.
    counters: Arc<Counters>,
    /// Joined on close, so that everything queued is on disk before ctsd exits.
    thread: Option<std::thread::JoinHandle<()>>,
    /// The file written.
    path: PathBuf,
}

/// A cheap handle to send lines to an [`InstanceLog`].
#[derive(Debug, Clone)]
pub struct LogSender {
    tx: mpsc::Sender<Msg>,
    /// How readers prefix lines ([`LogOptions::format`]), shared by every clone so that a
    /// reload changes it for the readers of running workers too.
    format: Arc<std::sync::atomic::AtomicU8>,
}

/// [`LineFormat`] in an atomic.
fn format_code(f: LineFormat) -> u8 {
    match f {
        LineFormat::Raw => 0,
        LineFormat::Timestamped => 1,
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Chunk(c, _) => write!(f, "Chunk({} bytes)", c.len()),
            Msg::Reopen => f.write_str("Reopen"),
            Msg::Configure(o) => write!(f, "Configure({o:?})"),
        }
    }
}

impl InstanceLog {
    /// [`InstanceLog::open_with`] with the default [`LogOptions`] (100 MiB, daily, keep 14).
    ///
    /// # Errors
    ///
    /// Only if the writer thread cannot be spawned.
    pub fn open(dir: &Path, thread_name: &str) -> io::Result<InstanceLog> {
        InstanceLog::open_with(dir, thread_name, LogOptions::default())
    }

    /// Starts the writer for the directory `dir` (created with mode 0750 if missing), rotating
    /// as `options` say. A directory or file that cannot be created is not fatal: the error is
    /// reported through [`InstanceLog::dropped_bytes`] and retried on the next write.
    ///
    /// # Errors
    ///
    /// Only if the writer thread cannot be spawned.
    pub fn open_with(
        dir: &Path,
        thread_name: &str,
        options: LogOptions,
    ) -> io::Result<InstanceLog> {
        InstanceLog::open_file(dir, OUTPUT_FILE, thread_name, options)
    }

    /// [`InstanceLog::open_with`] for the file `name` in `dir` (`output.log`, `stderr.log`).
    ///
    /// # Errors
    ///
    /// Only if the writer thread cannot be spawned.
    pub fn open_file(
        dir: &Path,
        name: &str,
        thread_name: &str,
        options: LogOptions,
    ) -> io::Result<InstanceLog> {
        InstanceLog::start(dir, name, thread_name, options, Box::new(SystemTime::now))
    }

    /// [`InstanceLog::open_file`] reading the time from `clock` (tests fake it).
    fn start(
        dir: &Path,
        name: &str,
        thread_name: &str,
        options: LogOptions,
        clock: Clock,
    ) -> io::Result<InstanceLog> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let format = Arc::new(std::sync::atomic::AtomicU8::new(format_code(
            options.format,
        )));
        let mut w = Writer::new(dir, name, thread_name, options, counters.clone(), clock);
        let path = w.path.clone();
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || w.run(rx))?;
        Ok(InstanceLog {
            sender: LogSender { tx, format },
            counters,
            thread: Some(thread),
            path,
        })
    }

    /// A handle for readers and event writers.
    pub fn sender(&self) -> LogSender {
        self.sender.clone()
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes that could not be written so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// A handle for status and following.
    pub fn handle(&self) -> LogHandle {
        LogHandle {
            counters: self.counters.clone(),
            path: self.path.clone(),
        }
    }

    /// Bytes written so far.
    pub fn written_bytes(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen its file by name, after what was queued before.
    pub fn reopen(&self) {
        self.tell(Msg::Reopen);
    }

    /// Applies new settings from now on: line format (for the readers of running workers
    /// too), rotation and retention (pruning at once by the new retention).
    pub fn reconfigure(&self, options: LogOptions) {
        self.sender
            .format
            .store(format_code(options.format), Ordering::Relaxed);
        self.tell(Msg::Configure(options));
    }

    /// Queues `msg` for the writer without waiting.
    fn tell(&self, msg: Msg) {
        let tx = self.sender.tx.clone();
        if let Err(mpsc::error::TrySendError::Full(msg)) = tx.try_send(msg) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(msg).await;
                });
            }
        }
    }

    /// Stops accepting lines from this handle and waits until the thread has written
    /// everything queued (and compressed what it rotated). Readers still running keep the
    /// thread alive until their pipes close.
    pub async fn close(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl LogSender {
    /// How readers prefix the lines they send through this handle.
    pub fn line_format(&self) -> LineFormat {
        match self.format.load(Ordering::Relaxed) {
            0 => LineFormat::Raw,
            _ => LineFormat::Timestamped,
        }
    }

    /// Queues a chunk of whole lines, waiting while the queue is full (backpressure).
    pub async fn send_chunk(&self, chunk: Vec<u8>) {
        let _ = self.tx.send(Msg::Chunk(chunk, None)).await;
    }

    /// Queues a chunk of whole lines to be written each after `prefix` (inserted by the writer
    /// thread as it copies them), waiting while the queue is full.
    pub async fn send_lines(&self, chunk: Vec<u8>, prefix: Option<Vec<u8>>) {
        let _ = self.tx.send(Msg::Chunk(chunk, prefix)).await;
    }

    /// Queues one of ctsd's own lines about the instance, timestamped. Never blocks: when the
    /// queue is full the line is handed to a task that waits for room.
    pub fn event(&self, text: &str) {
        let line = format!("{} ctsd: {text}\n", rfc3339_millis(SystemTime::now())).into_bytes();
        match self.tx.try_send(Msg::Chunk(line, None)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let tx = self.tx.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = tx.send(msg).await;
                    });
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// State of the writer thread.
struct Writer {
    dir: PathBuf,
    /// The file's name in `dir` (`output.log`), also the stem of its rotated files.
    name: String,
    path: PathBuf,
    /// Names the compression helper thread after ours.
    thread_name: String,
    /// When to rotate, what to keep.
    options: LogOptions,
    /// `None` while the file cannot be opened.
    file: Option<File>,
    /// Length of the file: from metadata when opened (so a restarted ctsd keeps counting),
    /// plus what we appended since. Compared with `options.max_size`.
    size: u64,
    /// The hour or day (see [`crate::options::Rotation`]) the file's content started in;
    /// compared with the clock when data arrives, to rotate by time.
    period: Option<u64>,
    /// Injected so that tests can cross an hour without waiting for one.
    clock: Clock,
    /// Gzips rotated files; started at the first rotation with `options.compress`.
    compressor: Option<Compressor>,
    /// Reused for prefixed lines that must be split across a rotation.
    scratch: Vec<u8>,
    counters: Arc<Counters>,
    /// Bytes lost since the last successful write, reported in a marker line once writing works
    /// again.
    lost_since: u64,
    /// The error that made us lose them.
    last_error: Option<String>,
}

impl Writer {
    fn new(
        dir: &Path,
        name: &str,
        thread_name: &str,
        options: LogOptions,
        counters: Arc<Counters>,
        clock: Clock,
    ) -> Writer {
        let path = dir.join(name);
        // A file left by a previous run started when it was last written, near enough: if
        // that was yesterday, its first new line rotates it.
        let started = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.len() > 0)
            .and_then(|m| m.modified().ok())
            .unwrap_or_else(&clock);
        let mut w = Writer {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            path,
            thread_name: thread_name.to_owned(),
            period: options.rotate.period(started),
            options,
            file: None,
            size: 0,
            clock,
            compressor: None,
            scratch: Vec::new(),
            counters,
            lost_since: 0,
            last_error: None,
        };
        w.ensure_open();
        // Retention by age needs no rotation to apply: files that aged out while ctsd was
        // down go now.
        rotate::prune(&w.dir, &w.name, w.retention(), (w.clock)());
        w
    }

    fn retention(&self) -> rotate::Retention {
        rotate::Retention {
            keep: self.options.keep,
            max_age: self.options.max_age,
        }
    }

    /// New settings from a reload: the current file counts as started in the current period,
    /// the new size limit applies from the next line, retention at once.
    fn configure(&mut self, out: &mut Vec<u8>, options: LogOptions) {
        self.flush(out);
        let now = (self.clock)();
        if options.rotate != self.options.rotate {
            self.period = options.rotate.period(now);
        }
        if options.keep != self.options.keep
            || options.max_age != self.options.max_age
            || options.compress != self.options.compress
        {
            // The helper carries the old retention: let it finish, a new one starts when needed.
            if let Some(c) = self.compressor.take() {
                c.finish();
            }
        }
        self.options = options;
        rotate::prune(&self.dir, &self.name, self.retention(), now);
    }

    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        // Large buffer: a flood of small chunks becomes few write(2) calls. Flushed whenever the
        // queue runs empty, so a quiet worker's line reaches the file at once.
        let mut out: Vec<u8> = Vec::with_capacity(BATCH);
        while let Some(msg) = rx.blocking_recv() {
            let mut next = Some(msg);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Chunk(c, None) => self.push(&mut out, &c),
                    Msg::Chunk(c, Some(prefix)) => self.push_prefixed(&mut out, &c, &prefix),
                    Msg::Reopen => self.reopen(&mut out),
                    Msg::Configure(o) => self.configure(&mut out, o),
                }
                if out.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.flush(&mut out);
        }
        self.finish();
    }

    /// [`Writer::push`] of `chunk` with `prefix` before each line. The common case (no
    /// rotation due) prefixes straight into the batch, a single copy.
    fn push_prefixed(&mut self, out: &mut Vec<u8>, chunk: &[u8], prefix: &[u8]) {
        let before = out.len();
        let filled = self.size + before as u64;
        if filled > 0 && self.options.rotate.period((self.clock)()) == self.period {
            crate::prefix::prefix_into(out, chunk, prefix);
            let max = self.options.max_size;
            if max == 0 || self.size + out.len() as u64 <= max {
                return;
            }
            // It does not fit: undo, and let `push` split it at a line boundary.
            out.truncate(before);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        crate::prefix::prefix_into(&mut scratch, chunk, prefix);
        self.push(out, &scratch);
        self.scratch = scratch;
    }

    /// Adds `chunk` (whole lines) to the batch `out`, rotating where the file would pass
    /// `max_size` (between two lines, never inside one) or the time period changed. Only a
    /// single line longer than `max_size` makes a file larger than `max_size`.
    fn push(&mut self, out: &mut Vec<u8>, mut chunk: &[u8]) {
        let now = (self.clock)();
        let period = self.options.rotate.period(now);
        let max = self.options.max_size;
        loop {
            let filled = self.size + out.len() as u64;
            if filled == 0 {
                // Nothing to rotate; the file starts now.
                self.period = period;
            } else if period != self.period {
                self.flush(out);
                self.rotate(now);
                self.period = period;
                continue;
            }
            if max == 0 || filled + chunk.len() as u64 <= max {
                out.extend_from_slice(chunk);
                return;
            }
            // Fill this file up to the last whole line that fits, then rotate.
            let room = max.saturating_sub(filled).min(chunk.len() as u64) as usize;
            match chunk[..room].iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&chunk[..=i]);
                    chunk = &chunk[i + 1..];
                }
                None if filled == 0 => {
                    // One line longer than max_size: it goes whole, alone.
                    let end = chunk
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(chunk.len(), |i| i + 1);
                    out.extend_from_slice(&chunk[..end]);
                    chunk = &chunk[end..];
                }
                None => {}
            }
            self.flush(out);
            self.rotate(now);
            self.period = period;
            if chunk.is_empty() {
                return;
            }
        }
    }

    /// Writes the batch `out` and empties it.
    fn flush(&mut self, out: &mut Vec<u8>) {
        self.write(out);
        out.clear();
    }

    /// Writes the batch, then closes the file and opens it again by name.
    fn reopen(&mut self, out: &mut Vec<u8>) {
        self.flush(out);
        self.file = None;
        if self.ensure_open() && self.size == 0 {
            // A fresh file (the old one was moved away) starts now.
            self.period = self.options.rotate.period((self.clock)());
        }
    }

    /// Renames the (written, possibly missing) file to its rotated name and opens a new one.
    fn rotate(&mut self, now: SystemTime) {
        // An empty file is not worth a rotated name (and a place in `keep`): on a full disk
        // the batch that would have filled it was dropped, not written.
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() == 0) {
            self.ensure_open();
            self.size = 0;
            return;
        }
        // `File` has no user-space buffer: dropping it closes it with everything written.
        self.file = None;
        let target = rotate::rotated_path(&self.dir, &self.name, now);
        match std::fs::rename(&self.path, &target) {
            Ok(()) => self.retire(target),
            // Moved away by someone else, or never created: the next open starts a new one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot rotate {}: {e}", self.path.display()),
        }
        self.ensure_open();
        // Even if the rename failed: count from here, so that we retry after another
        // `max_size` bytes instead of before every chunk.
        self.size = 0;
    }

    /// Compresses (on the helper) or prunes after a rotation.
    fn retire(&mut self, rotated: PathBuf) {
        let retention = self.retention();
        if self.options.compress {
            if self.compressor.is_none() {
                match Compressor::start(
                    self.dir.clone(),
                    self.name.clone(),
                    retention,
                    &self.thread_name,
                ) {
                    Ok(c) => self.compressor = Some(c),
                    Err(e) => tracing::warn!("cannot start log compression thread: {e}"),
                }
            }
            if let Some(c) = &self.compressor {
                if c.send(rotated).is_ok() {
                    return;
                }
            }
        }
        rotate::prune(&self.dir, &self.name, retention, (self.clock)());
    }

    /// At exit: lets the compression helper finish.
    fn finish(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        if let Some(c) = self.compressor.take() {
            c.finish();
        }
    }

    fn ensure_open(&mut self) -> bool {
        if self.file.is_some() {
            return true;
        }
        let r = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&self.dir)
            .and_then(|()| {
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .custom_flags(nix::libc::O_CLOEXEC)
                    .open(&self.path)
            });
        match r {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
                true
            }
            Err(e) => {
                self.last_error = Some(format!("cannot open {}: {e}", self.path.display()));
                false
            }
        }
    }

    fn write(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.ensure_open() {
            if self.lost_since > 0 {
                let marker = format!(
                    "{} ctsd: {} bytes of output were lost before this line ({})\n",
                    rfc3339_millis((self.clock)()),
                    self.lost_since,
                    self.last_error.as_deref().unwrap_or("write error"),
                );
                if self.write_all(marker.as_bytes()).is_ok() {
                    self.lost_since = 0;
                }
            }
            match self.write_all(data) {
                Ok(()) => {
                    self.counters
                        .written
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    if self.counters.followers.receiver_count() > 0 {
                        let _ = self.counters.followers.send(Arc::from(data));
                    }
                    return;
                }
                Err(e) => {
                    self.last_error = Some(format!("cannot write {}: {e}", self.path.display()))
                }
            }
        }
        self.lost_since += data.len() as u64;
        self.counters
            .dropped
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("not open"));
        };
        let r = f.write_all(data);
        match &r {
            Ok(()) => self.size += data.len() as u64,
            // Reopen on the next write: the directory may have been removed or the disk freed.
            Err(_) => self.file = None,
        }
        r
    }
}

#[cfg(test)]
mod rotation_tests;

#[cfg(test)]
mod tests;
