//! Applying a reloaded configuration: the plan from `cts_config::diff`, carried out on the
//! running instances. Structural changes (binding, starting, stopping) happen here, on the
//! daemon's main loop; waiting for rolling restarts happens in the caller, so a long restart
//! never blocks signal handling.

use crate::control::handlers::outcome;
use crate::{listeners, Instances};
use cts_config::{Action, Config};
use cts_proto::{Failure, Outcome, PlanAction, PlanEntry, ReloadReport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;

/// The plan in the wire's terms.
pub fn report(plan: &cts_config::Plan, applied: bool) -> ReloadReport {
    ReloadReport {
        plan: plan
            .changes
            .iter()
            .map(|c| PlanEntry {
                instance: c.key.as_str().into(),
                action: match c.action {
                    Action::None => PlanAction::None,
                    Action::Update => PlanAction::Update,
                    Action::Scale => PlanAction::Scale,
                    Action::Restart => PlanAction::Restart,
                    Action::Rebind => PlanAction::Rebind,
                    Action::Start => PlanAction::Start,
                    Action::Stop => PlanAction::Stop,
                },
                fields: c.fields.iter().map(|f| (*f).to_owned()).collect(),
            })
            .collect(),
        not_applied: plan.not_applied.clone(),
        applied,
        results: Vec::new(),
    }
}

/// What a reload started: per instance, the task that waits for its action to finish.
pub type Pending = JoinSet<(usize, Outcome)>;

/// Applies `plan` (from `instances.config` to `new`). Every new port is bound first: if one
/// cannot be, nothing is changed and the error is returned.
///
/// # Errors
///
/// A sentence naming the ports that could not be bound.
pub(crate) fn apply(
    instances: &mut Instances,
    new: Config,
    plan: &cts_config::Plan,
) -> Result<Pending, String> {
    let mut sockets = HashMap::new();
    let mut errors = Vec::new();
    for c in &plan.changes {
        if matches!(c.action, Action::Start | Action::Rebind) {
            let Some(inst) = new.instance(&c.key) else {
                continue;
            };
            let addr = SocketAddr::new(new.daemon.bind, inst.port);
            match listeners::obtain(&mut instances.passed, &c.key, addr) {
                Ok(fd) => {
                    sockets.insert(c.key.clone(), fd);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    if !errors.is_empty() {
        return Err(format!("{}; nothing was changed", errors.join("; ")));
    }
    let mut pending = JoinSet::new();
    for (order, c) in plan.changes.iter().enumerate() {
        let key = c.key.clone();
        match c.action {
            Action::None => {}
            Action::Stop => {
                crate::notify::fd_store_remove(&key);
                if let Some(job) = instances.retire(&key) {
                    pending.spawn(async move {
                        job.await;
                        (order, Outcome::done(&key, "stopped and removed"))
                    });
                }
            }
            Action::Start => {
                let (Some(inst), Some(got)) = (new.instance(&key), sockets.remove(&key)) else {
                    continue;
                };
                if got.fresh {
                    crate::notify::fd_store(&key, &got.fd);
                }
                let fd = got.fd;
                match instances.launch(inst, fd) {
                    Ok(handle) => {
                        pending.spawn(async move {
                            let r = handle.start().await;
                            (order, outcome(&key, r))
                        });
                    }
                    Err(e) => {
                        let failed = Outcome::failed(&key, Failure::Other, e.to_string());
                        pending.spawn(async move { (order, failed) });
                    }
                }
            }
            Action::Update | Action::Scale | Action::Restart | Action::Rebind => {
                let Some(inst) = new.instance(&key).cloned() else {
                    continue;
                };
                let Some(handle) = instances.handle(&key) else {
                    continue;
                };
                let listener = sockets.remove(&key).map(|got| {
                    if got.fresh {
                        crate::notify::fd_store(&key, &got.fd);
                    }
                    Arc::new(got.fd)
                });
                let roll = matches!(c.action, Action::Restart | Action::Rebind);
                instances.set_config(inst.clone());
                if c.fields.iter().any(|f| f.starts_with("logs")) {
                    instances.apply_log_settings(&inst);
                }
                pending.spawn(async move {
                    let r = handle.reconfigure(inst, listener, roll).await;
                    (order, outcome(&key, r))
                });
            }
        }
    }
    instances.adopt(new);
    Ok(pending)
}
