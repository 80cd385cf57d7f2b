//! Reading an instance log from a point in time: `ctsctl logs jordan --since 1h`.
//!
//! Rotated files carry the time of their rotation in their name, so a file rotated before the
//! point holds nothing after it and is skipped unread. In the remaining files (gzipped ones
//! decompressed on the fly, one line at a time, never a whole file in memory) a line that
//! starts with a stamp (`logs.format: timestamped`, and ctsd's own event lines in either format)
//! has that time. A line without one (`raw` format) lies between the stamp before it (or the
//! start of its file, the previous rotation) and the stamp after it (or the end of its file);
//! when that range reaches the point, the line is included: better a few lines too many than
//! one missing. Such lines are not held in memory while that is unknown: where they start is
//! remembered, and they are read again once it is known. Output starts at the first line
//! included and runs to the end of the current file.

use crate::rotate::rotated_key;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes handed to the sink at a time.
const PIECE: usize = 64 * 1024;

/// Sends everything in `dir`'s log `base` (`output.log`) written at or after `since` to `sink`
/// in pieces of whole lines, oldest first; stops early when `sink` returns false.
///
/// # Errors
///
/// The directory or a file could not be read.
pub fn read_since(
    dir: &Path,
    base: &str,
    since: SystemTime,
    mut sink: impl FnMut(Vec<u8>) -> bool,
) -> io::Result<()> {
    let since_us = micros(since);
    // One entry per rotated file; while it is being compressed both forms exist: take the
    // `.gz` (complete before the plain one is removed).
    let mut rotated: BTreeMap<(u64, u32), PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let Some(key) = e.file_name().to_str().and_then(|n| rotated_key(base, n)) else {
            continue;
        };
        let path = e.path();
        let gz = is_gz(&path);
        rotated
            .entry(key)
            .and_modify(|p| {
                if gz {
                    *p = path.clone();
                }
            })
            .or_insert(path);
    }
    // A file's lines were written after the previous file's rotation.
    let mut start: Option<u64> = None;
    let mut files = Vec::new();
    for ((end, _), path) in rotated {
        if end >= since_us {
            files.push((path, start));
        }
        start = Some(end);
    }
    files.push((dir.join(base), start));

    let mut out = Out {
        piece: Vec::with_capacity(PIECE),
        sink: &mut sink,
        open: true,
    };
    let mut emitting = false;
    for (path, started) in files {
        // Gzipped meanwhile: read the `.gz`.
        let Some((path, file)) = open_either(&path) else {
            continue;
        };
        let started = started.or_else(|| file.metadata().ok()?.created().ok().map(micros));
        let mut reader = BufReader::with_capacity(PIECE, decoder(&path, file));
        // The latest time known to be before the next line.
        let mut before = started;
        // Where the undated lines start that may or may not be after the point: they are not
        // kept in memory but read again from there once that is known.
        let mut held_from: Option<u64> = None;
        let mut offset = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)? as u64;
            if n == 0 {
                break;
            }
            let at = offset;
            offset += n;
            if !emitting {
                match line_time(&line) {
                    Some(t) if t >= since_us => emitting = true,
                    Some(t) => {
                        // Everything held was before this line, so before the point.
                        held_from = None;
                        before = Some(t);
                        continue;
                    }
                    None if before.is_some_and(|t| t >= since_us) => emitting = true,
                    None => {
                        held_from.get_or_insert(at);
                        continue;
                    }
                }
                // The held lines may be after the point: they go first.
                if let Some(from) = held_from.take() {
                    if !out.copy_range(&path, from, at)? {
                        return Ok(());
                    }
                }
            }
            if !out.push(&line) {
                return Ok(());
            }
        }
        // The file ended after the point (or it would have been skipped): the held lines may
        // have been written after it.
        if let Some(from) = held_from.take() {
            emitting = true;
            if !out.copy_range(&path, from, offset)? {
                return Ok(());
            }
        }
    }
    out.flush();
    Ok(())
}

/// What goes to the sink, in pieces.
struct Out<'a, F: FnMut(Vec<u8>) -> bool> {
    piece: Vec<u8>,
    sink: &'a mut F,
    /// The sink still wants more.
    open: bool,
}

impl<F: FnMut(Vec<u8>) -> bool> Out<'_, F> {
    fn push(&mut self, bytes: &[u8]) -> bool {
        self.piece.extend_from_slice(bytes);
        if self.piece.len() >= PIECE {
            self.open = (self.sink)(std::mem::replace(
                &mut self.piece,
                Vec::with_capacity(PIECE),
            ));
        }
        self.open
    }

    /// Pushes bytes `from..to` of the (decompressed) file at `path`, whole lines, read again.
    fn copy_range(&mut self, path: &Path, from: u64, to: u64) -> io::Result<bool> {
        let Some((path, file)) = open_either(path) else {
            return Ok(self.open);
        };
        let mut reader = BufReader::with_capacity(PIECE, decoder(&path, file));
        io::copy(&mut (&mut reader).take(from), &mut io::sink())?;
        let mut range = reader.take(to - from);
        let mut line = Vec::new();
        loop {
            line.clear();
            if range.read_until(b'\n', &mut line)? == 0 || !self.push(&line) {
                return Ok(self.open);
            }
        }
    }

    fn flush(&mut self) {
        if self.open && !self.piece.is_empty() {
            (self.sink)(std::mem::take(&mut self.piece));
        }
    }
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Opens `path`, or its `.gz` form when it was compressed and removed meanwhile.
fn open_either(path: &Path) -> Option<(PathBuf, File)> {
    if let Ok(f) = File::open(path) {
        return Some((path.to_path_buf(), f));
    }
    if is_gz(path) {
        return None;
    }
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    File::open(&gz).ok().map(|f| (gz, f))
}

