//! Reading a worker's pipe into chunks of whole lines.

use crate::options::LineFormat;
use crate::time::rfc3339_millis;
use crate::writer::LogSender;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes asked of the pipe per read: large reads mean few wake-ups under a flood.
const READ_SIZE: usize = 256 * 1024;

/// Longest line written as one piece; longer lines are cut into marked pieces.
pub const MAX_LINE: usize = 64 * 1024;

/// Appended to every piece of a cut line except the last, so that a reader of the file sees
/// that the line goes on in the next piece.
pub const CUT_MARKER: &[u8] = b" [ctsd: line continues]\n";

/// Reads `pipe` until EOF, sending runs of whole lines to `log`. The last line is kept even
/// without a trailing newline. Returns the number of bytes read.
///
/// Runs until the pipe closes, which happens when the worker and everything it started that
/// holds the pipe have exited; so it drains everything a worker wrote before dying.
///
/// Same as [`pump_tagged`] without a tag: with [`LineFormat::Timestamped`] lines get only the
/// time.
pub async fn pump<R: AsyncRead + Unpin>(pipe: R, log: LogSender) -> u64 {
    pump_tagged(pipe, log, String::new()).await
}

/// [`pump`], prefixing every line as the log's [`LineFormat`] says, with `tag` (e.g. `stdout`,
/// or a worker's id) after the time. With [`LineFormat::Raw`] the tag is not used.
///
/// The prefix is added here, on the reader task, so that the writer thread only copies bytes.
/// Every piece of a cut long line is a line of the file and gets its own prefix.
pub async fn pump_tagged<R: AsyncRead + Unpin>(mut pipe: R, log: LogSender, tag: String) -> u64 {
    let format = log.line_format();
    let send = |chunk: Vec<u8>| {
        let chunk = match format {
            LineFormat::Raw => chunk,
            LineFormat::Timestamped => prefixed(&chunk, &line_prefix(SystemTime::now(), &tag)),
        };
        log.send_chunk(chunk)
    };
    let mut total = 0u64;
    // `buf[..]` holds bytes read but not yet sent: at most one incomplete line.
    let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_SIZE);
        }
        let n = match pipe.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        total += n as u64;
        if let Some(chunk) = take_lines(&mut buf) {
            send(chunk).await;
        }
    }
    if !buf.is_empty() {
        buf.push(b'\n');
        send(buf).await;
    }
    total
}

/// `2026-11-24T17:28:09.123Z <tag> `, or without the tag when it is empty.
fn line_prefix(now: SystemTime, tag: &str) -> Vec<u8> {
    let stamp = rfc3339_millis(now);
    if tag.is_empty() {
        format!("{stamp} ").into_bytes()
    } else {
        format!("{stamp} {tag} ").into_bytes()
    }
}

/// `chunk` (whole lines) with `prefix` before each line.
fn prefixed(chunk: &[u8], prefix: &[u8]) -> Vec<u8> {
    let lines = chunk.iter().filter(|&&c| c == b'\n').count();
    let mut out = Vec::with_capacity(chunk.len() + lines * prefix.len());
    for line in chunk.split_inclusive(|&c| c == b'\n') {
        out.extend_from_slice(prefix);
        out.extend_from_slice(line);
    }
    out
}

/// Splits the complete lines off the front of `buf`, cutting lines longer than [`MAX_LINE`] into
/// marked pieces, and leaves the incomplete last line in `buf`. `None` when there is no complete
/// line yet.
fn take_lines(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    // Only lines that need cutting are copied into `out`; the common case hands over `buf`'s
    // front without copying it.
    let mut out: Vec<u8> = Vec::new();
    let mut emitted = 0; // buf[..emitted] is already in `out`
    let mut pos = 0; // start of the line being looked at
    loop {
        let rest = &buf[pos..];
        match rest.iter().position(|&c| c == b'\n') {
            Some(p) if p <= MAX_LINE => pos += p + 1,
            _ if rest.len() > MAX_LINE => {
                out.extend_from_slice(&buf[emitted..pos + MAX_LINE]);
                out.extend_from_slice(CUT_MARKER);
                pos += MAX_LINE;
                emitted = pos;
            }
            _ => break,
        }
    }
    if pos == 0 {
        return None;
    }
    if emitted == 0 {
        let rest = buf.split_off(pos);
        return Some(std::mem::replace(buf, rest));
    }
    out.extend_from_slice(&buf[emitted..pos]);
    buf.drain(..pos);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::LogOptions;
    use crate::writer::{InstanceLog, OUTPUT_FILE};

    #[test]
    fn prefixes_every_line() {
        assert_eq!(prefixed(b"a\nbc\n", b"> "), b"> a\n> bc\n");
        assert_eq!(prefixed(b"", b"> "), b"");
        let t = std::time::UNIX_EPOCH;
        assert_eq!(
            line_prefix(t, "stdout"),
            b"1970-01-01T00:00:00.000Z stdout "
        );
        assert_eq!(line_prefix(t, ""), b"1970-01-01T00:00:00.000Z ");
    }

    #[tokio::test]
    async fn timestamped_lines_carry_time_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions {
            format: LineFormat::Timestamped,
            ..LogOptions::default()
        };
        let log = InstanceLog::open_with(dir.path(), "test-log", options).unwrap();
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat(b'x').take(MAX_LINE + 10));
        input.extend_from_slice(b"\nlast without newline");
        pump_tagged(std::io::Cursor::new(input), log.sender(), "stderr".into()).await;
        pump(std::io::Cursor::new(b"untagged\n".to_vec()), log.sender()).await;
        log.close().await;
        let text = std::fs::read_to_string(dir.path().join(OUTPUT_FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let body: Vec<&str> = lines
            .iter()
            .map(|l| {
                let (stamp, rest) = l.split_at(24);
                assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{l}");
                rest
            })
            .collect();
        assert_eq!(body[0], " stderr first");
        assert!(body[1].starts_with(" stderr xxx"));
        assert!(body[1].ends_with(" [ctsd: line continues]"));
        assert_eq!(body[2], " stderr xxxxxxxxxx");
        assert_eq!(body[3], " stderr last without newline");
        assert_eq!(body[4], " untagged");
    }

    #[tokio::test]
    async fn raw_lines_ignore_the_tag() {
        let dir = tempfile::tempdir().unwrap();
        let log = InstanceLog::open(dir.path(), "test-log").unwrap();
        pump_tagged(
            std::io::Cursor::new(b"a\nb".to_vec()),
            log.sender(),
            "x".into(),
        )
        .await;
        log.close().await;
        let text = std::fs::read(dir.path().join(OUTPUT_FILE)).unwrap();
        assert_eq!(text, b"a\nb\n");
    }
}
