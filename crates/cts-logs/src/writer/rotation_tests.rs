//! Rotation, retention, compression and reopening, on real files in temporary directories.
//! Time is faked by driving a [`Writer`] directly with an injected clock.

use super::*;
use crate::options::Rotation;
use crate::reader::pump;
use crate::rotate::rotated_key;
use std::io::Read;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncRead, ReadBuf};

/// A pipe that hands out its data in pseudo-random small reads (1..=700 bytes), so that the
/// reader makes many small chunks.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    seed: u64,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.seed = this
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let step = 1 + (this.seed >> 33) as usize % 700;
        let n = step.min(buf.remaining()).min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// `count` numbered lines of varying length.
fn numbered(count: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..count {
        v.extend_from_slice(format!("line {i:06} {}\n", "x".repeat(i % 90)).as_bytes());
    }
    v
}

/// The rotated files of `dir`, oldest first, as (name, content uncompressed), and the content
/// of `output.log`. Fails on leftovers of compression.
fn files(dir: &Path) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let mut rotated = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name == OUTPUT_FILE {
            continue;
        }
        assert!(
            rotated_key(OUTPUT_FILE, &name).is_some(),
            "unexpected file {name}"
        );
        let raw = std::fs::read(dir.join(&name)).unwrap();
        let content = if name.ends_with(".gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            raw
        };
        rotated.push((name, content));
    }
    rotated.sort_by_key(|(name, _)| rotated_key(OUTPUT_FILE, name));
    let current = std::fs::read(dir.join(OUTPUT_FILE)).unwrap_or_default();
    (rotated, current)
}

fn opts(max_size: u64, rotate: Rotation, keep: u32, compress: bool) -> LogOptions {
    LogOptions {
        max_size,
        rotate,
        keep,
        max_age: None,
        compress,
        format: crate::options::LineFormat::Raw,
    }
}

/// A writer of `output.log` in `dir` reading the time from `now` (milliseconds).
fn test_writer(
    dir: &Path,
    options: LogOptions,
    counters: Arc<Counters>,
    now: &Arc<AtomicU64>,
) -> Writer {
    Writer::new(dir, OUTPUT_FILE, "t", options, counters, fake_clock(now))
}

/// Pumps `input` in small reads through a log with `options` and closes it.
async fn pump_all(dir: &Path, input: &[u8], options: LogOptions) -> u64 {
    let log = InstanceLog::open_with(dir, "test-log", options).unwrap();
    let pipe = Trickle {
        data: input.to_vec(),
        pos: 0,
        seed: 7,
    };
    pump(pipe, log.sender()).await;
    let written = log.counters.clone();
    log.close().await;
    written.written.load(Ordering::Relaxed)
}

/// A clock the test moves by hand, in milliseconds since the epoch.
fn fake_clock(ms: &Arc<AtomicU64>) -> Clock {
    let ms = ms.clone();
    Box::new(move || UNIX_EPOCH + Duration::from_millis(ms.load(Ordering::Relaxed)))
}

/// 2026-11-24T17:00:00.000Z.
const FIVE_PM: u64 = 1_795_539_600_000;

#[tokio::test]
async fn size_rotation_keeps_every_line_whole_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = numbered(3000);
    let written = pump_all(
        dir.path(),
        &input,
        opts(4096, Rotation::Never, 10_000, false),
    )
    .await;
    assert_eq!(written, input.len() as u64);
    let (rotated, current) = files(dir.path());
    assert!(rotated.len() > 20, "{} rotations", rotated.len());
    let mut all = Vec::new();
    for (name, content) in &rotated {
        assert!(content.len() <= 4096, "{name}: {} bytes", content.len());
        // Rotation happens between chunks of whole lines: every file ends a line, and a file
        // is only cut when the next chunk would not fit.
        assert!(content.ends_with(b"\n"), "{name}");
        all.extend_from_slice(content);
    }
    assert!(current.len() <= 4096);
    all.extend_from_slice(&current);
    assert!(all == input, "lines lost, duplicated or reordered");
}

