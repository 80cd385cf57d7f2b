//! The directory side of rotation: naming rotated files, deleting old ones, compressing them.
//!
//! The writer thread decides *when* to rotate and renames its file; everything here works on
//! names in the instance's directory and keeps no state, so that retention can run on whichever
//! thread rotated last (the writer, or the compression helper when files are gzipped).
//!
//! Rotated files are named `<file>.<stamp>[.gz]` (`<file>` is `output.log` or `stderr.log`)
//! where `<stamp>` is the UTC time of the rotation to the microsecond, `20261124T172809.123456Z`.
//! A rotation never reuses or goes below the newest stamp already there (it takes that stamp
//! plus 1 µs instead), so names sort in the order the files were written, for retention and for
//! a shell's `zcat output.log.*` alike. Names of earlier versions (`…T172809.123Z[-N]`) are
//! still recognised. Only names of exactly these forms are ever deleted, so an operator's
//! `output.log.old` is safe.

use crate::time::{secs_from_utc, utc_fields};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Suffix of compressed rotated files.
const GZ: &str = ".gz";

/// Retention of one log file's rotated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    /// Rotated files kept at most.
    pub(crate) keep: u32,
    /// Rotated files older than this (by their stamp) are deleted.
    pub(crate) max_age: Option<Duration>,
}

/// Microseconds since the epoch.
fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// `20261124T172809.123456Z` for `us` microseconds since the epoch.
fn file_stamp(us: u64) -> String {
    let (y, m, d, h, mi, s) = utc_fields(us / 1_000_000);
    format!(
        "{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}.{:06}Z",
        us % 1_000_000
    )
}

/// A name for `base` (`output.log`) rotated at `now`, free in `dir` in both forms (plain and
/// `.gz`), and sorting after every rotated file of `base` already there.
pub(crate) fn rotated_path(dir: &Path, base: &str, now: SystemTime) -> PathBuf {
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| rotated_key(base, e.file_name().to_str()?))
        .map(|(us, _)| us)
        .max();
    let mut us = micros(now);
    if let Some(n) = newest {
        us = us.max(n + 1);
    }
    loop {
        let name = format!("{base}.{}", file_stamp(us));
        let taken = std::fs::symlink_metadata(dir.join(&name)).is_ok()
            || std::fs::symlink_metadata(dir.join(format!("{name}{GZ}"))).is_ok();
        if !taken {
            return dir.join(name);
        }
        us += 1;
    }
}

