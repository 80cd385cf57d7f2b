//! Reading a worker's pipe into chunks of whole lines.

use crate::writer::LogSender;
use tokio::io::{AsyncRead, AsyncReadExt};

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
pub async fn pump<R: AsyncRead + Unpin>(mut pipe: R, log: LogSender) -> u64 {
    let mut total = 0u64;
    // `buf[..]` holds bytes read but not yet sent: at most one incomplete line.
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_LINE);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(MAX_LINE);
        }
        let n = match pipe.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        total += n as u64;
        if let Some(chunk) = take_lines(&mut buf) {
            log.send_chunk(chunk).await;
        }
    }
    if !buf.is_empty() {
        buf.push(b'\n');
        log.send_chunk(buf).await;
    }
    total
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
