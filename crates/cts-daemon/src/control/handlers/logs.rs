//! `logs INSTANCE [-n N] [-f]`: the last lines of the instance log, read backwards in blocks
//! off the runtime thread; with follow, every chunk the writer writes afterwards, as it writes
//! it (no polling of the file, and rotation is invisible to the follower).

use super::Emit;
use crate::Shared;
use cts_proto::{ErrorKind, ErrorReply, LogData, LogsRequest, Response};
use tokio::sync::broadcast::error::RecvError;

/// Most lines `-n` may ask for.
const MAX_LINES: u32 = 100_000;

pub async fn handle(r: &LogsRequest, shared: &Shared, emit: Emit) -> Response {
    let instances = shared.snapshot();
    let idx = match super::resolve(std::slice::from_ref(&r.instance), &instances) {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let log = instances[idx[0]].log.clone();
    // Subscribe before reading the tail, so no line falls between the two.
    let mut follow = r.follow.then(|| log.follow());
    let path = log.path().to_path_buf();
    let lines = r.lines.min(MAX_LINES) as usize;
    let tail = match tokio::task::spawn_blocking(move || cts_logs::tail::tail(&path, lines)).await {
        Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(Err(e)) => {
            let msg = format!("cannot read {}: {e}", log.path().display());
            return ErrorReply::new(ErrorKind::Failed, msg).into();
        }
        Err(e) => return ErrorReply::new(ErrorKind::Failed, e.to_string()).into(),
    };
    let Some(rx) = follow.as_mut() else {
        return Response::LogData(LogData { data: tail });
    };
    if emit
        .send(Response::LogData(LogData { data: tail }))
        .is_err()
    {
        return gone();
    }
    loop {
        let data = match rx.recv().await {
            Ok(chunk) => String::from_utf8_lossy(&chunk).into_owned(),
            Err(RecvError::Lagged(n)) => format!("[ctsctl logs: {n} chunks skipped: this client reads slower than the log is written]\n"),
            Err(RecvError::Closed) => return gone(),
        };
        if emit.send(Response::LogData(LogData { data })).is_err() {
            return gone();
        }
    }
}

fn gone() -> Response {
    ErrorReply::new(ErrorKind::ShuttingDown, "the log is no longer written").into()
}
