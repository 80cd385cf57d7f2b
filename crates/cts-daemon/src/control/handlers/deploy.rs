//! `deploy RELEASE_DIR [INSTANCE…] [--canary KEY] [--batch N] [--dry-run]`: checks the request,
//! takes the deploy lock and runs the deploy in a task of its own (see [`crate::deploy`]), whose
//! progress lines go to the client as `Step` frames while it listens; a client that goes away
//! leaves the deploy running.

use super::Emit;
use crate::control::Shared;
use crate::deploy::{self, Plan, Steps};
use crate::registry::InstanceEntry;
use cts_proto::{DeployRequest, ErrorKind, ErrorReply, Outcome, Outcomes, Response, Step};
use std::path::PathBuf;

pub async fn handle(r: &DeployRequest, shared: &Shared, emit: Emit) -> Response {
    let release = PathBuf::from(&r.release);
    if !release.is_absolute() {
        let msg = format!(
            "{}: give the release directory as an absolute path",
            r.release
        );
        return ErrorReply::new(ErrorKind::Malformed, msg).into();
    }
    match std::fs::metadata(&release) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            let msg = format!("{}: not a directory", release.display());
            return ErrorReply::new(ErrorKind::Failed, msg).into();
        }
        Err(e) => {
            let msg = format!("{}: {e}", release.display());
            return ErrorReply::new(ErrorKind::Failed, msg).into();
        }
    }
    if r.batch == 0 {
        return ErrorReply::new(ErrorKind::Malformed, "--batch must be at least 1").into();
    }
    let all = shared.snapshot();
    let chosen: Vec<InstanceEntry> = if r.instances.is_empty() {
        all.clone()
    } else {
        match super::resolve(&r.instances, &all) {
            Ok(sel) => {
                if let Some(s) = sel.iter().find(|s| s.part != super::Part::All) {
                    let msg = format!(
                        "{}: a deploy moves whole instances; name {} instead",
                        s.name, all[s.index].config.key
                    );
                    return ErrorReply::new(ErrorKind::Malformed, msg).into();
                }
                sel.iter().map(|s| all[s.index].clone()).collect()
            }
            Err(e) => return e.into(),
        }
    };
    let mut rest = chosen;
    let mut batches = Vec::new();
    if let Some(canary) = &r.canary {
        let Some(i) = rest.iter().position(|e| e.config.key.as_str() == canary.0) else {
            let msg = format!("the canary {canary} is not among the instances to deploy");
            return ErrorReply::new(ErrorKind::UnknownInstance, msg).into();
        };
        batches.push(vec![rest.remove(i)]);
    }
    batches.extend(rest.chunks(r.batch as usize).map(<[InstanceEntry]>::to_vec));
    let plan = Plan {
        release: release.clone(),
        settings: shared.deploy(),
        batches,
        all,
        shim: shared.shim.clone(),
    };
    if r.dry_run {
        for line in plan.describe() {
            let _ = emit.send(Response::Step(Step { text: line })).await;
        }
        return Response::Outcomes(Outcomes {
            results: vec![Outcome::done(
                "deploy",
                format!(
                    "dry run: nothing was done; the plan moves to {}",
                    release.display()
                ),
            )],
        });
    }
    let guard = match shared.deploying.begin(&release) {
        Ok(g) => g,
        Err(busy) => return ErrorReply::new(ErrorKind::Failed, busy).into(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let outcomes = deploy::run(plan, Steps(tx)).await;
        drop(guard);
        outcomes
    });
    // Progress while the client listens; the deploy goes on if it leaves.
    let mut listening = true;
    while let Some(text) = rx.recv().await {
        if listening && emit.send(Response::Step(Step { text })).await.is_err() {
            listening = false;
        }
    }
    match task.await {
        Ok(results) => Response::Outcomes(Outcomes { results }),
        Err(e) => ErrorReply::new(ErrorKind::Failed, format!("the deploy failed: {e}")).into(),
    }
}