#[tokio::test]
async fn a_chunk_larger_than_max_size_is_split_between_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = InstanceLog::open_with(
        dir.path(),
        "test-log",
        opts(4096, Rotation::Never, 10, false),
    )
    .unwrap();
    let big = numbered(300);
    assert!(big.len() > 3 * 4096);
    let s = log.sender();
    s.send_chunk(b"before\n".to_vec()).await;
    s.send_chunk(big.clone()).await;
    s.send_chunk(b"after\n".to_vec()).await;
    // One line longer than max_size: alone in a file of its own, whole.
    let long = [vec![b'L'; 5000], b"\n".to_vec()].concat();
    s.send_chunk(long.clone()).await;
    drop(s);
    log.close().await;
    let (rotated, current) = files(dir.path());
    let mut all: Vec<u8> = rotated.iter().flat_map(|(_, c)| c.clone()).collect();
    all.extend_from_slice(&current);
    let expected = [b"before\n".to_vec(), big, b"after\n".to_vec(), long.clone()].concat();
    assert_eq!(all, expected, "every byte once, in order");
    for (name, c) in &rotated {
        assert!(c.ends_with(b"\n"), "{name:?} ends on a line boundary");
        assert!(
            c.len() <= 4096 || c == &long,
            "{name:?} is {} bytes",
            c.len()
        );
    }
}

#[tokio::test]
async fn retention_keeps_the_newest_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("output.log.old"), b"an operator's file").unwrap();
    let input = numbered(3000);
    pump_all(dir.path(), &input, opts(4096, Rotation::Never, 3, false)).await;
    assert!(std::fs::remove_file(dir.path().join("output.log.old")).is_ok());
    let (rotated, current) = files(dir.path());
    assert_eq!(rotated.len(), 3);
    let mut tail: Vec<u8> = rotated.into_iter().flat_map(|(_, c)| c).collect();
    tail.extend_from_slice(&current);
    // The newest three plus the current file: exactly the end of the input.
    assert!(input.ends_with(&tail));
    assert!(input[..input.len() - tail.len()].ends_with(b"\n"));
    assert!(tail.len() > 3 * 3000);
}

#[tokio::test]
async fn rotated_files_are_gzipped_off_the_writer() {
    for keep in [10_000, 2] {
        let dir = tempfile::tempdir().unwrap();
        let input = numbered(3000);
        pump_all(dir.path(), &input, opts(4096, Rotation::Never, keep, true)).await;
        let (rotated, current) = files(dir.path());
        assert!(rotated.iter().all(|(name, _)| name.ends_with(".gz")));
        let mut all: Vec<u8> = rotated.iter().flat_map(|(_, c)| c.clone()).collect();
        all.extend_from_slice(&current);
        if keep == 2 {
            assert_eq!(rotated.len(), 2);
            assert!(input.ends_with(&all));
        } else {
            assert!(rotated.len() > 20);
            assert!(all == input, "lines lost, duplicated or reordered");
        }
    }
}

#[test]
fn time_rotation_at_the_hour_when_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(FIVE_PM + 3_599_000)); // 17:59:59.000
    let counters = Arc::new(Counters::default());
    let options = opts(0, Rotation::Hourly, 10, false);
    let mut w = test_writer(dir.path(), options, counters, &now);
    let mut out = Vec::new();
    w.push(&mut out, b"one\n");
    w.push(&mut out, b"two\n");
    w.flush(&mut out);
    // A quiet hour later nothing has happened yet: the clock is read when data arrives.
    now.store(FIVE_PM + 2 * 3_600_000 + 500, Ordering::Relaxed); // 19:00:00.500
    assert_eq!(files(dir.path()).0.len(), 0);
    w.push(&mut out, b"three\n");
    w.flush(&mut out);
    // Same hour: no rotation.
    now.store(FIVE_PM + 2 * 3_600_000 + 3_599_999, Ordering::Relaxed);
    w.push(&mut out, b"four\n");
    w.flush(&mut out);
    w.finish();
    let (rotated, current) = files(dir.path());
    assert_eq!(
        rotated,
        vec![(
            "output.log.20261124T190000.500000Z".to_owned(),
            b"one\ntwo\n".to_vec()
        )]
    );
    assert_eq!(current, b"three\nfour\n");
}

#[test]
fn an_empty_file_is_not_rotated_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(FIVE_PM));
    let options = opts(0, Rotation::Daily, 10, false);
    let counters = Arc::new(Counters::default());
    let mut w = test_writer(dir.path(), options, counters, &now);
    now.store(FIVE_PM + 3 * 86_400_000, Ordering::Relaxed);
    let mut out = Vec::new();
    w.push(&mut out, b"first\n");
    w.flush(&mut out);
    w.finish();
    let (rotated, current) = files(dir.path());
    assert!(rotated.is_empty());
    assert_eq!(current, b"first\n");
}

