//! `start`, `stop`, `restart`: sent to each named instance's actor, all at once; the answer lists
//! one outcome per instance once every one is done (or at once with `no_wait`). A restart that
//! asked for progress streams `Progress` frames first; a failed restart's message ends with the
//! last lines of the instance's log, where the failed worker's own output is.

use super::Emit;
use crate::control::Shared;
use cts_proto::{Failure, Outcome, Outcomes, Progress, Response, TargetRequest};
use std::path::Path;
use tokio::task::JoinSet;

/// Lines of the instance log appended to a failed restart's message.
const TAIL_LINES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Restart,
}

pub async fn handle(op: Op, req: &TargetRequest, shared: &Shared, emit: Emit) -> Response {
    let instances = shared.snapshot();
    let idx = match super::resolve_target(&req.target, &instances) {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let mut set = JoinSet::new();
    let mut forwarders = Vec::new();
    let keys: Vec<String> = idx
        .iter()
        .map(|&i| instances[i].config.key.to_string())
        .collect();
    for (order, i) in idx.into_iter().enumerate() {
        let entry = instances[i].clone();
        let key = entry.config.key.to_string();
        if op == Op::Restart && req.progress && !req.no_wait {
            let mut rx = entry.handle.progress();
            rx.borrow_and_update();
            let (emit, key) = (emit.clone(), key.clone());
            forwarders.push(tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let (replaced, total) = *rx.borrow_and_update();
                    let p = Progress {
                        instance: key.as_str().into(),
                        replaced,
                        total,
                    };
                    // Progress is a gauge: when the client lags, a skipped frame is no loss.
                    if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                        emit.try_send(Response::Progress(p))
                    {
                        break;
                    }
                }
            }));
        }
        set.spawn(async move {
            let r = match op {
                Op::Start => match listen_again(&key, &entry).await {
                    Ok(()) => entry.handle.start().await,
                    Err(e) => return (order, Outcome::failed(&key, Failure::Other, e)),
                },
                Op::Stop => {
                    let r = entry.handle.stop().await;
                    // A stopped instance refuses connections instead of leaving them waiting.
                    // Closed once its workers are gone (not while they drain: a worker blocked
                    // in accept() on a closed socket fails, gunicorn with a traceback), and
                    // not when a `start` overtook the stop.
                    if r.is_ok() && entry.port.close() {
                        crate::notify::fd_store_remove(&key);
                    }
                    r
                }
                Op::Restart => entry.handle.restart().await,
            };
            let mut r = super::outcome(&key, r);
            if !r.ok && op == Op::Restart {
                r.message = with_log_tail(r.message, entry.log.path()).await;
            }
            (order, r)
        });
    }
    if req.no_wait {
        // The operations go on without anyone waiting: their outcome is in the instance logs.
        tokio::spawn(async move { while set.join_next().await.is_some() {} });
        let verb = match op {
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Restart => "restart",
        };
        return Response::Outcomes(Outcomes {
            results: keys
                .into_iter()
                .map(|k| {
                    Outcome::done(
                        &k,
                        format!("{verb} begun; `ctsctl status` shows its progress"),
                    )
                })
                .collect(),
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(r) = joined {
            results.push(r);
        }
    }
    for f in forwarders {
        f.abort();
    }
    results.sort_by_key(|(order, _)| *order);
    Response::Outcomes(Outcomes {
        results: results.into_iter().map(|(_, r)| r).collect(),
    })
}

/// Binds the instance's port again if a stop closed it, and gives the socket to its actor.
async fn listen_again(key: &str, entry: &crate::registry::InstanceEntry) -> Result<(), String> {
    match entry.port.reopen() {
        Ok(None) => Ok(()),
        Ok(Some(fd)) => {
            crate::notify::fd_store(key, &fd);
            entry.handle.listen(fd).await;
            Ok(())
        }
        Err(e) => Err(format!(
            "cannot listen on {} again: {} (is another program using the port?)",
            e.addr, e.source
        )),
    }
}

/// `message`, then the last lines of the log at `path` (read backwards, off the runtime
/// thread).
async fn with_log_tail(message: String, path: &Path) -> String {
    let owned = path.to_path_buf();
    let tail = tokio::task::spawn_blocking(move || cts_logs::tail::tail(&owned, TAIL_LINES))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    if tail.is_empty() {
        return message;
    }
    format!("{message}\nlast lines of {}:\n{tail}", path.display())
}
