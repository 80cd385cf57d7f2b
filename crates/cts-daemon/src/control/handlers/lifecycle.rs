//! `start`, `stop`, `restart`: sent to each named instance's actor, all at once; the answer lists
//! one outcome per instance once every one is done (or at once with `no_wait`). A restart that
//! asked for progress streams `Progress` frames first; a failed restart's message ends with the
//! last lines of the instance's log, where the failed worker's own output is.

use super::{Emit, Selected, Unit};
use crate::control::Shared;
use crate::registry::InstanceEntry;
use cts_proto::{Failure, Outcome, Outcomes, Progress, Response, TargetRequest};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Restart,
}

pub async fn handle(op: Op, req: &TargetRequest, shared: &Shared, emit: Emit) -> Response {
    let instances = shared.snapshot();
    let selected = match super::resolve_target(&req.target, &instances) {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    let mut set = JoinSet::new();
    let mut forwarders = Vec::new();
    let names: Vec<String> = selected.iter().map(|s| s.name.clone()).collect();
    for (order, sel) in selected.into_iter().enumerate() {
        let entry = instances[sel.index].clone();
        let units = sel.units(&entry);
        if op == Op::Restart && req.progress && !req.no_wait {
            for u in &units {
                forwarders.push(forward_progress(u, emit.clone()));
            }
        }
        set.spawn(async move {
            let results = match op {
                Op::Start => start(&sel, &entry, &units).await,
                Op::Stop => stop(&sel, &entry, &units).await,
                Op::Restart => in_order(&units, Op::Restart).await,
            };
            (order, combine(&sel.name, results))
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
            results: names
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

/// Streams `unit`'s rolling restart progress to the client.
fn forward_progress(unit: &Unit, emit: Emit) -> tokio::task::JoinHandle<()> {
    let mut rx = unit.handle.progress();
    rx.borrow_and_update();
    let name = unit.name.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let (replaced, total) = *rx.borrow_and_update();
            let p = Progress {
                instance: name.as_str().into(),
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
    })
}

/// Each unit's outcome, by unit name; `None` for one not attempted after an earlier failed.
type UnitResults = Vec<(String, Option<Outcome>)>;

/// Starts the units one after the other (web first, singletons last), binding the port again
/// first if a stop closed it.
async fn start(sel: &Selected, entry: &InstanceEntry, units: &[Unit]) -> UnitResults {
    if sel.has_web() {
        if let Err(e) = listen_again(entry.config.key.as_str(), entry).await {
            let failed = Outcome::failed(&units[0].name, Failure::Other, e);
            return skipped_after(units, 0, failed);
        }
    }
    in_order(units, Op::Start).await
}

/// Stops every unit at once.
async fn stop(sel: &Selected, entry: &InstanceEntry, units: &[Unit]) -> UnitResults {
    let mut stops = JoinSet::new();
    for (i, u) in units.iter().enumerate() {
        let (name, handle) = (u.name.clone(), u.handle.clone());
        stops.spawn(async move { (i, super::outcome(&name, handle.stop().await)) });
    }
    let mut results: UnitResults = units.iter().map(|u| (u.name.clone(), None)).collect();
    while let Some(Ok((i, r))) = stops.join_next().await {
        results[i].1 = Some(r);
    }
    let web_ok = sel.has_web() && results[0].1.as_ref().is_some_and(|r| r.ok);
    // A stopped instance refuses connections instead of leaving them waiting. Closed once its
    // workers are gone (not while they drain: a worker blocked in accept() on a closed socket
    // fails, gunicorn with a traceback), and not when a `start` overtook the stop.
    if web_ok && entry.port.close() {
        crate::notify::fd_store_remove(entry.config.key.as_str());
    }
    results
}

/// Starts (`op` Start) or restarts the units one after the other, in restart order, up to the
/// first that fails; a failed restart's message ends with the last lines of its log.
async fn in_order(units: &[Unit], op: Op) -> UnitResults {
    let mut results = Vec::new();
    for (i, u) in units.iter().enumerate() {
        let done = match op {
            Op::Restart => u.handle.restart().await,
            Op::Start | Op::Stop => u.handle.start().await,
        };
        let mut r = super::outcome(&u.name, done);
        if !r.ok {
            if op == Op::Restart {
                r.message =
                    crate::status::with_log_tail(r.message, u.log.path(), &u.output.tails).await;
            }
            return results
                .into_iter()
                .chain(skipped_after(units, i, r))
                .collect();
        }
        results.push((u.name.clone(), Some(r)));
    }
    results
}

/// `failed` for unit `i`, and the units after it as not attempted.
fn skipped_after(units: &[Unit], i: usize, failed: Outcome) -> UnitResults {
    std::iter::once((units[i].name.clone(), Some(failed)))
        .chain(units[i + 1..].iter().map(|u| (u.name.clone(), None)))
        .collect()
}

/// One outcome for `name` from its units': the unit's own when there is one; otherwise ok
/// when all are, with each unit's message, or the first failure's kind.
pub(super) fn combine(name: &str, results: UnitResults) -> Outcome {
    if let [(_, Some(only))] = results.as_slice() {
        let mut r = only.clone();
        r.instance = name.into();
        return r;
    }
    let failure = results
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .find(|r| !r.ok)
        .and_then(|r| r.failure);
    // Under the instance's name, each pool by its program name; the failure last, since its
    // message may end with lines of its log.
    let label = |unit: &str| unit.split_once(':').map_or("web", |(_, p)| p).to_owned();
    let mut parts: Vec<String> = results
        .iter()
        .filter_map(|(unit, r)| {
            r.as_ref()
                .filter(|r| r.ok)
                .map(|r| format!("{}: {}", label(unit), r.message))
        })
        .collect();
    let skipped: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(unit, _)| label(unit))
        .collect();
    if !skipped.is_empty() {
        parts.push(format!("not attempted: {}", skipped.join(", ")));
    }
    parts.extend(
        results
            .iter()
            .filter_map(|(unit, r)| r.as_ref().filter(|r| !r.ok).map(|r| (unit, r)))
            .map(|(unit, r)| format!("{}: {}", label(unit), r.message)),
    );
    let message = parts.join("; ");
    match failure {
        None if results
            .iter()
            .all(|(_, r)| r.as_ref().is_some_and(|r| r.ok)) =>
        {
            Outcome::done(name, message)
        }
        failure => Outcome::failed(name, failure.unwrap_or(Failure::Other), message),
    }
}

/// Binds the instance's port again if a stop closed it, and gives the socket to its actor.
async fn listen_again(key: &str, entry: &InstanceEntry) -> Result<(), String> {
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
