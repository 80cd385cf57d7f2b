//! Line prefixes: what [`crate::reader`] puts in front of each line with
//! [`LineFormat::Timestamped`](crate::LineFormat::Timestamped), and how the writer thread
//! inserts it while copying a chunk into its batch.
//!
//! Shared by the reader (which builds the prefix) and the writer (which applies it), so that
//! neither module depends on the other for it.

use crate::time::rfc3339_millis;
use std::time::SystemTime;

/// `2026-11-24T17:28:09.123Z <tag> `, or without the tag when it is empty.
pub(crate) fn line_prefix(now: SystemTime, tag: &str) -> Vec<u8> {
    let stamp = rfc3339_millis(now);
    if tag.is_empty() {
        format!("{stamp} ").into_bytes()
    } else {
        format!("{stamp} {tag} ").into_bytes()
    }
}

/// Appends `chunk` (whole lines) to `out` with `prefix` before each line.
pub(crate) fn prefix_into(out: &mut Vec<u8>, chunk: &[u8], prefix: &[u8]) {
    // Room for lines of 64 bytes on average; `extend_from_slice` grows it if they are shorter.
    out.reserve(chunk.len() + chunk.len() / 64 * prefix.len());
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', chunk) {
        out.extend_from_slice(prefix);
        out.extend_from_slice(&chunk[start..=end]);
        start = end + 1;
    }
    if start < chunk.len() {
        out.extend_from_slice(prefix);
        out.extend_from_slice(&chunk[start..]);
    }
}

/// The length of [`prefix_into`]'s output.
#[cfg(test)]
fn prefixed_len(chunk: &[u8], prefix: &[u8]) -> usize {
    let mut lines = memchr::memchr_iter(b'\n', chunk).count();
    if chunk.last().is_some_and(|&c| c != b'\n') {
        lines += 1;
    }
    chunk.len() + lines * prefix.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(chunk: &[u8], prefix: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prefix_into(&mut out, chunk, prefix);
        assert_eq!(out.len(), prefixed_len(chunk, prefix));
        out
    }

    #[test]
    fn prefixes_every_line() {
        assert_eq!(prefixed(b"a\nbc\n", b"> "), b"> a\n> bc\n");
        assert_eq!(prefixed(b"a\nb", b"> "), b"> a\n> b");
        assert_eq!(prefixed(b"", b"> "), b"");
        let t = std::time::UNIX_EPOCH;
        assert_eq!(
            line_prefix(t, "stdout"),
            b"1970-01-01T00:00:00.000Z stdout "
        );
        assert_eq!(line_prefix(t, ""), b"1970-01-01T00:00:00.000Z ");
    }
}
