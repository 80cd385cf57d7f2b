//! The directory side of rotation: naming rotated files, deleting old ones, compressing them.
//!
//! The writer thread decides *when* to rotate and renames its file; everything here works on
//! names in the instance's directory and keeps no state, so that retention can run on whichever
//! thread rotated last (the writer, or the compression helper when files are gzipped).
//!
//! Rotated files are named `output.log.<stamp>[-N][.gz]` where `<stamp>` is the UTC time of the
//! rotation, `20261124T172809.123Z`, and `-N` makes the name unique when two rotations fall in
//! the same millisecond. Names sort by stamp, then by `N`; that is the order retention uses. Only
//! names of exactly this form are ever deleted, so an operator's `output.log.old` is safe.

use crate::time::rfc3339_millis;
use crate::writer::OUTPUT_FILE;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

/// Suffix of compressed rotated files.
const GZ: &str = ".gz";

/// `20261124T172809.123Z`: the RFC 3339 stamp without `-` and `:`, which are awkward in file
/// names.
fn file_stamp(t: SystemTime) -> String {
    rfc3339_millis(t)
        .chars()
        .filter(|&c| c != '-' && c != ':')
        .collect()
}

/// A name for the file rotated at `now` that is free in `dir`, in neither form (plain or
/// `.gz`), and sorts after every rotated file already there with the same stamp. (Merely free
/// is not enough: once retention deleted `<stamp>` but kept `<stamp>-1`, reusing `<stamp>`
/// would make the newest file look the oldest.)
pub(crate) fn rotated_path(dir: &Path, now: SystemTime) -> PathBuf {
    let stamp = file_stamp(now);
    let base = format!("{OUTPUT_FILE}.{stamp}");
    let mut n = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| rotated_key(e.file_name().to_str()?))
        .filter(|(s, _)| *s == stamp)
        .map(|(_, n)| n + 1)
        .max()
        .unwrap_or(0);
    let taken = |name: &str| {
        std::fs::symlink_metadata(dir.join(name)).is_ok()
            || std::fs::symlink_metadata(dir.join(format!("{name}{GZ}"))).is_ok()
    };
    loop {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if !taken(&name) {
            return dir.join(name);
        }
        n += 1;
    }
}

/// The retention sort key of a rotated file's name (stamp, `N`), the same for its plain and
/// `.gz` forms; `None` for any other name.
pub(crate) fn rotated_key(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix(OUTPUT_FILE)?.strip_prefix('.')?;
    let rest = rest.strip_suffix(GZ).unwrap_or(rest);
    let (stamp, n) = match rest.split_once('-') {
        Some((stamp, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => {
            (stamp, n.parse().ok()?)
        }
        Some(_) => return None,
        None => (rest, 0),
    };
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 20
        && b[8] == b'T'
        && b[15] == b'.'
        && b[19] == b'Z'
        && digits(0..8)
        && digits(9..15)
        && digits(16..19);
    ok.then(|| (stamp.to_owned(), n))
}

/// Deletes the oldest rotated files in `dir` beyond the newest `keep`. A file present in both
/// forms (being compressed) counts once and loses both.
pub(crate) fn prune(dir: &Path, keep: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: BTreeMap<(String, u32), Vec<PathBuf>> = BTreeMap::new();
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = e.file_name();
        if let Some(key) = name.to_str().and_then(rotated_key) {
            found.entry(key).or_default().push(e.path());
        }
    }
    let excess = found.len().saturating_sub(keep as usize);
    for path in found.into_values().take(excess).flatten() {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot delete old log {}: {e}", path.display()),
        }
    }
}