/// The file's content: gzipped files decompressed as they are read.
fn decoder(path: &Path, file: File) -> Box<dyn Read> {
    if is_gz(path) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    }
}

/// Microseconds since the epoch.
fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The time of a line starting with `2026-11-24T17:28:09.123Z `, in microseconds.
fn line_time(line: &[u8]) -> Option<u64> {
    let head = std::str::from_utf8(line.get(..25)?).ok()?;
    crate::time::parse_rfc3339_millis(head.strip_suffix(' ')?).map(micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_539_600 + secs)
    }

    fn stamp(secs: u64) -> String {
        crate::time::rfc3339_millis(at(secs))
    }

    fn collect(dir: &Path, since: SystemTime) -> String {
        let mut out = Vec::new();
        read_since(dir, "output.log", since, |p| {
            out.extend(p);
            true
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn skips_what_was_written_before_and_reads_rotated_and_gzipped_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Rotated at +100 s (gzipped) and at +200 s; the current file after that.
        let first = crate::rotate::rotated_path(d, "output.log", at(100));
        let mut gz = flate2::write::GzEncoder::new(
            File::create(format!("{}.gz", first.display())).unwrap(),
            flate2::Compression::default(),
        );
        write!(gz, "{} a\nraw a2\n{} b\n", stamp(10), stamp(90)).unwrap();
        gz.finish().unwrap();
        let second = crate::rotate::rotated_path(d, "output.log", at(200));
        std::fs::write(&second, format!("raw c\n{} d\nraw e\n", stamp(150))).unwrap();
        std::fs::write(d.join("output.log"), format!("raw f\n{} g\n", stamp(250))).unwrap();

        let all = collect(d, at(0));
        assert!(all.starts_with(&format!("{} a\n", stamp(10))), "{all}");
        assert!(
            all.ends_with(&format!("raw f\n{} g\n", stamp(250))),
            "{all}"
        );
        assert_eq!(all.lines().count(), 8);
        // From +50 s: `raw a2` was written between +10 s and +90 s: included, then b on.
        assert_eq!(
            collect(d, at(50)),
            format!(
                "raw a2\n{} b\nraw c\n{} d\nraw e\nraw f\n{} g\n",
                stamp(90),
                stamp(150),
                stamp(250)
            )
        );
        // From +120 s: `raw c` was written between +100 s and +150 s: included.
        assert!(collect(d, at(120)).starts_with("raw c\n"));
        // From +160 s: `raw e` between +150 s and the rotation at +200 s: included.
        assert_eq!(
            collect(d, at(160)),
            format!("raw e\nraw f\n{} g\n", stamp(250))
        );
        // From +220 s: `raw f` after the rotation at +200 s.
        assert_eq!(collect(d, at(220)), format!("raw f\n{} g\n", stamp(250)));
        assert_eq!(collect(d, at(300)), "");

        // While compression runs both forms exist: read once.
        let plain = second.clone();
        let gz = format!("{}.gz", plain.display());
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
        enc.finish().unwrap();
        assert_eq!(collect(d, at(120)).matches(" d\n").count(), 1);
    }

    #[test]
    fn many_undated_lines_before_a_stamp_before_the_point_stay_out() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut text = String::new();
        for i in 0..200_000 {
            text.push_str(&format!("raw line {i} of an old burst\n"));
        }
        text.push_str(&format!(
            "{} ctsd: worker started\nraw new\n{} ctsd: later\n",
            stamp(60),
            stamp(100)
        ));
        // The file was started by a rotation at +10 s.
        let rotated = crate::rotate::rotated_path(d, "output.log", at(10));
        std::fs::write(rotated, "").unwrap();
        std::fs::write(d.join("output.log"), &text).unwrap();
        // From +50 s: the burst may be after it (between +10 s and +60 s): included.
        assert_eq!(collect(d, at(50)).lines().count(), 200_003);
        // From +80 s: the burst (6 MB) was before the stamp at +60 s: out; `raw new` is
        // between +60 s and +100 s: in.
        let after = collect(d, at(80));
        assert_eq!(
            after,
            format!("raw new\n{} ctsd: later\n", stamp(100)),
            "{}",
            &after[..after.len().min(200)]
        );
    }
}
