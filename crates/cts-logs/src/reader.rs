//! Reading a worker's pipe into chunks of whole lines.

use crate::options::LineFormat;
use crate::prefix::line_prefix;
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
/// The prefix (the time of the read and the tag) travels with the chunk and is inserted by the
/// writer thread while it copies the lines into its buffer, so that the runtime thread only
/// looks for line ends. Every piece of a cut long line is a line of the file and gets its own
/// prefix.
pub async fn pump_tagged<R: AsyncRead + Unpin>(pipe: R, log: LogSender, tag: String) -> u64 {
    match pump_until(pipe, log, tag, Vec::new(), std::future::pending()).await {
        Pumped::Closed(n) => n,
        Pumped::Stopped { .. } => unreachable!("never stopped"),
    }
}

/// How a [`pump_until`] ended.
#[derive(Debug)]
pub enum Pumped<R> {
    /// The pipe closed after this many bytes; everything read was sent.
    Closed(u64),
    /// Stopped with the pipe still open (ctsd hands it to the ctsd replacing it): every whole
    /// line read was sent; `pending` holds the start of a line not finished yet.
    Stopped {
        /// The pipe.
        pipe: R,
        /// Bytes read but not sent: at most one incomplete line.
        pending: Vec<u8>,
    },
}

/// [`pump_tagged`] that begins with `pending` (the incomplete line a previous pump of the same
/// pipe left) and stops when `stop` completes, giving back the pipe and what it has not sent.
/// Nothing read is lost either way: a read is never cut in the middle.
pub async fn pump_until<R: AsyncRead + Unpin>(
    mut pipe: R,
    log: LogSender,
    tag: String,
    pending: Vec<u8>,
    stop: impl std::future::Future<Output = ()>,
) -> Pumped<R> {
    let send = |chunk: Vec<u8>| {
        // Read per chunk: a reload may change the format while the worker runs.
        let prefix = match log.line_format() {
            LineFormat::Raw => None,
            LineFormat::Timestamped => Some(line_prefix(SystemTime::now(), &tag)),
        };
        log.send_lines(chunk, prefix)
    };
    tokio::pin!(stop);
    let mut total = 0u64;
    // `buf[..]` holds bytes read but not yet sent: at most one incomplete line.
    let mut buf: Vec<u8> = pending;
    buf.reserve(READ_SIZE);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_SIZE);
        }
        // Reading a pipe is cancel-safe: a read that loses the race took no bytes.
        let read = tokio::select! {
            biased;
            () = &mut stop => return Pumped::Stopped { pipe, pending: buf },
            r = pipe.read_buf(&mut buf) => r,
        };
        let n = match read {
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
    Pumped::Closed(total)
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
        // A newline among the next MAX_LINE + 1 bytes ends a line short enough, and so does
        // every newline before it: jump to the last one. Searching backwards, a flood of short
        // lines costs one short search per window, not one per line.
        let window = &buf[pos..buf.len().min(pos + MAX_LINE + 1)];
        match memchr::memrchr(b'\n', window) {
            Some(p) => pos += p + 1,
            None if buf.len() - pos > MAX_LINE => {
                out.extend_from_slice(&buf[emitted..pos + MAX_LINE]);
                out.extend_from_slice(CUT_MARKER);
                pos += MAX_LINE;
                emitted = pos;
            }
            None => break,
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

    #[test]
    fn lines_are_cut_exactly_at_max_line() {
        let cut = |input: Vec<u8>| {
            let mut buf = input;
            let out = take_lines(&mut buf).unwrap_or_default();
            (out, buf)
        };
        // MAX_LINE bytes and a newline: whole.
        let mut exact = vec![b'a'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(cut(exact.clone()), (exact, Vec::new()));
        // One byte more: a marked piece of MAX_LINE bytes, then the rest as its own line.
        let mut over = vec![b'a'; MAX_LINE + 1];
        over.push(b'\n');
        let mut want = vec![b'a'; MAX_LINE];
        want.extend_from_slice(CUT_MARKER);
        want.extend_from_slice(b"a\n");
        assert_eq!(cut(over), (want, Vec::new()));
        // A cut followed at once by the newline: the newline ends an empty last piece.
        let mut cut_then_nl = vec![b'b'; MAX_LINE];
        cut_then_nl.extend_from_slice(b"\nnext");
        let mut want = vec![b'b'; MAX_LINE];
        want.push(b'\n');
        assert_eq!(cut(cut_then_nl), (want, b"next".to_vec()));
        // Longer than MAX_LINE with no newline yet: the full piece goes, the rest waits.
        let long = vec![b'c'; MAX_LINE + 10];
        let (out, rest) = cut(long);
        assert_eq!(out.len(), MAX_LINE + CUT_MARKER.len());
        assert_eq!(rest, vec![b'c'; 10]);
        // Short lines around a long one keep their order.
        let mut mixed = b"x\n".to_vec();
        mixed.extend(vec![b'd'; 2 * MAX_LINE + 1]);
        mixed.extend_from_slice(b"\ny\nz");
        let (out, rest) = cut(mixed);
        assert_eq!(rest, b"z");
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], "x");
        assert!(lines[1].ends_with(" [ctsd: line continues]"));
        assert!(lines[2].ends_with(" [ctsd: line continues]"));
        assert_eq!(lines[3], "d");
        assert_eq!(lines[4], "y");
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