/// The retention sort key of a rotated file of `base`: its stamp in microseconds since the
/// epoch, then the `-N` of older names; the same for the plain and `.gz` forms; `None` for
/// any other name.
pub(crate) fn rotated_key(base: &str, name: &str) -> Option<(u64, u32)> {
    let rest = name.strip_prefix(base)?.strip_prefix('.')?;
    let rest = rest.strip_suffix(GZ).unwrap_or(rest);
    let (stamp, n) = match rest.split_once('-') {
        Some((stamp, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => {
            (stamp, n.parse().ok()?)
        }
        Some(_) => return None,
        None => (rest, 0),
    };
    let b = stamp.as_bytes();
    // 20261124T172809.123Z (earlier versions) or 20261124T172809.123456Z.
    let frac = match b.len() {
        20 => 3,
        23 => 6,
        _ => return None,
    };
    if b[8] != b'T' || b[15] != b'.' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let digits = &stamp.get(r)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let sub = num(16..16 + frac)? * if frac == 3 { 1000 } else { 1 };
    let secs = secs_from_utc(y, mo, d, h, mi, s)?;
    Some((secs * 1_000_000 + sub, n))
}

/// Deletes the rotated files of `base` in `dir` beyond the newest `keep`, and those older than
/// `max_age` at `now`. A file present in both forms (being compressed) counts once and loses
/// both.
pub(crate) fn prune(dir: &Path, base: &str, retention: Retention, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: BTreeMap<(u64, u32), Vec<PathBuf>> = BTreeMap::new();
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = e.file_name();
        if let Some(key) = name.to_str().and_then(|n| rotated_key(base, n)) {
            found.entry(key).or_default().push(e.path());
        }
    }
    let excess = found.len().saturating_sub(retention.keep as usize);
    let oldest_kept = retention
        .max_age
        .map(|age| micros(now).saturating_sub(u64::try_from(age.as_micros()).unwrap_or(u64::MAX)));
    for (i, ((us, _), paths)) in found.into_iter().enumerate() {
        if i >= excess && oldest_kept.map_or(true, |limit| us >= limit) {
            continue;
        }
        for path in paths {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot delete old log {}: {e}", path.display()),
            }
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
    pub(crate) fn start(
        dir: PathBuf,
        base: String,
        retention: Retention,
        thread_name: &str,
    ) -> io::Result<Compressor> {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let thread = std::thread::Builder::new()
            .name(format!("{thread_name}-gz"))
            .spawn(move || {
                for path in rx {
                    if let Err(e) = gzip(&path) {
                        tracing::warn!("cannot compress {}: {e}", path.display());
                    }
                    prune(&dir, &base, retention, SystemTime::now());
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

    const BASE: &str = "output.log";

    #[test]
    fn names_parse_and_sort() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_539_789_123_456);
        assert_eq!(file_stamp(micros(t)), "20261124T170309.123456Z");
        let k = |s: &str| rotated_key(BASE, s);
        assert_eq!(
            k("output.log.20261124T170309.123456Z"),
            Some((1_795_539_789_123_456, 0))
        );
        assert_eq!(
            k("output.log.20261124T170309.123456Z.gz"),
            k("output.log.20261124T170309.123456Z")
        );
        // Names of earlier versions: milliseconds and `-N`.
        assert_eq!(
            k("output.log.20261124T170309.123Z-2"),
            Some((1_795_539_789_123_000, 2))
        );
        assert!(k("output.log.20261124T170309.123Z-2") < k("output.log.20261124T170309.123Z-10"));
        assert!(k("output.log.20261124T170309.123Z-10") < k("output.log.20261124T170309.123001Z"));
        assert_eq!(k("stderr.log.20261124T170309.123456Z"), None);
        assert!(rotated_key("stderr.log", "stderr.log.20261124T170309.123456Z").is_some());
        for bad in [
            "output.log",
            "output.log.old",
            "output.log.20261124T170309.123Z-",
            "output.log.20261124T170309.123Z-x",
            ".output.log.20261124T170309.123Z.gz.tmp",
            "output.log.20261124X170309.123Z",
            "output.log.20261324T170309.123456Z",
            "output.log.2026112xT170309.123456Z",
        ] {
            assert_eq!(k(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_always_sort_in_rotation_order() {
        let dir = tempfile::tempdir().unwrap();
        let t = UNIX_EPOCH + Duration::from_micros(1_795_539_789_123_456);
        let a = rotated_path(dir.path(), BASE, t);
        std::fs::write(&a, b"a").unwrap();
        // The same microsecond, and a clock that went back: still after `a`.
        let b = rotated_path(dir.path(), BASE, t);
        assert!(b.to_str().unwrap().ends_with(".123457Z"), "{}", b.display());
        std::fs::write(format!("{}.gz", b.display()), b"b").unwrap();
        let c = rotated_path(dir.path(), BASE, t - Duration::from_secs(5));
        assert!(c.to_str().unwrap().ends_with(".123458Z"), "{}", c.display());
        std::fs::write(&c, b"c").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "output.log.20261124T170309.123456Z",
                "output.log.20261124T170309.123457Z.gz",
                "output.log.20261124T170309.123458Z",
            ],
            "plain byte order (a shell glob) is rotation order"
        );
    }

    #[test]
    fn retention_by_count_and_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        let now = UNIX_EPOCH + Duration::from_secs(1_795_539_789);
        for age in [10, 5, 3, 2, 1] {
            let p = rotated_path(dir.path(), BASE, now - day * age);
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::write(dir.path().join("output.log.old"), b"mine").unwrap();
        let left = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        prune(
            dir.path(),
            BASE,
            Retention {
                keep: 4,
                max_age: None,
            },
            now,
        );
        assert_eq!(left().len(), 5, "{:?}", left());
        prune(
            dir.path(),
            BASE,
            Retention {
                keep: 100,
                max_age: Some(day * 4),
            },
            now,
        );
        let l = left();
        assert_eq!(l.len(), 4, "{l:?}");
        assert!(l.contains(&"output.log.old".to_owned()));
    }
}
