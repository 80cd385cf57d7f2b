//! Reload: re-reading the configuration file, comparing it with the configuration being run
//! (`cts_config::diff` against `Instances::config`) and carrying out the plan on the running
//! instances. Structural changes (binding, starting, stopping) happen here, on the daemon's main
//! loop; waiting for rolling restarts happens in the caller, so a long restart never blocks
//! signal handling.
//!
//! Above the [registry](crate::registry), below the control handlers and the main loop (the
//! `reload` handler only sends a request to the main loop and waits for its answer).

use crate::registry::Instances;
use crate::status::outcome;
use crate::{listeners, notify};
use cts_config::{Action, Config, LoadOptions};
use cts_proto::{Failure, Outcome, PlanAction, PlanEntry, ReloadReport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinSet;

/// How to re-read the configuration on reload, the same way `ctsd` read it at start.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    /// The configuration file.
    pub path: PathBuf,
    /// `--env`.
    pub options: LoadOptions,
    /// `--log-dir`, which overrides the file's `ctsd.log_dir`.
    pub log_dir: Option<PathBuf>,
}

/// Re-reads the configuration and, unless `dry_run`, applies the plan. Returns the report and
/// the tasks waiting for each instance's action (none for a dry run or an empty plan).
///
/// # Errors
///
/// The configuration's errors, or the ports that could not be bound; nothing was changed.
pub(crate) async fn reload_now(
    instances: &mut Instances,
    source: Option<&ReloadSource>,
    dry_run: bool,
) -> Result<(ReloadReport, Option<Pending>), String> {
    let Some(source) = source.cloned() else {
        return Err("this ctsd was started without a configuration file to reload".into());
    };
    notify::reloading();
    let loaded = tokio::task::spawn_blocking(move || {
        cts_config::load(&source.path, &source.options).map(|mut c| {
            if let Some(d) = source.log_dir {
                c.daemon.log_dir = d;
            }
            c
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let result = match loaded {
        Err(e) => Err(e),
        Ok(new) => {
            let old = instances.config();
            let plan = cts_config::diff(&old, &new);
            if dry_run {
                Ok((report(&plan, &old, &new, false), None))
            } else {
                let report = report(&plan, &old, &new, true);
                for c in plan
                    .changes
                    .iter()
                    .filter(|c| c.action != cts_config::Action::None)
                {
                    tracing::info!(instance = %c.name(), "reload: {} ({})", c.action.as_str(), c.fields.join(", "));
                }
                apply(instances, new, &plan).map(|pending| (report, Some(pending)))
            }
        }
    };
    notify::sd_notify("READY=1");
    result
}

/// The plan in the wire's terms.
pub fn report(
    plan: &cts_config::Plan,
    old: &cts_config::Config,
    new: &cts_config::Config,
    applied: bool,
) -> ReloadReport {
    // `workers` says from what to what (a scale may have made the pool differ from the file);
    // other fields are named only (an env value may be a secret).
    let workers = |c: &Config, key: &str, program: Option<&cts_config::ProgramName>| {
        let i = c.instance(key)?;
        match program {
            None => Some(i.pool.workers),
            Some(p) => i.program(p.as_str()).map(|p| p.pool.workers),
        }
    };
    let field = |c: &cts_config::Change, f: &str| {
        let p = c.program.as_ref();
        match (f, workers(old, &c.key, p), workers(new, &c.key, p)) {
            ("workers", Some(o), Some(n)) => format!("workers {o} → {n}"),
            _ => f.to_owned(),
        }
    };
    ReloadReport {
        plan: plan
            .changes
            .iter()
            .map(|c| PlanEntry {
                instance: c.name().as_str().into(),
                action: match c.action {
                    Action::None => PlanAction::None,
                    Action::Update => PlanAction::Update,
                    Action::Scale => PlanAction::Scale,
                    Action::Restart => PlanAction::Restart,
                    Action::Rebind => PlanAction::Rebind,
                    Action::Start => PlanAction::Start,
                    Action::Stop => PlanAction::Stop,
                },
                fields: c.fields.iter().map(|f| field(c, f)).collect(),
            })
            .collect(),
        not_applied: plan.not_applied.clone(),
        applied,
        results: Vec::new(),
    }
}

/// What a reload started: per instance, the task that waits for its action to finish.
pub type Pending = JoinSet<(usize, Outcome)>;

/// Applies `plan` (from [`Instances::config`] to `new`). Every new port is bound first: if one
/// cannot be, nothing is changed and the error is returned.
///
/// # Errors
///
/// A sentence naming the ports that could not be bound.
fn apply(
    instances: &mut Instances,
    new: Config,
    plan: &cts_config::Plan,
) -> Result<Pending, String> {
    let mut sockets = HashMap::new();
    let mut errors = Vec::new();
    for c in &plan.changes {
        // Only an instance's own entry binds: its programs have no socket.
        if c.program.is_none() && matches!(c.action, Action::Start | Action::Rebind) {
            let Some(inst) = new.instance(&c.key) else {
                continue;
            };
            let addr = SocketAddr::new(new.daemon.bind, inst.port);
            match listeners::obtain(instances.passed(), &c.key, addr) {
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
        if let Some(program) = &c.program {
            apply_program(instances, &new, c, program, order, &mut pending);
            continue;
        }
        let key = c.key.clone();
        match c.action {
            Action::Stop => {
                notify::fd_store_remove(&key);
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
                    notify::fd_store(&key, &got.fd);
                }
                match instances.launch(inst, Some(got.fd), got.fresh, &mut Default::default()) {
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
            Action::None => {
                // Its programs may have changed: they are carried out from this copy.
                if let Some(inst) = new.instance(&key) {
                    instances.set_config(inst.clone());
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
                        notify::fd_store(&key, &got.fd);
                    }
                    let fd = Arc::new(got.fd);
                    let addr = SocketAddr::new(new.daemon.bind, inst.port);
                    instances.set_listener(&key, addr, fd.clone(), got.fresh);
                    fd
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

/// Carries out the change `c` of `program` of an instance that runs before and after the
/// reload (the instance's own entry, earlier in the plan, gave the registry its new
/// configuration).
fn apply_program(
    instances: &mut Instances,
    new: &Config,
    c: &cts_config::Change,
    program: &cts_config::ProgramName,
    order: usize,
    pending: &mut Pending,
) {
    let name = c.name();
    match c.action {
        Action::None => {}
        Action::Stop => {
            if let Some(job) = instances.retire_program(&c.key, program.as_str()) {
                pending.spawn(async move {
                    job.await;
                    (order, Outcome::done(&name, "stopped and removed"))
                });
            }
        }
        Action::Start => match instances.launch_program(&c.key, program) {
            Some(Ok((handle, predecessor))) => {
                pending.spawn(async move {
                    if let Some(mut gone) = predecessor {
                        let _ = gone.wait_for(|g| *g).await;
                    }
                    (order, outcome(&name, handle.start().await))
                });
            }
            Some(Err(e)) => {
                let failed = Outcome::failed(&name, Failure::Other, e.to_string());
                pending.spawn(async move { (order, failed) });
            }
            None => {}
        },
        Action::Update | Action::Scale | Action::Restart | Action::Rebind => {
            let (Some(inst), Some(handle)) = (
                new.instance(&c.key).cloned(),
                instances.program_handle(&c.key, program.as_str()),
            ) else {
                return;
            };
            let roll = matches!(c.action, Action::Restart | Action::Rebind);
            pending.spawn(async move {
                let r = handle.reconfigure(inst, None, roll).await;
                (order, outcome(&name, r))
            });
        }
    }
}
