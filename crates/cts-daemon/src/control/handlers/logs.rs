//! `logs INSTANCE[:PROGRAM] [-n N | --since TIME] [-f] [--stderr]`: the last lines of the
//! instance's log (`output.log`; `<program>.log` for a program)
//! (read backwards in blocks), or everything since a time (across rotated and gzipped files),
//! read off the runtime thread; with follow, every chunk the writer writes afterwards, as it
//! writes it (no polling of the file, and rotation is invisible to the follower). Frames go
//! out through the bounded emit queue: a slow client slows the reading, and a slow follower
//! skips chunks (it is told how many), so memory never grows with the log.

use super::Emit;
use crate::control::Shared;
use cts_proto::{ErrorKind, ErrorReply, LogData, LogsRequest, Response};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

/// Most lines `-n` may ask for.
const MAX_LINES: u32 = 100_000;

pub async fn handle(r: &LogsRequest, shared: &Shared, emit: Emit) -> Response {
    let instances = shared.snapshot();
    let idx = match super::resolve(std::slice::from_ref(&r.instance), &instances) {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let sel = &idx[0];
    let entry = &instances[sel.index];
    let log = match (&sel.part, r.stderr) {
        (super::Part::Program(name), stderr) => {
            let Some(p) = entry.program(name) else {
                return ErrorReply::new(ErrorKind::UnknownInstance, "no such program").into();
            };
            match (stderr, &p.err_log) {
                (false, _) => p.log.clone(),
                (true, Some(l)) => l.clone(),
                (true, None) => {
                    let msg = format!(
                        "{}'s stderr is in {name}.log with its stdout (logs.stderr: merged)",
                        sel.name
                    );
                    return ErrorReply::new(ErrorKind::Failed, msg).into();
                }
            }
        }
        (_, true) => match &entry.err_log {
            Some(l) => l.clone(),
            None => {
                let msg = format!(
                    "{}'s stderr is in output.log with its stdout (logs.stderr: merged)",
                    entry.config.key
                );
                return ErrorReply::new(ErrorKind::Failed, msg).into();
            }
        },
        (_, false) => entry.log.clone(),
    };
    // Only the log is kept: the snapshot holds every pool's log sender, and a follower must
    // not keep the log of a program a reload removes from closing.
    drop(idx);
    drop(instances);
    // Subscribe before reading, so no line falls between what is read and what follows.
    let mut follow = r.follow.then(|| log.follow());
    let path = log.path().to_path_buf();
    let old = match r.since_ms {
        Some(ms) => match since(&path, UNIX_EPOCH + Duration::from_millis(ms), &emit).await {
            Ok(()) => String::new(),
            Err(resp) => return resp,
        },
        None => {
            let lines = r.lines.min(MAX_LINES) as usize;
            let p = path.clone();
            match tokio::task::spawn_blocking(move || cts_logs::tail::tail(&p, lines)).await {
                Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
                Ok(Err(e)) => return cannot_read(&path, &e),
                Err(e) => return ErrorReply::new(ErrorKind::Failed, e.to_string()).into(),
            }
        }
    };
    let Some(rx) = follow.as_mut() else {
        return data(old, false);
    };
    if emit.send(data(old, true)).await.is_err() {
        return gone();
    }
    loop {
        let text = match rx.recv().await {
            Ok(chunk) => String::from_utf8_lossy(&chunk).into_owned(),
            Err(RecvError::Lagged(n)) => format!("[ctsctl logs: {n} chunks skipped: this client reads slower than the log is written]\n"),
            Err(RecvError::Closed) => return gone(),
        };
        if emit.send(data(text, true)).await.is_err() {
            return gone();
        }
    }
}

/// Emits everything in the log at `path` (and its rotated files) written since `t`.
async fn since(
    path: &std::path::Path,
    t: std::time::SystemTime,
    emit: &Emit,
) -> Result<(), Response> {
    let (Some(dir), Some(base)) = (
        path.parent().map(std::path::Path::to_path_buf),
        path.file_name().and_then(|n| n.to_str()).map(str::to_owned),
    ) else {
        return Err(ErrorReply::new(ErrorKind::Failed, "no log file").into());
    };
    // The reading thread waits for room here, so it never runs ahead of the client.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let reader = tokio::task::spawn_blocking(move || {
        cts_logs::since::read_since(&dir, &base, t, |piece| tx.blocking_send(piece).is_ok())
    });
    while let Some(piece) = rx.recv().await {
        let text = String::from_utf8_lossy(&piece).into_owned();
        if emit.send(data(text, true)).await.is_err() {
            return Err(gone());
        }
    }
    match reader.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(cannot_read(path, &e)),
        Err(e) => Err(ErrorReply::new(ErrorKind::Failed, e.to_string()).into()),
    }
}

fn data(data: String, more: bool) -> Response {
    Response::LogData(LogData { data, more })
}

fn cannot_read(path: &std::path::Path, e: &std::io::Error) -> Response {
    ErrorReply::new(
        ErrorKind::Failed,
        format!("cannot read {}: {e}", path.display()),
    )
    .into()
}

fn gone() -> Response {
    ErrorReply::new(ErrorKind::ShuttingDown, "the log is no longer written").into()
}
