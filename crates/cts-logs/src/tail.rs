//! The last lines of a log file, read backwards in blocks: never the whole file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read per step backwards.
const BLOCK: u64 = 64 * 1024;

/// At most this much is returned, however many lines were asked for.
pub const MAX_TAIL_BYTES: u64 = 16 << 20;

/// The last `lines` whole lines of `path` (fewer if the file has fewer, or if they would exceed
/// [`MAX_TAIL_BYTES`]). A missing file has no lines.
///
/// # Errors
///
/// When the file exists but cannot be read.
pub fn tail(path: &Path, lines: usize) -> io::Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if lines == 0 || len == 0 {
        return Ok(Vec::new());
    }
    // `buf` holds the file from `pos` to `len`.
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = len;
    loop {
        // A final newline ends the last line; it does not start one more.
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        let wanted = lines + usize::from(buf.last() == Some(&b'\n'));
        if newlines >= wanted || pos == 0 || len - pos >= MAX_TAIL_BYTES {
            break;
        }
        let step = BLOCK.min(pos);
        pos -= step;
        f.seek(SeekFrom::Start(pos))?;
        let mut block = vec![0u8; step as usize];
        f.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
    }
    // Keep the last `lines` lines.
    let body_end = if buf.last() == Some(&b'\n') {
        buf.len() - 1
    } else {
        buf.len()
    };
    let mut seen = 0;
    let mut start = 0;
    for i in (0..body_end).rev() {
        if buf[i] == b'\n' {
            seen += 1;
            if seen == lines {
                start = i + 1;
                break;
            }
        }
    }
    if seen < lines && pos > 0 {
        // Cut by the byte limit: drop the partial first line.
        start = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1);
    }
    Ok(buf.split_off(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_small_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("output.log");
        assert!(tail(&p, 5).unwrap().is_empty(), "missing file");
        std::fs::write(&p, b"a\nb\nc\n").unwrap();
        assert_eq!(tail(&p, 2).unwrap(), b"b\nc\n");
        assert_eq!(tail(&p, 10).unwrap(), b"a\nb\nc\n");
        std::fs::write(&p, b"a\nb\nno newline").unwrap();
        assert_eq!(tail(&p, 2).unwrap(), b"b\nno newline");
        let mut big = Vec::new();
        for i in 0..100_000 {
            big.extend_from_slice(format!("line {i:06}\n").as_bytes());
        }
        std::fs::write(&p, &big).unwrap();
        assert_eq!(
            tail(&p, 3).unwrap(),
            b"line 099997\nline 099998\nline 099999\n"
        );
        let t = tail(&p, 20_000).unwrap();
        assert_eq!(t.iter().filter(|&&b| b == b'\n').count(), 20_000);
        assert!(t.starts_with(b"line 080000\n"));
    }
}
