//! One module per request kind; [`handle`] routes.

mod daemon;
mod lifecycle;
mod logs;
mod scale;
mod signal;
mod status;

use super::Shared;
use crate::registry::InstanceEntry;
use crate::status::outcome;
use cts_proto::{
    ErrorKind, ErrorReply, InstanceName, Request, Response, Target, Welcome, PROTO_VERSION,
};

/// What a request needs: reading is for the socket group, everything else for admins.
pub fn required_role(req: &Request) -> super::access::Role {
    use super::access::Role;
    match req {
        Request::Hello(_) | Request::Status(_) | Request::Version | Request::Logs(_) => Role::Read,
        _ => Role::Admin,
    }
}

/// Where a handler sends frames that precede its answer (restart progress).
pub type Emit = tokio::sync::mpsc::Sender<Response>;

/// Frames a handler may have emitted but not yet written to its client: a slow client slows
/// the handler (a follower then skips chunks) instead of growing memory.
pub const EMIT_QUEUE: usize = 8;

/// Answers one request.
pub async fn handle(req: Request, shared: &Shared, emit: Emit) -> Response {
    match req {
        Request::Hello(_) => ErrorReply::new(ErrorKind::Malformed, "already greeted").into(),
        Request::Version => Response::Version(Welcome {
            proto: PROTO_VERSION,
            daemon_version: crate::VERSION.to_owned(),
        }),
        Request::Status(r) => status::handle(&r.instances, shared).await,
        Request::Start(r) => lifecycle::handle(lifecycle::Op::Start, &r, shared, emit).await,
        Request::Stop(r) => lifecycle::handle(lifecycle::Op::Stop, &r, shared, emit).await,
        Request::Restart(r) => lifecycle::handle(lifecycle::Op::Restart, &r, shared, emit).await,
        Request::Scale(r) => scale::handle(&r, shared).await,
        Request::Signal(r) => signal::handle(&r, shared).await,
        Request::ReopenLogs => {
            daemon::handle(crate::signals::DaemonEvent::ReopenLogs, shared).await
        }
        Request::Shutdown => daemon::handle(crate::signals::DaemonEvent::Shutdown, shared).await,
        Request::Reload(r) => daemon::reload(r.dry_run, shared).await,
        Request::Logs(r) => logs::handle(&r, shared, emit).await,
        _ => ErrorReply::new(
            ErrorKind::UnknownRequest,
            "this request is not supported by this ctsd",
        )
        .into(),
    }
}

/// The indexes into `instances` that `names` refer to (all when empty), or the error naming
/// every unknown one.
fn resolve(names: &[InstanceName], instances: &[InstanceEntry]) -> Result<Vec<usize>, ErrorReply> {
    if names.is_empty() {
        return Ok((0..instances.len()).collect());
    }
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for n in names {
        match instances.iter().position(|i| i.config.key.as_str() == n.0) {
            Some(i) if !found.contains(&i) => found.push(i),
            Some(_) => {}
            None => unknown.push(n.0.as_str()),
        }
    }
    if unknown.is_empty() {
        return Ok(found);
    }
    let known: Vec<&str> = instances.iter().map(|i| i.config.key.as_str()).collect();
    let named: Vec<String> = unknown
        .iter()
        .map(|u| match cts_config::closest(u, &known) {
            Some(k) => format!("{u} (did you mean {k}?)"),
            None => (*u).to_owned(),
        })
        .collect();
    Err(ErrorReply::new(
        ErrorKind::UnknownInstance,
        format!(
            "unknown instance{} {}; configured: {}",
            if unknown.len() > 1 { "s" } else { "" },
            named.join(", "),
            known.join(", ")
        ),
    ))
}

pub(crate) fn resolve_target(
    target: &Target,
    instances: &[InstanceEntry],
) -> Result<Vec<usize>, ErrorReply> {
    match target {
        Target::All => Ok((0..instances.len()).collect()),
        Target::Instances(names) if names.is_empty() => Err(ErrorReply::new(
            ErrorKind::Malformed,
            "name at least one instance, or all",
        )),
        Target::Instances(names) => resolve(names, instances),
    }
}
