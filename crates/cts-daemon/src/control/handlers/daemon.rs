//! `reopen-logs` and `shutdown`: handed to the daemon's main loop as the events SIGUSR1 and
//! SIGTERM would be, so both paths do exactly the same.

use crate::control::Shared;
use crate::signals::DaemonEvent;
use cts_proto::{ErrorKind, ErrorReply, Outcome, Outcomes, Response};

pub async fn handle(ev: DaemonEvent, shared: &Shared) -> Response {
    let message = match ev {
        DaemonEvent::ReopenLogs => "every log file will be reopened after the lines already queued",
        DaemonEvent::Shutdown => "stopping every worker, then exiting",
        _ => "done",
    };
    if shared.events.send(ev).await.is_err() {
        return ErrorReply::new(ErrorKind::ShuttingDown, "ctsd is shutting down").into();
    }
    Response::Outcomes(Outcomes {
        results: vec![Outcome::done("ctsd", message)],
    })
}

/// `reload [--dry-run]`: the main loop computes (and applies) the plan; this waits for every
/// instance's action to finish and reports them.
pub async fn reload(dry_run: bool, shared: &Shared) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ev = DaemonEvent::ReloadRequest { dry_run, reply: tx };
    if shared.events.send(ev).await.is_err() {
        return ErrorReply::new(ErrorKind::ShuttingDown, "ctsd is shutting down").into();
    }
    match rx.await {
        Err(_) => ErrorReply::new(ErrorKind::ShuttingDown, "ctsd is shutting down").into(),
        Ok(Err(errors)) => ErrorReply::new(
            ErrorKind::InvalidConfig,
            format!("the configuration was not reloaded; nothing changed:\n{errors}"),
        )
        .into(),
        Ok(Ok((mut report, pending))) => {
            if let Some(mut pending) = pending {
                let mut results = Vec::new();
                while let Some(joined) = pending.join_next().await {
                    if let Ok(r) = joined {
                        results.push(r);
                    }
                }
                results.sort_by_key(|(order, _)| *order);
                report.results = results.into_iter().map(|(_, r)| r).collect();
            }
            Response::Reload(report)
        }
    }
}