/// Compresses `path` to `<path>.gz` and removes `path`. Writes a hidden temporary first, so
/// that a crash leaves either the plain file or a complete `.gz`, never a truncated one under a
/// name retention counts.
///
/// # Errors
///
/// Reading, writing or renaming failed; the plain file is then kept.
pub(crate) fn gzip(path: &Path) -> io::Result<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(io::Error::other("not a rotated file name"));
    };
    let tmp = dir.join(format!(".{name}{GZ}.tmp"));
    let dst = dir.join(format!("{name}{GZ}"));
    let r = (|| {
        let mut src = File::open(path)?;
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut enc = GzEncoder::new(BufWriter::new(out), Compression::default());
        io::copy(&mut src, &mut enc)?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        // The plain file is removed next: its content must be on disk in the other form first.
        out.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        std::fs::remove_file(path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|()| dst)
}

/// The helper thread that gzips rotated files of one instance, one at a time, and applies
/// retention after each (so that retention sees the finished `.gz`). Started at the first
/// rotation that needs it.
#[derive(Debug)]
pub(crate) struct Compressor {
    /// Rotated files to compress; dropped to let the thread finish.
    tx: mpsc::Sender<PathBuf>,
    /// Joined when the writer exits, so that close() returns with everything compressed.
    thread: std::thread::JoinHandle<()>,
}

impl Compressor {
    /// Starts the thread for `dir`.
    ///
    /// # Errors
    ///
    /// The thread cannot be spawned.
    pub(crate) fn start(dir: PathBuf, keep: u32, thread_name: &str) -> io::Result<Compressor> {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let thread = std::thread::Builder::new()
            .name(format!("{thread_name}-gz"))
            .spawn(move || {
                for path in rx {
                    if let Err(e) = gzip(&path) {
                        tracing::warn!("cannot compress {}: {e}", path.display());
                    }
                    prune(&dir, keep);
                }
            })?;
        Ok(Compressor { tx, thread })
    }

    /// Queues `path`; gives it back if the thread is gone.
    pub(crate) fn send(&self, path: PathBuf) -> Result<(), PathBuf> {
        self.tx.send(path).map_err(|e| e.0)
    }

    /// Waits until everything queued is compressed.
    pub(crate) fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn names_parse_and_sort() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_539_789_123);
        assert_eq!(file_stamp(t), "20261124T170309.123Z");
        let k = |s: &str| rotated_key(s);
        assert_eq!(
            k("output.log.20261124T170309.123Z"),
            Some(("20261124T170309.123Z".into(), 0))
        );
        assert_eq!(
            k("output.log.20261124T170309.123Z.gz"),
            k("output.log.20261124T170309.123Z")
        );
        assert!(k("output.log.20261124T170309.123Z-2") < k("output.log.20261124T170309.123Z-10"));
        for bad in [
            "output.log",
            "output.log.old",
            "output.log.20261124T170309.123Z-",
            "output.log.20261124T170309.123Z-x",
            ".output.log.20261124T170309.123Z.gz.tmp",
            "output.log.20261124X170309.123Z",
        ] {
            assert_eq!(k(bad), None, "{bad}");
        }
    }

    #[test]
    fn same_millisecond_gets_a_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let t = UNIX_EPOCH + Duration::from_millis(1_795_539_789_123);
        let a = rotated_path(dir.path(), t);
        std::fs::write(&a, b"a").unwrap();
        let b = rotated_path(dir.path(), t);
        assert!(b.to_str().unwrap().ends_with("123Z-1"), "{}", b.display());
        std::fs::write(format!("{}.gz", b.display()), b"b").unwrap();
        let c = rotated_path(dir.path(), t);
        assert!(c.to_str().unwrap().ends_with("123Z-2"), "{}", c.display());
        // Retention deleted the oldest two: the next still sorts last.
        std::fs::remove_file(&a).unwrap();
        std::fs::remove_file(format!("{}.gz", b.display())).unwrap();
        std::fs::write(&c, b"c").unwrap();
        let d = rotated_path(dir.path(), t);
        assert!(d.to_str().unwrap().ends_with("123Z-3"), "{}", d.display());
    }
}
