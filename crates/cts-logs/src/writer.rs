//! The per-instance writer: a thread that appends chunks of whole lines to the instance's file.

use crate::time::rfc3339_millis;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Name of the file in `<log_dir>/<instance>/` that receives the workers' output and ctsd's
/// events about the instance.
pub const OUTPUT_FILE: &str = "output.log";

/// How many chunks may wait for the writer before readers (and so workers) wait.
const QUEUE: usize = 256;

/// What the writer thread is asked to do.
enum Msg {
    /// Whole lines to append.
    Chunk(Vec<u8>),
    /// Close the file and open it again by name (after an external logrotate moved it).
    Reopen,
}

/// Counters shared by the writer thread and whoever reports status.
#[derive(Debug, Default)]
struct Counters {
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
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Chunk(c) => write!(f, "Chunk({} bytes)", c.len()),
            Msg::Reopen => f.write_str("Reopen"),
        }
    }
}

impl InstanceLog {
    /// Starts the writer for the directory `dir` (created with mode 0750 if missing). A
    /// directory or file that cannot be created is not fatal: the error is reported through
    /// [`InstanceLog::dropped_bytes`] and retried on the next write.
    ///
    /// # Errors
    ///
    /// Only if the writer thread cannot be spawned.
    pub fn open(dir: &Path, thread_name: &str) -> io::Result<InstanceLog> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let path = dir.join(OUTPUT_FILE);
        let mut w = Writer {
            dir: dir.to_path_buf(),
            path: path.clone(),
            file: None,
            counters: counters.clone(),
            lost_since: 0,
            last_error: None,
        };
        w.ensure_open();
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || w.run(rx))?;
        Ok(InstanceLog {
            sender: LogSender { tx },
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

    /// Bytes written so far.
    pub fn written_bytes(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen its file by name, after what was queued before.
    pub fn reopen(&self) {
        let tx = self.sender.tx.clone();
        if tx.try_send(Msg::Reopen).is_err() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(Msg::Reopen).await;
                });
            }
        }
    }

    /// Stops accepting lines from this handle and waits until the thread has written
    /// everything queued. Readers still running keep the thread alive until their pipes close.
    pub async fn close(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl LogSender {
    /// Queues a chunk of whole lines, waiting while the queue is full (backpressure).
    pub async fn send_chunk(&self, chunk: Vec<u8>) {
        let _ = self.tx.send(Msg::Chunk(chunk)).await;
    }

    /// Queues one of ctsd's own lines about the instance, timestamped. Never blocks: when the
    /// queue is full the line is handed to a task that waits for room.
    pub fn event(&self, text: &str) {
        let line = format!("{} ctsd: {text}\n", rfc3339_millis(SystemTime::now())).into_bytes();
        match self.tx.try_send(Msg::Chunk(line)) {
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
    path: PathBuf,
    /// `None` while the file cannot be opened.
    file: Option<File>,
    counters: Arc<Counters>,
    /// Bytes lost since the last successful write, reported in a marker line once writing works
    /// again.
    lost_since: u64,
    /// The error that made us lose them.
    last_error: Option<String>,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        // Large buffer: a flood of small chunks becomes few write(2) calls. Flushed whenever the
        // queue runs empty, so a quiet worker's line reaches the file at once.
        let mut out: Vec<u8> = Vec::with_capacity(256 * 1024);
        while let Some(msg) = rx.blocking_recv() {
            let mut next = Some(msg);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Chunk(c) => out.extend_from_slice(&c),
                    Msg::Reopen => {
                        self.write(&out);
                        out.clear();
                        self.file = None;
                        self.ensure_open();
                    }
                }
                if out.len() < 256 * 1024 {
                    next = rx.try_recv().ok();
                }
            }
            self.write(&out);
            out.clear();
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
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
                    rfc3339_millis(SystemTime::now()),
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
        if r.is_err() {
            // Reopen on the next write: the directory may have been removed or the disk freed.
            self.file = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{pump, CUT_MARKER, MAX_LINE};

    #[tokio::test]
    async fn lines_of_two_pipes_never_interleave_mid_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = InstanceLog::open(dir.path(), "test-log").unwrap();
        let mk = |tag: char| {
            let mut v = Vec::new();
            for i in 0..20_000 {
                v.extend_from_slice(
                    format!("{tag}{i:06}{}\n", tag.to_string().repeat(50)).as_bytes(),
                );
            }
            v
        };
        let (a, b) = (mk('a'), mk('b'));
        let t1 = tokio::spawn(pump(std::io::Cursor::new(a), log.sender()));
        let t2 = tokio::spawn(pump(std::io::Cursor::new(b), log.sender()));
        t1.await.unwrap();
        t2.await.unwrap();
        log.sender().event("done");
        log.close().await;
        let text = std::fs::read_to_string(dir.path().join(OUTPUT_FILE)).unwrap();
        let (mut na, mut nb) = (0, 0);
        for line in text.lines() {
            if line.ends_with("ctsd: done") {
                continue;
            }
            let tag = line.chars().next().unwrap();
            let expected = format!(
                "{tag}{:06}{}",
                if tag == 'a' { na } else { nb },
                tag.to_string().repeat(50)
            );
            assert_eq!(line, expected);
            if tag == 'a' {
                na += 1
            } else {
                nb += 1
            }
        }
        assert_eq!((na, nb), (20_000, 20_000));
    }

    #[tokio::test]
    async fn partial_last_line_and_long_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = InstanceLog::open(&dir.path().join("nested/jordan"), "test-log").unwrap();
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat(b'x').take(MAX_LINE + 10));
        input.extend_from_slice(b"\nno newline at the end");
        pump(std::io::Cursor::new(input), log.sender()).await;
        log.close().await;
        let text = std::fs::read(dir.path().join("nested/jordan").join(OUTPUT_FILE)).unwrap();
        let mut expected = b"first\n".to_vec();
        expected.extend(std::iter::repeat(b'x').take(MAX_LINE));
        expected.extend_from_slice(CUT_MARKER);
        expected.extend(std::iter::repeat(b'x').take(10));
        expected.extend_from_slice(b"\nno newline at the end\n");
        assert_eq!(text, expected);
    }

    #[tokio::test]
    async fn unwritable_directory_counts_drops_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("jordan");
        std::fs::write(&blocker, b"a file where the directory should be").unwrap();
        let log = InstanceLog::open(&blocker, "test-log").unwrap();
        let s = log.sender();
        s.send_chunk(b"lost line\n".to_vec()).await;
        // Wait for the writer to have handled it (event-driven: dropped counter moves).
        for _ in 0..1000 {
            if log.dropped_bytes() > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(log.dropped_bytes(), 10);
        std::fs::remove_file(&blocker).unwrap();
        s.send_chunk(b"kept line\n".to_vec()).await;
        drop(s);
        log.close().await;
        let text = std::fs::read_to_string(blocker.join(OUTPUT_FILE)).unwrap();
        assert!(text.contains("10 bytes of output were lost"), "{text}");
        assert!(text.ends_with("kept line\n"), "{text}");
    }
}
