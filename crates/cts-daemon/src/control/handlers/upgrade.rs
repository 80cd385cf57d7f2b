//! `upgrade`: check the new binary, then have the main loop hand everything over to it. The
//! answer comes from the ctsd that takes over, on this same connection.

use super::Shared;
use crate::signals::DaemonEvent;
use cts_proto::{ErrorKind, ErrorReply, Response, UpgradeRequest};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Answers an upgrade that is refused; `None` once ctsd is handing over (the new ctsd answers
/// on `client`, a duplicate of the connection).
pub async fn handle(r: &UpgradeRequest, shared: &Shared, client: OwnedFd) -> Option<Response> {
    let failed = |msg: String| Some(ErrorReply::new(ErrorKind::Failed, msg).into());
    let binary = match &r.binary {
        Some(b) if !b.starts_with('/') => {
            return failed(format!("the binary must be an absolute path, not {b}"));
        }
        Some(b) => PathBuf::from(b),
        None => shared.shim.clone(),
    };
    let Some(config) = &shared.config_file else {
        return failed("this ctsd was started without a configuration file".into());
    };
    if let Some(busy) = shared.deploying.busy() {
        return failed(busy);
    }
    let version = match crate::upgrade::preflight(&binary, config).await {
        Ok(v) => v,
        Err(e) => return failed(format!("upgrade refused, nothing changed: {e}")),
    };
    tracing::info!("upgrade to ctsd {version} ({}) asked for", binary.display());
    let (refused_tx, refused) = tokio::sync::oneshot::channel();
    let ev = DaemonEvent::Upgrade {
        binary,
        client,
        refused: refused_tx,
    };
    if shared.events.send(ev).await.is_err() {
        return failed("ctsd is shutting down".into());
    }
    match refused.await {
        Ok(why) => failed(format!("upgrade refused, nothing changed: {why}")),
        Err(_) => None,
    }
}
