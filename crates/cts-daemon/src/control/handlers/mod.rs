//! One module per request kind; [`handle`] routes.

mod daemon;
mod deploy;
mod lifecycle;
mod logs;
mod scale;
mod signal;
mod status;
pub(crate) mod upgrade;

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
    let changes_pools = matches!(
        req,
        Request::Start(_)
            | Request::Stop(_)
            | Request::Restart(_)
            | Request::Scale(_)
            | Request::Reload(_)
    );
    if changes_pools {
        if let Some(busy) = shared.deploying.busy() {
            return ErrorReply::new(ErrorKind::Failed, busy).into();
        }
    }
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
        Request::Deploy(r) => deploy::handle(&r, shared, emit).await,
        _ => ErrorReply::new(
            ErrorKind::UnknownRequest,
            "this request is not supported by this ctsd",
        )
        .into(),
    }
}

/// What a name picks of an instance: all of it (`jordan`), its web pool (`jordan:web`) or
/// one of its programs (`jordan:celery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    All,
    Web,
    Program(String),
}

/// One name of a request, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    /// Index into the instances.
    pub index: usize,
    pub part: Part,
    /// As the outcome names it: `jordan`, `jordan:web`, `jordan:celery`.
    pub name: String,
}

/// A pool a request acts on: an instance's web pool or one of its programs.
pub(crate) type Unit = crate::registry::PoolRef;

impl Selected {
    /// The pools it covers, in the order a restart takes them: web, then the other programs,
    /// then the singletons.
    pub fn units(&self, entry: &InstanceEntry) -> Vec<Unit> {
        entry
            .pools()
            .into_iter()
            .filter(|u| match (&self.part, &u.program) {
                (Part::All, _) => true,
                (Part::Web, None) => true,
                (Part::Program(name), Some(p)) => p.as_str() == name,
                _ => false,
            })
            .collect()
    }

    /// Whether it includes the web pool (and so the port).
    pub fn has_web(&self) -> bool {
        matches!(self.part, Part::All | Part::Web)
    }
}

/// What `names` refer to (every instance, whole, when empty), or the error naming every
/// unknown instance or program.
fn resolve(
    names: &[InstanceName],
    instances: &[InstanceEntry],
) -> Result<Vec<Selected>, ErrorReply> {
    if names.is_empty() {
        return Ok(all(instances));
    }
    let mut found: Vec<Selected> = Vec::new();
    let mut unknown = Vec::new();
    let mut no_program = Vec::new();
    for n in names {
        let (key, program) = match n.0.split_once(':') {
            Some((k, p)) => (k, Some(p)),
            None => (n.0.as_str(), None),
        };
        let Some(index) = instances.iter().position(|i| i.config.key.as_str() == key) else {
            unknown.push(key);
            continue;
        };
        let part = match program {
            None => Part::All,
            Some(cts_config::ProgramName::WEB) => Part::Web,
            Some(p) if instances[index].program(p).is_some() => Part::Program(p.to_owned()),
            Some(p) => {
                let entry = &instances[index];
                let mut known = vec![cts_config::ProgramName::WEB];
                known.extend(entry.programs.iter().map(|p| p.name.as_str()));
                let hint = match cts_config::closest(p, &known) {
                    Some(k) => format!(" (did you mean {key}:{k}?)"),
                    None => String::new(),
                };
                no_program.push(format!(
                    "{key} has no program `{p}`{hint}; its programs: {}",
                    known.join(", ")
                ));
                continue;
            }
        };
        if !found.iter().any(|f| f.index == index && f.part == part) {
            found.push(Selected {
                index,
                part,
                name: n.0.clone(),
            });
        }
    }
    if unknown.is_empty() && no_program.is_empty() {
        return Ok(found);
    }
    if unknown.is_empty() {
        return Err(ErrorReply::new(
            ErrorKind::UnknownInstance,
            no_program.join("; "),
        ));
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

/// Every instance, whole.
fn all(instances: &[InstanceEntry]) -> Vec<Selected> {
    instances
        .iter()
        .enumerate()
        .map(|(index, i)| Selected {
            index,
            part: Part::All,
            name: i.config.key.to_string(),
        })
        .collect()
}

pub(crate) fn resolve_target(
    target: &Target,
    instances: &[InstanceEntry],
) -> Result<Vec<Selected>, ErrorReply> {
    match target {
        Target::All => Ok(all(instances)),
        Target::Instances(names) if names.is_empty() => Err(ErrorReply::new(
            ErrorKind::Malformed,
            "name at least one instance, or all",
        )),
        Target::Instances(names) => resolve(names, instances),
    }
}