#[test]
fn a_restart_continues_the_existing_file_size_and_day() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(OUTPUT_FILE);
    std::fs::write(&path, vec![b'.'; 3000]).unwrap();
    // Size: 3000 bytes already there, so 2000 more do not fit in 4096.
    let counters = Arc::new(Counters::default());
    let now = Arc::new(AtomicU64::new(FIVE_PM));
    let options = opts(4096, Rotation::Never, 10, false);
    let mut w = test_writer(dir.path(), options, counters.clone(), &now);
    let mut out = Vec::new();
    w.push(&mut out, &[b'-'; 2000]);
    w.flush(&mut out);
    w.finish();
    let (rotated, current) = files(dir.path());
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0].1, vec![b'.'; 3000]);
    assert_eq!(current, vec![b'-'; 2000]);
    // Day: a file last written yesterday (by a previous run) rotates at its first new line.
    let f = File::options().append(true).open(&path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_millis(FIVE_PM - 86_400_000))
        .unwrap();
    drop(f);
    let options = opts(0, Rotation::Daily, 10, false);
    let mut w = test_writer(dir.path(), options, counters, &now);
    w.push(&mut out, b"today\n");
    w.flush(&mut out);
    w.finish();
    let (rotated, current) = files(dir.path());
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[1].1, vec![b'-'; 2000]);
    assert_eq!(current, b"today\n");
}

#[test]
fn reopen_after_an_external_rename_starts_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(FIVE_PM));
    let counters = Arc::new(Counters::default());
    let mut w = test_writer(dir.path(), LogOptions::default(), counters, &now);
    let mut out = Vec::new();
    w.push(&mut out, b"one\n");
    w.flush(&mut out);
    let moved = dir.path().join("moved.log");
    std::fs::rename(dir.path().join(OUTPUT_FILE), &moved).unwrap();
    w.push(&mut out, b"two\n");
    w.reopen(&mut out);
    w.push(&mut out, b"three\n");
    w.flush(&mut out);
    w.finish();
    assert_eq!(std::fs::read(&moved).unwrap(), b"one\ntwo\n");
    assert_eq!(
        std::fs::read(dir.path().join(OUTPUT_FILE)).unwrap(),
        b"three\n"
    );
}

#[tokio::test]
async fn reopen_request_goes_through_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let log = InstanceLog::open(dir.path(), "test-log").unwrap();
    let s = log.sender();
    s.send_chunk(b"one\n".to_vec()).await;
    // Event-driven wait: the counter moves once the line is in the file.
    for _ in 0..2000 {
        if log.written_bytes() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let moved = dir.path().join("moved.log");
    std::fs::rename(log.path(), &moved).unwrap();
    log.reopen();
    s.send_chunk(b"two\n".to_vec()).await;
    drop(s);
    log.close().await;
    assert_eq!(std::fs::read(&moved).unwrap(), b"one\n");
    assert_eq!(
        std::fs::read(dir.path().join(OUTPUT_FILE)).unwrap(),
        b"two\n"
    );
}

#[test]
fn prefixed_lines_split_at_line_boundaries_when_they_cross_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(FIVE_PM));
    let counters = Arc::new(Counters::default());
    let mut w = test_writer(
        dir.path(),
        opts(40, Rotation::Never, 100, false),
        counters,
        &now,
    );
    let mut out = Vec::new();
    // 3 + 3 lines of 8 bytes once prefixed, 40 bytes a file: the second chunk does not fit
    // behind the first (the fast path undoes its copy) and is split at a line boundary.
    w.push_prefixed(&mut out, b"aaaa\nbbbb\ncccc\n", b"p> ");
    w.push_prefixed(&mut out, b"dddd\neeee\nffff\n", b"p> ");
    w.flush(&mut out);
    w.finish();
    let (rotated, current) = files(dir.path());
    let mut all: Vec<u8> = rotated.iter().flat_map(|(_, c)| c.clone()).collect();
    all.extend_from_slice(&current);
    assert_eq!(
        String::from_utf8(all).unwrap(),
        "p> aaaa\np> bbbb\np> cccc\np> dddd\np> eeee\np> ffff\n"
    );
    assert_eq!(rotated.len(), 1);
    assert_eq!(
        rotated[0].1,
        b"p> aaaa\np> bbbb\np> cccc\np> dddd\np> eeee\n"
    );
    assert_eq!(current, b"p> ffff\n");
}
