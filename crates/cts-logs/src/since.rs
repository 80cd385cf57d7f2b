//! Reading an instance log from a point in time: `ctsctl logs jordan --since 1h`.
//!
//! Rotated files carry the time of their rotation in their name, so a file rotated before the
//! point holds nothing after it and is skipped unread. In the remaining files (gzipped ones
//! decompressed on the fly, one line at a time, never a whole file in memory) a line that
//! starts with a stamp (`logs.format: timestamped`, and ctsd's own event lines in either format)
//! has that time. A line without one (`raw` format) lies between the stamp before it (or the
//! start of its file, the previous rotation) and the stamp after it (or the end of its file);
//! when that range reaches the point, the line is included: better a few lines too many than
//! one missing. Output starts at the first line included and runs to the end of the current
//! file.

use crate::rotate::rotated_key;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes handed to the sink at a time.
const PIECE: usize = 64 * 1024;

/// Undated lines held back while it is not known yet whether they come after the point; past
/// this, they are included (a raw log without stamps for this long is output from there).
const PENDING_MAX: usize = 4 << 20;

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
    let mut rotated: Vec<((u64, u32), PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let key = rotated_key(base, e.file_name().to_str()?)?;
            Some((key, e.path()))
        })
        .collect();
    rotated.sort();
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

    let mut emitting = false;
    let mut piece = Vec::with_capacity(PIECE);
    let mut pending: Vec<u8> = Vec::new();
    for (path, started) in files {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let started = started.or_else(|| file.metadata().ok()?.created().ok().map(micros));
        let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut reader = BufReader::with_capacity(PIECE, reader);
        // The latest time known to be before the next line.
        let mut before = started;
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if !emitting {
                match line_time(&line) {
                    Some(t) if t >= since_us => emitting = true,
                    Some(t) => {
                        // Everything held back was before this line, so before the point.
                        pending.clear();
                        before = Some(t);
                        continue;
                    }
                    None if before.is_some_and(|t| t >= since_us) => emitting = true,
                    None => {
                        pending.extend_from_slice(&line);
                        emitting = pending.len() > PENDING_MAX;
                        if !emitting {
                            continue;
                        }
                        line.clear();
                    }
                }
                // The lines held back may be after the point: they go first.
                piece.append(&mut pending);
            }
            piece.extend_from_slice(&line);
            if piece.len() >= PIECE && !sink(std::mem::take(&mut piece)) {
                return Ok(());
            }
        }
        // The file ended after the point (or it would have been skipped): lines held back
        // may have been written after it.
        if !emitting && !pending.is_empty() {
            emitting = true;
            piece.append(&mut pending);
        }
    }
    if !piece.is_empty() {
        sink(piece);
    }
    Ok(())
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
    }
}
