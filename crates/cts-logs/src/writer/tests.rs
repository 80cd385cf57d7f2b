//! End-to-end behaviour of the writer: interleaving, long lines, write errors.

use super::*;
use crate::reader::{pump, CUT_MARKER, MAX_LINE};

#[tokio::test]
async fn lines_of_two_pipes_never_interleave_mid_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = InstanceLog::open(dir.path(), "test-log").unwrap();
    let mk = |tag: char| {
        let mut v = Vec::new();
        for i in 0..20_000 {
            v.extend_from_slice(format!("{tag}{i:06}{}\n", tag.to_string().repeat(50)).as_bytes());
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
