//! What ctsd tells systemd while it runs, built on the [`notify`] primitives: the `STATUS=`
//! line, kept current from the actors' summaries, and the watchdog's `WATCHDOG=1`, sent only
//! while every actor answers. Reads the [registry](crate::registry); nothing uses this module
//! but the main loop.

use crate::notify;
use crate::registry::{Instances, Published};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sends `WATCHDOG=1` if every actor answers a status request within `within` (asked all at
/// once); otherwise names the ones that did not, or whose actor is gone, and skips the ping,
/// so that systemd restarts a wedged ctsd.
pub(crate) async fn watchdog_ping(instances: &Instances, within: Duration) {
    let mut asked = tokio::task::JoinSet::new();
    let mut stuck = Vec::new();
    for (key, handle) in instances.handles() {
        let handle = handle.clone();
        stuck.push(key.clone());
        asked.spawn(async move { (key, handle.status().await.is_some()) });
    }
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok((key, alive))) = asked.join_next().await {
            if alive {
                stuck.retain(|k| *k != key);
            }
        }
    })
    .await;
    asked.abort_all();
    if stuck.is_empty() {
        notify::sd_notify("WATCHDOG=1");
    } else {
        tracing::error!(
            "watchdog: no answer from instance(s) {} within {}; not telling systemd all is well",
            stuck.join(", "),
            cts_supervisor::human(within)
        );
    }
}

/// Keeps systemd's `STATUS=` line current (`3/3 instances running, 12/12 workers ready`, or
/// what is not, programs included), woken by the actors' summaries and by changes of the
/// registry (reloads), never by a timer.
pub(crate) async fn report_status(published: Arc<Published>, stop: CancellationToken) {
    let mut set = published.subscribe();
    let mut last = String::new();
    loop {
        set.borrow_and_update();
        let entries = published.snapshot();
        let poke = Arc::new(tokio::sync::Notify::new());
        let mut watchers = tokio::task::JoinSet::new();
        let mut summaries = Vec::new();
        let mut programs = Vec::new();
        for pool in entries.iter().flat_map(|e| e.pools()) {
            let mut rx = pool.handle.summary();
            match pool.program {
                None => summaries.push((pool.name, rx.clone())),
                Some(_) => programs.push((pool.name, rx.clone())),
            }
            let poke = poke.clone();
            watchers.spawn(async move {
                while rx.changed().await.is_ok() {
                    poke.notify_one();
                }
            });
        }
        loop {
            let mut line = status_line(summaries.iter().map(|(k, rx)| (k.as_str(), *rx.borrow())));
            // Programs only when they are not running: `; jordan:beat failing`.
            let behind: Vec<String> = programs
                .iter()
                .filter_map(|(name, rx)| {
                    state_word(rx.borrow().state).map(|w| format!("{name} {w}"))
                })
                .collect();
            if !behind.is_empty() {
                line.push_str(if line.contains("; ") { ", " } else { "; " });
                line.push_str(&behind.join(", "));
            }
            if line != last {
                notify::sd_notify(&format!("STATUS={line}"));
                last = line;
            }
            tokio::select! {
                // Nothing after STOPPING=1's status line.
                biased;
                () = stop.cancelled() => return,
                () = poke.notified() => {}
                r = set.changed() => if r.is_ok() { break } else { return },
            }
        }
    }
}

/// `3/3 instances running, 12/12 workers ready`, followed by the instances that are not
/// running (`; jordan failing, iraq starting`).
fn status_line<'a>(summaries: impl Iterator<Item = (&'a str, cts_supervisor::Summary)>) -> String {
    let (mut running, mut total, mut ready, mut desired) = (0, 0, 0, 0);
    let mut others = Vec::new();
    for (key, s) in summaries {
        total += 1;
        ready += s.ready;
        desired += s.desired;
        match state_word(s.state) {
            None => running += 1,
            Some(state) => others.push(format!("{key} {state}")),
        }
    }
    let mut line = format!("{running}/{total} instances running, {ready}/{desired} workers ready");
    if !others.is_empty() {
        line.push_str("; ");
        line.push_str(&others.join(", "));
    }
    line
}

/// How the status line names a state other than running.
fn state_word(state: cts_supervisor::InstanceState) -> Option<&'static str> {
    use cts_supervisor::InstanceState as S;
    match state {
        S::Running => None,
        S::Starting => Some("starting"),
        S::Stopping => Some("stopping"),
        S::Stopped => Some("stopped"),
        S::Failing => Some("failing"),
    }
}
